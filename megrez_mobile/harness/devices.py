"""Where `megrez-mobile profile` runs its agent: this machine, a Linux board over ssh, or an Android phone over adb.

Every device ends the same way: the agent (`python -m megrez_mobile.harness.agent`, or the Android app that
implements the same contract) measures the bundle in a fresh process on the device and writes one JSON result;
the device brings it back and adds what the device says about itself under "device". A board gets the bundle
and this very SDK version installed into its own venv first, each only when missing or different, so a second
profile run starts measuring within seconds.

    parse_device("ssh:pi@raspberrypi.local")            -> SshDevice
    profile_on_devices([local, pi, phone], bundle, args, print) -> [DeviceResult, ...]  (in parallel)
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import platform
import posixpath
import re
import shlex
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


from ..bundle import read_manifest
from ..errors import DeviceError, MegrezError
from ..untrusted import read_yaml
from .remote import (AdbTransport, Completed, LocalFile, SshTransport, Transfer, bundle_files, push_file,
                     parse_key_values, q, run_process, sync_bundle)

LogFn = Callable[[str], None]

AGENT_MODULE = "megrez_mobile.harness.agent"
SPEC_FORMS = "local, ssh:user@host[:port], adb, adb:SERIAL"
DEFAULT_REMOTE_CACHE = "~/.cache/megrez-mobile"

# The Android side of the contract (android_demo/README.md, "Benchmark entry point"), defined in app_contract.
from .app_contract import (ADB_BUNDLE_ROOT, ADB_RESULT_DIR, APP_PACKAGE, BENCHMARK_ACTIVITY,  # noqa: E402
                           ERROR_SUFFIX, EXTRA_ARGS, EXTRA_BUNDLE_DIR, EXTRA_RESULT_PATH)


@dataclass(frozen=True)
class DeviceResult:
    """One device's outcome: the agent's result, or why there is none. Exactly one of the two is set."""

    device: str                  # the spec as given
    result: dict | None          # the agent's JSON, with result["device"] describing the device
    error: str | None            # one readable line naming the device and what to do

    @property
    def ok(self) -> bool:
        return self.error is None


class Device(Protocol):
    spec: str

    def profile(self, bundle_dir: Path, agent_args: list[str], log: LogFn) -> dict: ...


# --- results ----------------------------------------------------------------------------------------------

def agent_command(python: str, bundle_dir: str, out: str, agent_args: Sequence[str]) -> list[str]:
    return [python, "-m", AGENT_MODULE, "--bundle", bundle_dir, "--out", out, *agent_args]


def parse_result(text: str, where: str) -> dict:
    """The agent's JSON, checked to be a result (a stale or foreign file must not pass as a measurement)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DeviceError(f"{where} is not JSON ({e}); the agent there may be from another megrez-mobile "
                          f"version: profile again after reinstalling it") from None
    if not isinstance(data, dict) or "schema" not in data:
        raise DeviceError(f"{where} is not a profile result (no \"schema\" key); the agent there may be from "
                          f"another megrez-mobile version: profile again after reinstalling it")
    return data


def with_device_info(result: dict, info: dict[str, Any]) -> dict:
    """Fill result["device"]: what the agent said about its machine, overridden by what the device layer knows."""
    agent_said = result.get("device") if isinstance(result.get("device"), dict) else {}
    return {**result, "device": {**agent_said, **info}}


def agent_failed(spec: str, done: Completed, by_hand: str) -> DeviceError:
    return DeviceError(f"{spec}: the profiling agent exited with status {done.returncode}; its last lines:\n"
                       f"{done.tail_text()}\nRun it by hand to see everything: {by_hand}")


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() else None


# --- local ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LocalDevice:
    """This machine, in a fresh agent process: load time and peak RSS must not include the caller's own state."""

    spec: str = "local"
    python: str = field(default_factory=lambda: sys.executable)

    def profile(self, bundle_dir: Path, agent_args: list[str], log: LogFn) -> dict:
        with tempfile.TemporaryDirectory(prefix="megrez-profile-") as tmp:
            out = Path(tmp) / "result.json"
            argv = agent_command(self.python, str(bundle_dir), str(out), agent_args)
            log("running the profiling agent")
            done = run_process(argv, log=log, stdout="log")
            if done.returncode != 0:
                raise agent_failed(self.spec, done, shlex.join(argv))
            if not out.is_file():
                raise DeviceError(f"{self.spec}: the agent exited without writing {out}; run it by hand: "
                                  f"{shlex.join(argv)}")
            result = parse_result(out.read_text(encoding="utf-8"), f"{self.spec}: {out}")
        return with_device_info(result, {"spec": self.spec, "kind": "local", "hostname": platform.node(),
                                         "arch": platform.machine(), "cpu_count": os.cpu_count()})


# --- ssh --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SdkSource:
    """Which megrez-mobile a board gets: this version, built from this checkout when we run from one."""

    version: str
    identity: str          # written beside the board's venv; a checkout adds a digest of its sources, so
                           # an edited checkout (same version number) is reinstalled instead of silently reused
    checkout: Path | None  # None: an installed release, which the board installs from its package index


def _checkout_files(root: Path) -> list[Path]:
    """What a wheel is built from: the package and the project files pyproject.toml refers to."""
    package = sorted(p for p in (root / "megrez_mobile").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return [p for p in (root / "pyproject.toml", root / "README.md") if p.is_file()] + package


@functools.cache
def local_sdk() -> SdkSource:
    from .. import __version__

    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not (pyproject.is_file() and re.search(r'^name\s*=\s*"megrez-mobile"', pyproject.read_text(), re.M)):
        return SdkSource(__version__, __version__, None)
    digest = hashlib.sha256()
    for path in _checkout_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return SdkSource(__version__, f"{__version__}+src.{digest.hexdigest()[:12]}", root)


_wheels: dict[str, Path] = {}
_wheel_lock = threading.Lock()  # boards profiled in parallel share one build


def build_wheel(sdk: SdkSource, log: LogFn) -> Path:
    """A wheel of the checkout, built once per process from a clean copy (no build/ or egg-info in the tree)."""
    assert sdk.checkout is not None
    with _wheel_lock:
        if sdk.identity in _wheels:
            return _wheels[sdk.identity]
        tmp = Path(tempfile.mkdtemp(prefix="megrez-wheel-"))
        atexit.register(shutil.rmtree, tmp, True)
        src = tmp / "src"
        for path in _checkout_files(sdk.checkout):
            target = src / path.relative_to(sdk.checkout)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        log(f"building a megrez-mobile {sdk.version} wheel from {sdk.checkout}")
        pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)]
        # Without build isolation the build needs no index; where setuptools is missing here, isolation fetches it.
        done = run_process([*pip_wheel[:4], "--no-build-isolation", *pip_wheel[4:]], stdout="log")
        if done.returncode != 0:
            done = run_process(pip_wheel, stdout="log")
        wheels = sorted((tmp / "dist").glob("megrez_mobile-*.whl"))
        if done.returncode != 0 or not wheels:
            raise DeviceError(f"building a wheel from {sdk.checkout} failed:\n{done.tail_text()}\n"
                              f"Fix the checkout until `pip wheel --no-deps {sdk.checkout}` works")
        _wheels[sdk.identity] = wheels[0]
        return wheels[0]


@dataclass(frozen=True)
class BoardInfo:
    hostname: str
    arch: str
    cpu_count: int | None
    home: str
    python: str            # absolute path of the board's python3, "" when there is none
    python_version: str    # "3.11"


PIP_PROGRESS = ("Installing collected", "Successfully installed", "ERROR", "WARNING")  # pip says far more


@dataclass(frozen=True)
class SshDevice:
    """A Linux board (aarch64 or x86) reachable with `ssh` and key auth; it needs python3 with venv, nothing else."""

    spec: str
    destination: str                         # host or user@host
    port: int | None = None
    ssh_options: tuple[str, ...] = ()
    remote_cache: str = DEFAULT_REMOTE_CACHE  # bundles, venv and runs live under it
    remote_python: str = "python3"

    @property
    def transport(self) -> SshTransport:
        return SshTransport(self.spec, self.destination, self.port, self.ssh_options)

    def profile(self, bundle_dir: Path, agent_args: list[str], log: LogFn) -> dict:
        board = self.probe()
        log(f"connected to {board.hostname} ({board.arch}, {board.cpu_count} CPUs, Python {board.python_version})")
        remote_bundle = self.push_bundle(bundle_dir, log, board)
        python = self.ensure_sdk(log, board)
        result = self.run_agent(python, remote_bundle, agent_args, log, board)
        return with_device_info(result, {"spec": self.spec, "kind": "ssh", "hostname": board.hostname,
                                         "arch": board.arch, "cpu_count": board.cpu_count})

    def probe(self) -> BoardInfo:
        """One round trip for everything later steps need to know about the board (and a connectivity check)."""
        py = q(self.remote_python)
        script = "\n".join([
            "printf 'hostname=%s\\n' \"$(uname -n)\"",
            "printf 'arch=%s\\n' \"$(uname -m)\"",
            "printf 'cpu_count=%s\\n' \"$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null)\"",
            "printf 'home=%s\\n' \"$HOME\"",
            f"printf 'python=%s\\n' \"$(command -v {py})\"",
            f"printf 'python_version=%s\\n' \"$({py} -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])' "
            f"2>/dev/null)\"",
        ])
        found = parse_key_values(self.transport.shell(script, what="ask the board about itself").stdout)
        info = BoardInfo(found.get("hostname", "?"), found.get("arch", "?"), _int_or_none(found.get("cpu_count")),
                         found.get("home", ""), found.get("python", ""), found.get("python_version", ""))
        if not info.python or not info.python_version:
            raise DeviceError(f"{self.spec}: `{self.remote_python}` is not on the board's PATH; install Python 3.10+ "
                              f"with venv there (Debian/Ubuntu: sudo apt install python3 python3-venv)")
        if tuple(map(int, info.python_version.split("."))) < (3, 10):
            raise DeviceError(f"{self.spec}: the board's {info.python} is Python {info.python_version}; "
                              f"megrez-mobile needs 3.10+: install a newer python3 there")
        return info

    def cache_dir(self, board: BoardInfo) -> str:
        """remote_cache as an absolute path: `~` is expanded here because quoted paths are never expanded there."""
        path = self.remote_cache
        if path == "~" or path.startswith("~/"):
            path = board.home + path[1:]
        elif not path.startswith("/"):
            path = posixpath.join(board.home, path)
        return posixpath.normpath(path)

    def push_bundle(self, bundle_dir: Path, log: LogFn, board: BoardInfo | None = None) -> str:
        """Copy what is missing or different; returns the bundle's directory on the board.

        The directory name carries the program's sha256 so two exports with one folder name never mix.
        """
        board = board or self.probe()
        bundle_dir = Path(bundle_dir)
        manifest = read_manifest(bundle_dir)
        name = f"{bundle_dir.resolve().name}-{manifest.program.file.sha256[:12]}"
        remote_bundle = f"{self.cache_dir(board)}/bundles/{name}"
        sync_bundle(self.transport, bundle_files(bundle_dir, manifest), remote_bundle, log)
        return remote_bundle

    def ensure_sdk(self, log: LogFn, board: BoardInfo | None = None) -> str:
        """This megrez-mobile version in the board's own venv; returns the venv's python. A no-op when current."""
        board = board or self.probe()
        sdk, cache = local_sdk(), self.cache_dir(board)
        venv = f"{cache}/venv-{sdk.version}"
        python, stamp = f"{venv}/bin/python", f"{venv}/megrez-mobile.stamp"
        version_code = 'import megrez_mobile; print("version=" + megrez_mobile.__version__)'
        check = (f"{q(python)} -c {q(version_code)} 2>/dev/null; "
                 f"printf 'stamp=%s\\n' \"$(cat {q(stamp)} 2>/dev/null)\"")
        found = parse_key_values(self.transport.shell(check, what=f"check {venv}").stdout)
        if found.get("version") == sdk.version and found.get("stamp") == sdk.identity:
            log(f"megrez-mobile {sdk.identity} already installed in {venv}")
            return python
        started = time.monotonic()
        log(f"installing megrez-mobile {sdk.identity} into {venv} (the first time, pip fetches its dependencies)")
        self._create_venv(venv, board)
        if sdk.checkout is not None:
            wheel = LocalFile.of(build_wheel(sdk, log))
            push_file(self.transport, Transfer(wheel, 0), f"{cache}/wheels", log)
            target = f"{cache}/wheels/{wheel.name}"
        else:
            target = f"megrez-mobile=={sdk.version}"
        pip = f"{q(python)} -m pip --disable-pip-version-check --no-input"
        # Same version, new build (an edited checkout): uninstall first or pip calls it "already satisfied".
        script = (f"{pip} uninstall -y -q megrez-mobile >/dev/null 2>&1; "
                  f"{pip} install {q(target)} && printf '%s\\n' {q(sdk.identity)} > {q(stamp)}")
        done = self.transport.shell(script, what="install megrez-mobile", stdout="log", check=False,
                                    log=lambda line: log(f"pip: {line}") if line.startswith(PIP_PROGRESS) else None)
        if done.returncode != 0:
            raise DeviceError(f"{self.spec}: `pip install {target}` into {venv} failed; pip's last lines:\n"
                              f"{done.tail_text()}\nFix the board's Python or package index access, then profile "
                              f"again")
        log(f"installed megrez-mobile {sdk.identity} in {time.monotonic() - started:.0f} s")
        return python

    def _create_venv(self, venv: str, board: BoardInfo) -> None:
        # A venv without pip (Debian's python3 without python3-venv leaves one behind) is made again.
        script = (f"if ! {q(venv + '/bin/python')} -m pip --version >/dev/null 2>&1; then rm -rf {q(venv)} && "
                  f"{q(board.python)} -m venv {q(venv)}; fi")
        done = self.transport.shell(script, what="create a venv", check=False)
        if done.returncode != 0:
            raise DeviceError(f"{self.spec}: `{board.python} -m venv {venv}` failed ({done.last_line}); install "
                              f"the venv module on the board (Debian/Ubuntu: sudo apt install python3-venv)")

    def run_agent(self, python: str, remote_bundle: str, agent_args: list[str], log: LogFn,
                  board: BoardInfo) -> dict:
        cache = self.cache_dir(board)
        out = f"{cache}/runs/{uuid.uuid4().hex}.json"
        command = shlex.join(agent_command(python, remote_bundle, out, agent_args))
        # cd: `python -m` puts the working directory first on sys.path, and the home may hold anything.
        script = (f"mkdir -p {q(cache + '/runs')} && cd {q(cache)} || exit 97\n{command}\n"
                  f"rc=$?; [ $rc -eq 0 ] || rm -f {q(out)}; exit $rc")
        log("running the profiling agent")
        done = self.transport.shell(script, what="run the profiling agent", log=log, stdout="log", check=False)
        if done.returncode != 0:
            raise agent_failed(self.spec, done, shlex.join([*self.transport.base_argv(), command]))
        text = self.transport.shell(f"cat {q(out)} && rm -f {q(out)}", what=f"read {out}").stdout
        return parse_result(text, f"{self.spec}:{out}")


# --- adb --------------------------------------------------------------------------------------------------

def find_adb(spec: str) -> str:
    configured = os.environ.get("MEGREZ_ADB")
    if configured:
        path = shutil.which(configured)
        if not path:
            raise DeviceError(f"{spec}: MEGREZ_ADB={configured} is not an executable program; point it at the adb "
                              f"of Android platform-tools, or unset it to use the adb on PATH")
        return path
    path = shutil.which("adb")
    if not path:
        raise DeviceError(f"{spec}: `adb` is not on PATH; install Android platform-tools "
                          f"(https://developer.android.com/tools/releases/platform-tools) or set MEGREZ_ADB to its adb")
    return path


@dataclass(frozen=True)
class AdbDevice:
    """An Android phone: the bundle is pushed with adb and measured by the android_demo app's BenchmarkActivity.

    The phone has no Python, so the app implements the agent's contract (same arguments, same result JSON).
    """

    spec: str
    serial: str | None = None
    timeout_s: float = 1800.0      # a full-size benchmark on a phone takes minutes
    poll_s: float = 1.0

    def profile(self, bundle_dir: Path, agent_args: list[str], log: LogFn) -> dict:
        transport = AdbTransport(self.spec, find_adb(self.spec), self.serial)
        info = self.probe(transport)
        log(f"connected to {info['model']} (Android {info['android']}, {info['abi']}, {info['cpu_count']} CPUs)")
        bundle_dir = Path(bundle_dir)
        remote_bundle = f"{ADB_BUNDLE_ROOT}/{bundle_dir.resolve().name}"
        sync_bundle(transport, bundle_files(bundle_dir, read_manifest(bundle_dir)), remote_bundle, log)
        result_path = f"{ADB_RESULT_DIR}/{uuid.uuid4().hex}.json"
        self.start_benchmark(transport, remote_bundle, result_path, agent_args, log)
        text = self.wait_for_result(transport, result_path, log)
        transport.shell(f"rm -f {q(result_path)}", what=f"remove {result_path}", check=False)
        return with_device_info(parse_result(text, f"{self.spec}:{result_path}"), info)

    def probe(self, transport: AdbTransport) -> dict[str, Any]:
        script = "\n".join([
            "printf 'model=%s\\n' \"$(getprop ro.product.model)\"",
            "printf 'android=%s\\n' \"$(getprop ro.build.version.release)\"",
            "printf 'abi=%s\\n' \"$(getprop ro.product.cpu.abi)\"",
            "printf 'arch=%s\\n' \"$(uname -m)\"",
            "printf 'cpu_count=%s\\n' \"$(nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo)\"",
        ])
        found = parse_key_values(transport.shell(script, what="ask the phone about itself").stdout)
        return {"spec": self.spec, "kind": "adb", "serial": self.serial, "model": found.get("model", "?"),
                "android": found.get("android", "?"), "abi": found.get("abi", "?"), "arch": found.get("arch", "?"),
                "cpu_count": _int_or_none(found.get("cpu_count"))}

    def start_benchmark(self, transport: AdbTransport, remote_bundle: str, result_path: str,
                        agent_args: list[str], log: LogFn) -> None:
        transport.shell(f"rm -f {q(result_path)} {q(result_path + ERROR_SUFFIX)}", what="clear an old result")
        command = ["am", "start", "-W", "-S", "-n", BENCHMARK_ACTIVITY, "--es", EXTRA_BUNDLE_DIR, remote_bundle,
                   "--es", EXTRA_RESULT_PATH, result_path,
                   "--es", EXTRA_ARGS, json.dumps(agent_args, separators=(",", ":"))]
        out = transport.shell(shlex.join(command), what="start the benchmark app").stdout
        errors = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("Error")]
        if errors:
            raise DeviceError(f"{self.spec}: the benchmark app did not start ({errors[0]}); install the android_demo "
                              f"app ({APP_PACKAGE}) on the phone, see android_demo/README.md")
        log(f"benchmark app started; waiting for {result_path}")

    def wait_for_result(self, transport: AdbTransport, result_path: str, log: LogFn) -> str:
        """Poll for the result file (or the app's error file) while the app is alive, up to timeout_s."""
        error_path = result_path + ERROR_SUFFIX
        poll = (f"if [ -f {q(result_path)} ]; then echo state=done; elif [ -f {q(error_path)} ]; then "
                f"echo state=failed; cat {q(error_path)}; elif pidof {q(APP_PACKAGE)} >/dev/null 2>&1; then "
                f"echo state=running; else echo state=gone; fi")
        started = time.monotonic()
        next_note, gone_before = started + 30, False
        while True:
            out = transport.shell(poll, what="poll for the result").stdout
            state = parse_key_values(out).get("state")
            if state == "done":
                return transport.download(result_path)
            if state == "failed":
                message = " ".join(ln.strip() for ln in out.splitlines() if ln.strip() and ln != "state=failed")
                raise DeviceError(f"{self.spec}: the benchmark app failed: {message or 'no message'}; see "
                                  f"`adb logcat -d` for details")
            if state == "gone":
                if gone_before:  # twice: not the instant between writing the result and exiting
                    raise DeviceError(f"{self.spec}: the benchmark app exited without writing a result (crashed?); "
                                      f"see `adb logcat -d` for its last words")
                gone_before = True
            else:
                gone_before = False
            now = time.monotonic()
            if now - started > self.timeout_s:
                raise DeviceError(f"{self.spec}: no result after {self.timeout_s:.0f} s while the benchmark app is "
                                  f"still running; look at the phone, or allow more time")
            if now >= next_note:
                log(f"still measuring ({now - started:.0f} s)")
                next_note = now + 30
            time.sleep(self.poll_s)


# --- specs and the devices file ---------------------------------------------------------------------------

_SSH_SPEC = re.compile(r"ssh:(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@)?"
                       r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_][A-Za-z0-9._-]*)(?::(?P<port>[0-9]{1,5}))?")
_ADB_SPEC = re.compile(r"adb(?::(?P<serial>[A-Za-z0-9_][A-Za-z0-9._:-]*))?")


def parse_device(spec: str, *, ssh_options: Sequence[str] = (), remote_cache: str | None = None,
                 remote_python: str | None = None) -> Device:
    """A device from its spec. ssh_options, remote_cache and remote_python only apply to ssh devices."""
    if not isinstance(spec, str):
        raise DeviceError(f"device spec {spec!r} is not a string; use one of: {SPEC_FORMS}")
    spec = spec.strip()
    if spec == "local":
        return LocalDevice(spec)
    if m := _SSH_SPEC.fullmatch(spec):
        port = int(m["port"]) if m["port"] else None
        if port is not None and not 0 < port < 65536:
            raise DeviceError(f"device {spec!r}: port {port} is out of range (1-65535); use one of: {SPEC_FORMS}")
        host = m["host"].strip("[]")  # ssh takes an IPv6 address without brackets
        return SshDevice(spec, f"{m['user']}@{host}" if m["user"] else host, port, tuple(ssh_options),
                         remote_cache or DEFAULT_REMOTE_CACHE, remote_python or "python3")
    if m := _ADB_SPEC.fullmatch(spec):
        return AdbDevice(spec, m["serial"])
    raise DeviceError(f"unknown device {spec!r}; use one of: {SPEC_FORMS} (e.g. ssh:pi@raspberrypi.local, "
                      f"ssh:root@192.168.1.20:2222, adb:emulator-5554)")


_ENTRY_KEYS = {"device", "identity_file", "ssh_options", "remote_cache", "python"}


def load_devices_file(path: Path) -> list[Device]:
    """Devices from a YAML list; each entry a spec, or a mapping with `device` and ssh settings.

        - local
        - ssh:pi@raspberrypi.local
        - device: ssh:root@192.168.1.20:2222
          identity_file: ~/.ssh/board_ed25519      # relative paths are relative to this file
          ssh_options: [-o, StrictHostKeyChecking=accept-new]
          remote_cache: /data/megrez-mobile        # default ~/.cache/megrez-mobile
          python: python3.11                       # default python3
        - adb:emulator-5554
    """
    path = Path(path)
    try:
        raw = read_yaml(path, DeviceError, "Fix the devices file (see `megrez-mobile profile --help`)")
    except DeviceError as e:
        raise DeviceError(f"devices file {e}") from None
    if not isinstance(raw, list) or not raw:
        raise DeviceError(f"devices file {path}: expected a non-empty YAML list of devices, e.g. `- local` and "
                          f"`- ssh:pi@raspberrypi.local` on separate lines")
    devices = []
    for index, entry in enumerate(raw, 1):
        try:
            devices.append(_device_entry(entry, path.parent))
        except DeviceError as e:
            raise DeviceError(f"devices file {path}, entry {index} ({entry!r}): {e}") from None
    return devices


def _device_entry(entry: Any, base: Path) -> Device:
    if isinstance(entry, str):
        return parse_device(entry)
    if not isinstance(entry, dict):
        raise DeviceError(f"expected a device spec or a mapping with `device:` ({SPEC_FORMS})")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise DeviceError(f"unknown key(s) {sorted(map(str, unknown))}; allowed: {sorted(_ENTRY_KEYS)}")
    if not isinstance(entry.get("device"), str):
        raise DeviceError(f"`device:` must be a spec string ({SPEC_FORMS})")
    options = entry.get("ssh_options", [])
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise DeviceError("`ssh_options:` must be a list of strings, e.g. [-o, ConnectTimeout=5]")
    extras = {k: entry[k] for k in ("identity_file", "remote_cache", "python") if k in entry}
    for key, value in extras.items():
        if not isinstance(value, str) or not value:
            raise DeviceError(f"`{key}:` must be a non-empty string")
    if "identity_file" in extras:
        key_path = Path(extras["identity_file"]).expanduser()
        options = ["-i", str(key_path if key_path.is_absolute() else base / key_path), *options]
    device = parse_device(entry["device"], ssh_options=options, remote_cache=extras.get("remote_cache"),
                          remote_python=extras.get("python"))
    if not isinstance(device, SshDevice) and (set(entry) - {"device"}):
        raise DeviceError(f"{sorted(set(entry) - {'device'})} only apply to ssh devices")
    return device


# --- all together -----------------------------------------------------------------------------------------

def profile_on_devices(devices: Sequence[Device], bundle_dir: Path, agent_args: list[str],
                       log: LogFn) -> list[DeviceResult]:
    """Profile on every device at once; one result per device, in input order; one failure never stops the others.

    Log lines are prefixed with the device spec (and serialized) because the devices talk at the same time.
    """
    specs = [d.spec for d in devices]
    if duplicates := sorted({s for s in specs if specs.count(s) > 1}):
        # Two runs into one remote directory would fight over the same partial files and venv.
        raise DeviceError(f"device(s) {duplicates} listed more than once; list each device once")
    lock = threading.Lock()

    def run(device: Device) -> DeviceResult:
        def device_log(line: str) -> None:
            with lock:
                log(f"[{device.spec}] {line}")

        try:
            return DeviceResult(device.spec, device.profile(Path(bundle_dir), list(agent_args), device_log), None)
        except MegrezError as e:
            message = str(e) if str(e).startswith(device.spec) else f"{device.spec}: {e}"
            return DeviceResult(device.spec, None, message)
        except Exception as e:  # a bug must not hide the other devices' results
            for line in traceback.format_exc().splitlines():
                device_log(line)
            return DeviceResult(device.spec, None, f"{device.spec}: unexpected {type(e).__name__}: {e} (a bug in "
                                                   f"megrez-mobile; the traceback is in the log, please report it)")

    if not devices:
        return []
    with ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="megrez-device") as pool:
        return list(pool.map(run, devices))
