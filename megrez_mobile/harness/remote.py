"""Getting a bundle onto another machine: one copy plan, two transports (ssh for boards, adb for phones).

Both transports run POSIX `sh` scripts on the device, so "which files are already there", "verify and rename
into place" and "retry once on a checksum mismatch" are written once here. Every value interpolated into a
script goes through `q` (shlex.quote): bundle names, paths and arguments never reach a shell unquoted.

Files are copied to `<name>.partial` and renamed only after their sha256 matched the manifest, so a file with
the final name is always complete; over ssh an interrupted copy resumes from the partial file's size.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar, Literal, Protocol

from ..bundle import MANIFEST_FILE, FileEntry, Manifest, verify_files
from ..errors import DeviceError

LogFn = Callable[[str], None]
q = shlex.quote

CHUNK = 1 << 20


# --- processes --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Completed:
    """A finished process: its exit status, its stdout when captured, and its last lines for error messages."""

    returncode: int
    stdout: str
    tail: tuple[str, ...]

    def tail_text(self, lines: int = 12, indent: str = "  ") -> str:
        shown = [ln for ln in self.tail if ln.strip()][-lines:]
        return "\n".join(indent + ln for ln in shown) if shown else indent + "(no output)"

    @property
    def last_line(self) -> str:
        return next((ln.strip() for ln in reversed(self.tail) if ln.strip()), "no output")


def run_process(argv: Sequence[str], *, log: LogFn | None = None,
                stdout: Literal["capture", "log", "discard"] = "capture",
                feed: Callable[[IO[bytes]], None] | None = None, tail_lines: int = 40) -> Completed:
    """Run `argv` (a list, never a shell string), streaming stderr (and stdout when "log") line by line to `log`.

    Readers run in threads so a chatty process can never block on a full pipe while we feed its stdin.
    Raises FileNotFoundError when the program itself is missing (the caller says what to install).
    """
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL if stdout == "discard" else subprocess.PIPE,
                            stderr=subprocess.PIPE)
    tail: deque[str] = deque(maxlen=tail_lines)
    tail_lock = threading.Lock()
    captured: list[bytes] = []

    def emit(line: str) -> None:
        with tail_lock:
            tail.append(line)
        if log:
            log(line)

    def pump(stream: IO[bytes]) -> None:
        for raw in stream:
            emit(raw.decode("utf-8", errors="replace").rstrip("\r\n"))

    readers = [threading.Thread(target=pump, args=(proc.stderr,), daemon=True)]
    if stdout == "log":
        readers.append(threading.Thread(target=pump, args=(proc.stdout,), daemon=True))
    elif stdout == "capture":
        readers.append(threading.Thread(target=lambda: captured.append(proc.stdout.read()), daemon=True))
    for r in readers:
        r.start()
    if feed:
        try:
            feed(proc.stdin)
        except BrokenPipeError:
            pass  # the process died early; its exit status and stderr say why
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
    returncode = proc.wait()
    for r in readers:
        r.join()
    return Completed(returncode, b"".join(captured).decode("utf-8", errors="replace"), tuple(tail))


def parse_key_values(text: str) -> dict[str, str]:
    """`key=value` lines printed by a probe script; anything else (a chatty login shell) is ignored."""
    pairs = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            pairs[key] = value.strip()
    return pairs


# --- transports -------------------------------------------------------------------------------------------

class Transport(Protocol):
    """How to reach one device: run a POSIX sh script there, copy a file there, read a file back."""

    spec: str
    resumable: ClassVar[bool]   # can an upload append to a partial file (ssh) or only start over (adb push)?

    def shell(self, script: str, *, what: str, log: LogFn | None = None,
              stdout: Literal["capture", "log", "discard"] = "capture",
              feed: Callable[[IO[bytes]], None] | None = None, check: bool = True) -> Completed: ...

    def upload(self, local: Path, remote: str, offset: int, progress: Callable[[int], None]) -> None: ...

    def download(self, remote: str) -> str: ...


@dataclass(frozen=True)
class SshTransport:
    """The system OpenSSH client with key auth only (BatchMode: never a password prompt that would hang)."""

    spec: str
    destination: str                     # host or user@host, already validated not to look like an option
    port: int | None = None
    options: tuple[str, ...] = ()        # the user's, first: ssh keeps the first value given for an option
    connect_timeout_s: int = 15
    resumable: ClassVar[bool] = True

    def base_argv(self) -> list[str]:
        return ["ssh", *self.options, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout_s}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
                *(["-p", str(self.port)] if self.port else []), "--", self.destination]

    def shell(self, script, *, what, log=None, stdout="capture", feed=None, check=True) -> Completed:
        # ssh hands its command to the login shell of the board's user, which may not be sh: run sh explicitly.
        try:
            done = run_process([*self.base_argv(), shlex.join(["sh", "-c", script])], log=log, stdout=stdout,
                               feed=feed)
        except FileNotFoundError:
            raise DeviceError(f"{self.spec}: the `ssh` client is not installed here; install OpenSSH "
                              f"(Debian/Ubuntu: apt install openssh-client)") from None
        if done.returncode == 255:  # ssh's own failure: connection, host key or authentication
            raise self.connection_error(done)
        if check and done.returncode != 0:
            raise DeviceError(f"{self.spec}: could not {what} (exit {done.returncode}):\n{done.tail_text()}")
        return done

    def connection_error(self, done: Completed) -> DeviceError:
        why = done.last_line
        by_hand = shlex.join([*self.base_argv(), "true"])
        text = "\n".join(done.tail)
        if "Permission denied" in text or "Too many authentication failures" in text:
            advice = ("key authentication failed: add your public key to the board's ~/.ssh/authorized_keys, "
                      "or name the key (identity_file in the devices file, or ssh option -i KEY)")
        elif "Host key verification failed" in text or "IDENTIFICATION HAS CHANGED" in text:
            advice = ("the board's host key is unknown or changed: connect once with ssh to accept it, or pass "
                      "the ssh option -o StrictHostKeyChecking=accept-new")
        else:
            advice = "cannot connect: check the board is on, reachable from here and runs sshd on that port"
        return DeviceError(f"{self.spec}: {advice} (ssh said: {why}); try it by hand: {by_hand}")

    def upload(self, local: Path, remote: str, offset: int, progress: Callable[[int], None]) -> None:
        # `cat >>` appends to the partial file from where the last attempt stopped; `cat >` starts it over.
        redirect = ">>" if offset else ">"

        def feed(pipe: IO[bytes]) -> None:
            with open(local, "rb") as f:
                f.seek(offset)
                done = offset
                while chunk := f.read(CHUNK):
                    pipe.write(chunk)
                    done += len(chunk)
                    progress(done)

        script = f"mkdir -p {q(posixpath.dirname(remote))} && cat {redirect} {q(remote)}"
        self.shell(script, what=f"write {remote}", stdout="discard", feed=feed)

    def download(self, remote: str) -> str:
        return self.shell(f"cat {q(remote)}", what=f"read {remote}").stdout


@dataclass(frozen=True)
class AdbTransport:
    """`adb` to one phone. `adb shell` hands its command string to the phone's sh, so scripts need no wrapper."""

    spec: str
    adb: str                             # resolved path of the adb program
    serial: str | None = None
    resumable: ClassVar[bool] = False    # adb push always writes a whole file

    def base_argv(self) -> list[str]:
        return [self.adb, *(["-s", self.serial] if self.serial else [])]

    def run_adb(self, args: Sequence[str], *, what: str, log: LogFn | None = None,
                stdout: Literal["capture", "log", "discard"] = "capture", check: bool = True) -> Completed:
        try:
            done = run_process([*self.base_argv(), *args], log=log, stdout=stdout)
        except FileNotFoundError:
            raise DeviceError(f"{self.spec}: {self.adb} disappeared; reinstall Android platform-tools") from None
        stderr = "\n".join(done.tail)
        for pattern, advice in ADB_PROBLEMS:
            if done.returncode != 0 and re.search(pattern, stderr):
                raise DeviceError(f"{self.spec}: {advice} (adb said: {done.last_line})")
        if check and done.returncode != 0:
            raise DeviceError(f"{self.spec}: could not {what} (exit {done.returncode}):\n{done.tail_text()}")
        return done

    def shell(self, script, *, what, log=None, stdout="capture", feed=None, check=True) -> Completed:
        if feed is not None:
            raise NotImplementedError("adb shell gets no stdin here; use upload")
        return self.run_adb(["shell", script], what=what, log=log, stdout=stdout, check=check)

    def upload(self, local: Path, remote: str, offset: int, progress: Callable[[int], None]) -> None:
        self.run_adb(["push", str(local), remote], what=f"push {local.name} to {remote}", stdout="discard")
        progress(local.stat().st_size)

    def download(self, remote: str) -> str:
        with tempfile.TemporaryDirectory(prefix="megrez-adb-") as tmp:
            local = Path(tmp) / posixpath.basename(remote)
            self.run_adb(["pull", remote, str(local)], what=f"pull {remote}")
            return local.read_text(encoding="utf-8")


# What adb itself prints (on stderr) when it cannot talk to a phone at all, and what to do about it.
ADB_PROBLEMS = (
    (r"no devices/emulators found", "no phone is connected: plug one in with USB debugging on (see `adb devices`)"),
    (r"device '[^']*' not found", "that serial is not connected: pick one from `adb devices` (spec adb:SERIAL)"),
    (r"more than one device", "several phones are connected: say which with adb:SERIAL (see `adb devices`)"),
    (r"device unauthorized", "the phone has not authorized this computer: accept the USB debugging prompt on it"),
    (r"device offline", "the phone is offline: reconnect the cable or restart adb (`adb kill-server`)"),
)


# --- what to copy -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LocalFile:
    name: str          # plain file name inside the bundle (never a path: it is also the remote name)
    path: Path
    bytes: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> "LocalFile":
        entry = FileEntry.of(path.parent, path.name)
        return cls(path.name, path, entry.bytes, entry.sha256)


@dataclass(frozen=True)
class RemoteFile:
    bytes: int | None = None           # None: absent
    sha256: str | None = None          # only hashed when the size matches: hashing GBs on a board is slow
    partial_bytes: int | None = None   # size of <name>.partial left by an interrupted copy


@dataclass(frozen=True)
class Transfer:
    file: LocalFile
    offset: int        # bytes already on the device in <name>.partial; 0 starts over


def bundle_files(bundle_dir: Path, manifest: Manifest) -> list[LocalFile]:
    """Every file of the bundle with the size and sha256 the device must end up with.

    The manifest's own entries are trusted (a locally corrupted file then fails the device-side check, which
    says so) and only sizes are checked here, so a 2 GB program is not hashed on every profile run.
    """
    verify_files(bundle_dir, manifest, checksums=False)
    files = [LocalFile(e.file, bundle_dir / e.file, e.bytes, e.sha256) for e in manifest.all_files()]
    return files + [LocalFile.of(bundle_dir / MANIFEST_FILE)]  # the manifest cannot list itself


def state_script(remote_dir: str, files: Sequence[LocalFile]) -> str:
    """One round trip: create the directory, then size and (when the size is right) sha256 of each file."""
    lines = [f"mkdir -p {q(remote_dir)} && cd {q(remote_dir)} || exit 97"]
    for i, f in enumerate(files):
        name, partial = q("./" + f.name), q(f"./{f.name}.partial")
        lines.append(f"if [ -f {name} ]; then s=$(wc -c < {name}); h=-; if [ $s -eq {f.bytes} ]; then "
                     f"h=$(sha256sum < {name} | cut -c1-64); fi; echo \"F {i} $s $h\"; fi")
        lines.append(f"if [ -f {partial} ]; then echo \"P {i} $(wc -c < {partial})\"; fi")
    return "\n".join(lines)


def parse_state(output: str, files: Sequence[LocalFile]) -> dict[str, RemoteFile]:
    found: dict[str, RemoteFile] = {}
    for line in output.splitlines():
        parts = line.split()
        if (len(parts) < 3 or parts[0] not in ("F", "P") or not (parts[1].isdigit() and parts[2].isdigit())
                or int(parts[1]) >= len(files)):
            continue  # not ours: a login shell's greeting
        name = files[int(parts[1])].name
        old = found.get(name, RemoteFile())
        if parts[0] == "F" and len(parts) == 4:
            found[name] = RemoteFile(int(parts[2]), None if parts[3] == "-" else parts[3], old.partial_bytes)
        elif parts[0] == "P":
            found[name] = RemoteFile(old.bytes, old.sha256, int(parts[2]))
    return found


def plan_transfers(files: Iterable[LocalFile], remote: Mapping[str, RemoteFile], *, resumable: bool) -> list[Transfer]:
    """The files that are missing or differ on the device, each with where its copy resumes."""
    plan = []
    for f in files:
        there = remote.get(f.name, RemoteFile())
        if there.bytes == f.bytes and there.sha256 == f.sha256:
            continue
        partial = there.partial_bytes
        offset = partial if resumable and partial is not None and partial <= f.bytes else 0
        plan.append(Transfer(f, offset))
    return plan


# --- copying ----------------------------------------------------------------------------------------------

class ByteProgress:
    """Logs a copy's progress every 10 % (and at the end), with its rate, instead of a line per chunk."""

    def __init__(self, log: LogFn, name: str, total: int, start: int):
        self.log, self.name, self.total, self.start = log, name, total, start
        self.t0 = time.monotonic()
        self.next_tenth = (start * 10 // total + 1) if total else 10

    def __call__(self, done: int) -> None:
        tenth = done * 10 // self.total if self.total else 10
        if tenth < self.next_tenth:
            return
        self.next_tenth = tenth + 1
        rate = (done - self.start) / max(time.monotonic() - self.t0, 1e-6)
        self.log(f"{self.name}: {_size(done)} of {_size(self.total)} ({100 * done // max(self.total, 1)} %, "
                 f"{_size(rate)}/s)")


def push_file(transport: Transport, transfer: Transfer, remote_dir: str, log: LogFn) -> None:
    """Copy one file to `<name>.partial`, verify its sha256 on the device, rename it into place.

    A mismatch (a partial file from another export, bytes lost on the way) deletes the partial copy and starts
    over once; a second mismatch is an error naming the file.
    """
    f, offset = transfer.file, transfer.offset
    partial = f"{remote_dir}/{f.name}.partial"
    for attempt in (1, 2):
        if offset:
            log(f"{f.name}: resuming an interrupted copy at {_size(offset)} of {_size(f.bytes)}")
        else:
            log(f"{f.name}: copying {_size(f.bytes)}")
        if offset < f.bytes or not offset:
            transport.upload(f.path, partial, offset, ByteProgress(log, f.name, f.bytes, offset))
        got = _finalize(transport, remote_dir, f)
        if got is None:
            return
        if attempt == 1:
            log(f"{f.name}: sha256 on the device is {got[:12]}, the manifest says {f.sha256[:12]}; "
                f"deleted the partial copy, copying it again")
        offset = 0
    raise DeviceError(f"{transport.spec}: {f.name} arrived corrupted twice (sha256 {got[:12]}, the manifest says "
                      f"{f.sha256[:12]}); check the local bundle with `megrez-mobile inspect {f.path.parent}` "
                      f"and the device's storage, then profile again")


def _finalize(transport: Transport, remote_dir: str, f: LocalFile) -> str | None:
    """Rename the verified partial copy into place; None when done, else the wrong sha256 (partial deleted)."""
    name, partial = q("./" + f.name), q(f"./{f.name}.partial")
    script = (f"cd {q(remote_dir)} || exit 97\n"
              f"h=$(sha256sum < {partial} | cut -c1-64)\n"
              f"if [ \"$h\" = {q(f.sha256)} ]; then mv -f {partial} {name} && echo OK; "
              f"else rm -f {partial}; echo \"BAD $h\"; fi")
    out = transport.shell(script, what=f"verify {remote_dir}/{f.name}").stdout.split()
    if "OK" in out:
        return None
    return out[out.index("BAD") + 1] if "BAD" in out[:-1] else "nothing"


def sync_bundle(transport: Transport, files: Sequence[LocalFile], remote_dir: str, log: LogFn) -> int:
    """Make `remote_dir` hold exactly these files, copying only what is missing or different; returns the count."""
    state = transport.shell(state_script(remote_dir, files), what=f"list {remote_dir}").stdout
    plan = plan_transfers(files, parse_state(state, files), resumable=transport.resumable)
    log(f"bundle at {remote_dir}: {len(files) - len(plan)} of {len(files)} file(s) already there")
    for transfer in plan:
        push_file(transport, transfer, remote_dir, log)
    total = sum(t.file.bytes - t.offset for t in plan)
    log(f"copied {len(plan)} file(s) ({_size(total)})")
    return len(plan)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
