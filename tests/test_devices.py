"""The device layer of `megrez-mobile profile`: local, ssh and adb devices, run in parallel on the tiny bundle.

The ssh device is tested end to end against a real OpenSSH server that these tests start on 127.0.0.1 with
throwaway keys (key auth only); the "board" is this machine, with its own cache directory whose path holds a
space and a quote, so every remote command is exercised with awkward paths. Its venv is installed once per
session from a wheel of this checkout.

The adb device is exercised only through a scripted stand-in for `adb` (tests/helpers/fake_adb.py), which
plays both the phone (a folder) and the android_demo app (it runs the real agent): no phone is attached in
CI, and the app itself is not written yet. What the stand-in proves is our side of the contract.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from helpers.requirements import require_tool
from megrez_mobile.bundle import read_manifest, sha256_file
from megrez_mobile.errors import DeviceError
from megrez_mobile.harness.devices import (AdbDevice, DeviceResult, LocalDevice, SshDevice, load_devices_file,
                                           parse_device, profile_on_devices)

FAST_AGENT_ARGS = ["--reps", "1", "--warmup", "0", "--quick"]
FAKE_ADB = Path(__file__).parent / "helpers" / "fake_adb.py"
AWKWARD = "tiny bundle 'q'"  # a space and a quote: only correct quoting survives it


# --- a real sshd on localhost -----------------------------------------------------------------------------

@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    options: tuple[str, ...]   # reach it hermetically: our client key, its host key, no ~/.ssh/config
    keys: Path

    @property
    def spec(self) -> str:
        return f"ssh:{self.user}@127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)


def _client_options(key: Path, known_hosts: Path) -> tuple[str, ...]:
    return ("-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """OpenSSH's sshd on a free port of 127.0.0.1, key auth only, for the session; killed at the end."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    require_tool(os.access(binary, os.X_OK) and all(shutil.which(t) for t in ("ssh", "scp", "ssh-keygen")),
                 "OpenSSH (sshd, ssh, scp, ssh-keygen)", "apt-get install openssh-server openssh-client")
    keys = tmp_path_factory.mktemp("sshd")
    _keygen(keys / "host_key")
    _keygen(keys / "client_key")
    (keys / "authorized_keys").write_text((keys / "client_key.pub").read_text())
    port = _free_port()
    host_key = " ".join((keys / "host_key.pub").read_text().split()[:2])
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    (keys / "sshd_config").write_text("\n".join([
        f"ListenAddress 127.0.0.1:{port}", f"HostKey {keys / 'host_key'}",
        f"AuthorizedKeysFile {keys / 'authorized_keys'}", f"PidFile {keys / 'sshd.pid'}",
        "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no", "PrintMotd no", "",
    ]))
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    server_log = open(keys / "sshd.log", "wb")
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(keys / "sshd_config")], stdout=server_log,
                            stderr=subprocess.STDOUT)
    server = SshServer(port, getpass.getuser(), _client_options(keys / "client_key", keys / "known_hosts"), keys)
    try:
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run(["ssh", *server.options, "-o", "BatchMode=yes", "-p", str(port),
                                    f"{server.user}@127.0.0.1", "true"], capture_output=True, text=True)
            if probe.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not come up: {probe.stderr.strip()}\n{(keys / 'sshd.log').read_text()}")
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server_log.close()


@pytest.fixture(scope="session")
def board_cache(tmp_path_factory) -> Path:
    """The board's cache root for this session (not ~/.cache: the board is this machine).

    Its venv holds torch (~2 GB, 60k files). It is not deleted here: that takes 40-110 s on CI disks, and
    pytest already keeps only the last three sessions' temp dirs.
    """
    return tmp_path_factory.mktemp("board") / "cache dir 'q'"


@pytest.fixture(scope="session")
def board(sshd, board_cache) -> SshDevice:
    """The ssh device with this checkout's SDK installed (once per session: pip installs torch & co. there)."""
    device = parse_device(sshd.spec, ssh_options=sshd.options, remote_cache=str(board_cache))
    log: list[str] = []
    started = time.monotonic()
    device.ensure_sdk(log.append)
    assert any("installing megrez-mobile" in ln for ln in log), log  # a fresh cache: the install really ran
    print(f"\nremote venv install took {time.monotonic() - started:.0f} s", file=sys.stderr)
    return device


@pytest.fixture
def awkward_bundle(bundle_8da4w, tmp_path) -> Path:
    """A copy of the session's tiny bundle (never modified) at a path with a space and a quote."""
    return Path(shutil.copytree(bundle_8da4w, tmp_path / "a dir 'x'" / AWKWARD))


def key_structure(value):
    """The shape of a result: nested keys, the first element of lists; values dropped."""
    if isinstance(value, dict):
        return {k: key_structure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [key_structure(value[0])] if value and isinstance(value[0], (dict, list)) else []
    return None


def schema_of(result: dict):
    return key_structure({k: v for k, v in result.items() if k != "device"})


@dataclass(frozen=True)
class ParallelRun:
    bundle: Path
    local: DeviceResult
    remote: DeviceResult
    log: list[str]


@pytest.fixture(scope="module")
def parallel_run(board, bundle_8da4w, tmp_path_factory) -> ParallelRun:
    """local and ssh profiled together, as `megrez-mobile profile --device local --device ssh:…` does."""
    bundle = Path(shutil.copytree(bundle_8da4w, tmp_path_factory.mktemp("parallel") / AWKWARD))
    log: list[str] = []
    local, remote = profile_on_devices([LocalDevice(), board], bundle, FAST_AGENT_ARGS, log.append)
    return ParallelRun(bundle, local, remote, log)


def remote_bundle_dir(board_cache: Path, bundle: Path) -> Path:
    return board_cache / "bundles" / f"{bundle.name}-{read_manifest(bundle).program.file.sha256[:12]}"


def copy_bundle(bundle_8da4w: Path, tmp_path: Path, suffix: str) -> Path:
    """A private copy; the suffix keeps its directory on the board apart from other tests'."""
    return Path(shutil.copytree(bundle_8da4w, tmp_path / f"{AWKWARD} {suffix}"))


# --- local and ssh ----------------------------------------------------------------------------------------

def test_local_and_ssh_profile_in_parallel_with_the_same_schema(parallel_run, board):
    run = parallel_run
    assert run.local.error is None and run.remote.error is None, (run.local.error, run.remote.error, run.log[-20:])
    assert (run.local.device, run.remote.device) == ("local", board.spec)
    assert run.local.result["schema"] == run.remote.result["schema"]
    assert schema_of(run.local.result) == schema_of(run.remote.result)
    assert set(run.local.result["metrics"]) == set(run.remote.result["metrics"])
    for result, kind, spec in ((run.local.result, "local", "local"), (run.remote.result, "ssh", board.spec)):
        assert {"spec", "kind", "hostname", "arch", "cpu_count"} <= set(result["device"])
        assert (result["device"]["kind"], result["device"]["spec"]) == (kind, spec)
    # Every line names its device, and both devices spoke.
    assert all(ln.startswith(("[local] ", f"[{board.spec}] ")) for ln in run.log)
    assert any(ln.startswith("[local] ") for ln in run.log) and any(ln.startswith(f"[{board.spec}] ") for ln in run.log)
    assert any("copied 3 file(s)" in ln for ln in run.log)  # program, tokenizer, manifest: all new on the board


def test_second_ssh_profile_copies_nothing_and_does_not_reinstall(parallel_run, board):
    log: list[str] = []
    [again] = profile_on_devices([board], parallel_run.bundle, FAST_AGENT_ARGS, log.append)
    assert again.ok, again.error
    assert any("3 of 3 file(s) already there" in ln for ln in log) and any("copied 0 file(s)" in ln for ln in log)
    assert any("already installed" in ln for ln in log) and not any("installing" in ln for ln in log), log
    assert schema_of(again.result) == schema_of(parallel_run.remote.result)


def test_interrupted_upload_resumes_from_the_partial_file_and_verifies(board, board_cache, bundle_8da4w, tmp_path):
    bundle = copy_bundle(bundle_8da4w, tmp_path, "resume")
    remote = remote_bundle_dir(board_cache, bundle)
    remote.mkdir(parents=True)
    program = (bundle / "model.pte").read_bytes()
    (remote / "model.pte.partial").write_bytes(program[: len(program) // 2])  # a copy cut off halfway
    log: list[str] = []
    assert board.push_bundle(bundle, log.append) == str(remote)
    assert any(ln.startswith("model.pte: resuming an interrupted copy at") for ln in log), log
    assert not any("copying it again" in ln for ln in log)
    assert (remote / "model.pte").read_bytes() == program and not (remote / "model.pte.partial").exists()


def test_partial_file_with_wrong_bytes_is_deleted_and_copied_again(board, board_cache, bundle_8da4w, tmp_path):
    bundle = copy_bundle(bundle_8da4w, tmp_path, "bad partial")
    remote = remote_bundle_dir(board_cache, bundle)
    remote.mkdir(parents=True)
    (remote / "model.pte.partial").write_bytes(b"\0" * 1000)  # not the start of this program
    log: list[str] = []
    board.push_bundle(bundle, log.append)
    assert any("model.pte: sha256 on the device is" in ln and "copying it again" in ln for ln in log), log
    assert sha256_file(remote / "model.pte") == sha256_file(bundle / "model.pte")
    assert not (remote / "model.pte.partial").exists()


def test_file_corrupted_on_the_board_is_copied_again(board, board_cache, bundle_8da4w, tmp_path):
    bundle = copy_bundle(bundle_8da4w, tmp_path, "corrupt")
    board.push_bundle(bundle, lambda _: None)
    remote = remote_bundle_dir(board_cache, bundle) / "model.pte"
    data = bytearray(remote.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content: only the sha256 can tell
    remote.write_bytes(bytes(data))
    log: list[str] = []
    board.push_bundle(bundle, log.append)
    assert any("2 of 3 file(s) already there" in ln for ln in log) and any("copied 1 file(s)" in ln for ln in log)
    assert sha256_file(remote) == sha256_file(bundle / "model.pte")


def test_file_that_never_matches_the_manifest_fails_naming_it(board, bundle_8da4w, tmp_path):
    bundle = copy_bundle(bundle_8da4w, tmp_path, "bad local")
    data = bytearray((bundle / "model.pte").read_bytes())
    data[100] ^= 0xFF  # corrupted here: every copy differs from the manifest
    (bundle / "model.pte").write_bytes(bytes(data))
    with pytest.raises(DeviceError, match=r"model\.pte arrived corrupted twice .*megrez-mobile inspect"):
        board.push_bundle(bundle, lambda _: None)


def test_unreachable_device_fails_alone(board, parallel_run):
    closed = parse_device(f"ssh:root@127.0.0.1:{_free_port()}", ssh_options=board.ssh_options)
    log: list[str] = []
    failed, fine = profile_on_devices([closed, board], parallel_run.bundle, FAST_AGENT_ARGS, log.append)
    assert fine.ok and fine.result["schema"], fine.error
    assert failed.result is None and failed.device == closed.spec
    assert failed.error.startswith(f"{closed.spec}: cannot connect") and "try it by hand: ssh" in failed.error
    assert "Traceback" not in failed.error and "Traceback" not in "\n".join(log)


def test_ssh_key_and_host_key_problems_say_what_to_do(sshd, board, tmp_path):
    _keygen(tmp_path / "stranger")
    (tmp_path / "empty_known_hosts").write_text("")
    stranger = replace(board, ssh_options=_client_options(tmp_path / "stranger", sshd.keys / "known_hosts"))
    unknown_host = replace(board, ssh_options=_client_options(sshd.keys / "client_key", tmp_path / "empty_known_hosts"))
    no_python = replace(board, remote_python="python3-megrez-missing")
    for device, expected in ((stranger, "key authentication failed"), (unknown_host, "host key is unknown"),
                             (no_python, "`python3-megrez-missing` is not on the board's PATH")):
        with pytest.raises(DeviceError, match=expected) as caught:
            device.probe()
        assert str(caught.value).startswith(board.spec)


def test_failing_agent_reports_its_last_lines(bundle_8da4w):
    [run] = profile_on_devices([LocalDevice()], bundle_8da4w, ["--no-such-flag"], lambda _: None)
    assert run.result is None
    assert run.error.startswith("local: the profiling agent exited with status 2")
    assert "unrecognized arguments: --no-such-flag" in run.error and "Run it by hand" in run.error


def test_listing_a_device_twice_is_refused(bundle_8da4w):
    with pytest.raises(DeviceError, match="listed more than once"):
        profile_on_devices([LocalDevice(), LocalDevice()], bundle_8da4w, [], lambda _: None)


def test_copy_plan_skips_matching_files_and_resumes_only_where_it_can(tmp_path):
    from megrez_mobile.harness.remote import LocalFile, RemoteFile, parse_state, plan_transfers, state_script

    files = [LocalFile("model.pte", tmp_path / "model.pte", 100, "a" * 64),
             LocalFile("tokenizer.json", tmp_path / "tokenizer.json", 10, "b" * 64),
             LocalFile("manifest.json", tmp_path / "manifest.json", 5, "c" * 64)]
    # What state_script prints on the device, after a login shell's greeting.
    state = parse_state(f"Welcome!\nP 0 40\nF 1 10 {'b' * 64}\nF 2 5 {'d' * 64}\n", files)
    assert state == {"model.pte": RemoteFile(partial_bytes=40), "tokenizer.json": RemoteFile(10, "b" * 64),
                     "manifest.json": RemoteFile(5, "d" * 64)}
    ssh_plan = plan_transfers(files, state, resumable=True)
    assert [(t.file.name, t.offset) for t in ssh_plan] == [("model.pte", 40), ("manifest.json", 0)]
    adb_plan = plan_transfers(files, state, resumable=False)  # adb push cannot append
    assert [(t.file.name, t.offset) for t in adb_plan] == [("model.pte", 0), ("manifest.json", 0)]
    too_long = plan_transfers(files, {"model.pte": RemoteFile(partial_bytes=500)}, resumable=True)
    assert too_long[0].offset == 0  # a partial file longer than the file is not this file: start over
    assert f"cd {shlex.quote(AWKWARD)} ||" in state_script(AWKWARD, files)  # quoted where it is used


# --- adb, through the stand-in ----------------------------------------------------------------------------

@pytest.fixture
def fake_phone(tmp_path, monkeypatch) -> Path:
    """tests/helpers/fake_adb.py as `adb`, with a folder as the phone; one phone, emulator-5554, is connected."""
    phone = tmp_path / "phone"
    phone.mkdir()
    monkeypatch.setenv("MEGREZ_ADB", str(FAKE_ADB))
    monkeypatch.setenv("MEGREZ_FAKE_ADB_ROOT", str(phone))
    monkeypatch.setenv("MEGREZ_FAKE_ADB_PYTHON", sys.executable)
    for name in ("MEGREZ_FAKE_ADB_SERIALS", "MEGREZ_FAKE_ADB_APP"):
        monkeypatch.delenv(name, raising=False)
    return phone


def test_adb_stand_in_returns_the_same_schema(fake_phone, awkward_bundle, parallel_run):
    """Only the stand-in: proves our half of the app contract (push, intent extras, result file), not a phone."""
    from megrez_mobile.harness.remote import AdbTransport, bundle_files, sync_bundle

    phone = replace(parse_device("adb:emulator-5554"), poll_s=0.2)
    log: list[str] = []
    [run] = profile_on_devices([phone], awkward_bundle, FAST_AGENT_ARGS, log.append)
    assert run.ok, (run.error, log)
    assert schema_of(run.result) == schema_of(parallel_run.local.result)
    assert run.result["device"] == {"spec": "adb:emulator-5554", "kind": "adb", "serial": "emulator-5554",
                                    "model": "Fake Pixel", "android": "15", "abi": "arm64-v8a",
                                    "arch": os.uname().machine, "cpu_count": len(os.sched_getaffinity(0))}
    assert run.result["options"]["decode_tokens"] == 16  # --quick reached the agent through the JSON extra
    on_phone = fake_phone / "data/local/tmp/megrez-mobile" / AWKWARD
    assert sha256_file(on_phone / "model.pte") == sha256_file(awkward_bundle / "model.pte")
    assert not list((fake_phone / "sdcard").rglob("*.json"))  # the result file is removed after pulling it
    # A second push copies nothing (same size and sha256 on the phone).
    again: list[str] = []
    manifest = read_manifest(awkward_bundle)
    transport = AdbTransport("adb:emulator-5554", str(FAKE_ADB), "emulator-5554")
    assert sync_bundle(transport, bundle_files(awkward_bundle, manifest), f"/data/local/tmp/megrez-mobile/{AWKWARD}",
                       again.append) == 0


@pytest.mark.parametrize("env, spec, expected", [
    ({"MEGREZ_ADB": "/nonexistent/adb"}, "adb", r"MEGREZ_ADB=/nonexistent/adb is not an executable program"),
    ({}, "adb:R58M123", r"that serial is not connected: pick one from `adb devices`"),
    ({"MEGREZ_FAKE_ADB_SERIALS": ""}, "adb", r"no phone is connected"),
    ({"MEGREZ_FAKE_ADB_SERIALS": "a,b"}, "adb", r"several phones are connected: say which with adb:SERIAL"),
    ({"MEGREZ_FAKE_ADB_APP": "missing"}, "adb", r"benchmark app did not start .*install the android_demo app"),
])
def test_adb_problems_say_what_to_do(fake_phone, bundle_8da4w, monkeypatch, env, spec, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    [run] = profile_on_devices([parse_device(spec)], bundle_8da4w, FAST_AGENT_ARGS, lambda _: None)
    assert run.result is None and run.error.startswith(f"{spec}: ")
    assert re.search(expected, run.error), run.error


def test_adb_app_failure_is_reported(fake_phone, bundle_8da4w):
    phone = replace(parse_device("adb"), poll_s=0.2)
    [run] = profile_on_devices([phone], bundle_8da4w, ["--no-such-flag"], lambda _: None)
    assert run.error.startswith("adb: the benchmark app failed: agent exited 2:"), run.error
    assert "unrecognized arguments: --no-such-flag" in run.error


# --- specs and the devices file ---------------------------------------------------------------------------

def test_device_specs():
    assert parse_device("local") == LocalDevice()
    ssh = parse_device("ssh:root@127.0.0.1:2222", ssh_options=["-i", "key"])
    assert (ssh.destination, ssh.port, ssh.ssh_options) == ("root@127.0.0.1", 2222, ("-i", "key"))
    assert (parse_device("ssh:pi.local").destination, parse_device("ssh:pi.local").port) == ("pi.local", None)
    assert parse_device("ssh:u@[fe80::1]:22").destination == "u@fe80::1"
    assert parse_device("adb") == AdbDevice("adb") and parse_device("adb:emulator-5554").serial == "emulator-5554"
    # The user's ssh options come first (ssh keeps the first value of an option); the destination after `--`.
    argv = ssh.transport.base_argv()
    assert argv[:3] == ["ssh", "-i", "key"] and argv[-4:] == ["-p", "2222", "--", "root@127.0.0.1"]


@pytest.mark.parametrize("spec", ["", "locale", "ssh:", "ssh:root@", "ssh:-oProxyCommand=touch /tmp/x",
                                  "ssh:root@host:0", "ssh:root@host:70000", "ssh:a b", "adb:", "adb:-s", "usb:1"])
def test_bad_device_specs_name_the_accepted_forms(spec):
    with pytest.raises(DeviceError, match=r"use one of: local, ssh:user@host\[:port\], adb, adb:SERIAL"):
        parse_device(spec)


def test_devices_file(tmp_path):
    path = tmp_path / "devices.yaml"
    path.write_text("- local\n"
                    "- ssh:pi@raspberrypi.local\n"
                    "- device: ssh:root@192.168.1.20:2222\n"
                    "  identity_file: keys/board\n"
                    "  ssh_options: [-o, ConnectTimeout=5]\n"
                    "  remote_cache: /data/megrez\n"
                    "  python: python3.11\n"
                    "- device: adb:emulator-5554\n")
    local, pi, board, phone = load_devices_file(path)
    assert local == LocalDevice() and pi == parse_device("ssh:pi@raspberrypi.local")
    assert board.ssh_options == ("-i", str(tmp_path / "keys/board"), "-o", "ConnectTimeout=5")
    assert (board.port, board.remote_cache, board.remote_python) == (2222, "/data/megrez", "python3.11")
    assert phone == AdbDevice("adb:emulator-5554", "emulator-5554")


@pytest.mark.parametrize("text, expected", [
    ("local\n", r"expected a non-empty YAML list"),
    ("[]\n", r"expected a non-empty YAML list"),
    ("- local\n- [oops\n", r"is not valid YAML"),
    ("- local\n- tcp:1.2.3.4\n", r"entry 2 \('tcp:1.2.3.4'\): unknown device .*use one of"),
    ("- device: local\n  identity_file: k\n", r"entry 1 .*only apply to ssh devices"),
    ("- device: ssh:pi\n  port: 22\n", r"entry 1 .*unknown key\(s\) \['port'\]"),
    ("- device: ssh:pi\n  ssh_options: -v\n", r"entry 1 .*`ssh_options:` must be a list of strings"),
    ("- {identity_file: k}\n", r"entry 1 .*`device:` must be a spec string"),
    ("- 42\n", r"entry 1 \(42\): expected a device spec or a mapping"),
])
def test_bad_devices_files_name_the_file_and_entry(tmp_path, text, expected):
    path = tmp_path / "devices.yaml"
    path.write_text(text)
    with pytest.raises(DeviceError, match=expected) as caught:
        load_devices_file(path)
    assert str(caught.value).startswith(f"devices file {path}")


def test_missing_devices_file(tmp_path):
    with pytest.raises(DeviceError, match=r"devices file .*nope.yaml cannot be read"):
        load_devices_file(tmp_path / "nope.yaml")
