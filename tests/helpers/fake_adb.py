#!/usr/bin/env python3
"""A scripted stand-in for `adb` and the android_demo benchmark app, for tests: no phone is attached in CI.

It emulates exactly what megrez_mobile.harness.devices.AdbDevice uses, against a folder playing the phone:

    adb [-s SERIAL] push LOCAL REMOTE        copy into the folder (parents created, like adb)
    adb [-s SERIAL] pull REMOTE LOCAL        copy out of it
    adb [-s SERIAL] shell SCRIPT             run SCRIPT with the host's sh, device paths mapped into the folder;
                                             getprop and pidof are emulated
    adb [-s SERIAL] shell am start ... -n dev.megrezmobile.demo/.BenchmarkActivity --es bundle_dir D
                                             --es result_path R --es args JSON
                                             plays the app: runs the real agent (`python -m
                                             megrez_mobile.harness.agent`) in the background on the mapped
                                             bundle, then renames its result to R, or writes R.error

Environment: MEGREZ_FAKE_ADB_ROOT (required: the phone's folder), MEGREZ_FAKE_ADB_SERIALS (comma-separated
connected serials, default "emulator-5554"; empty: no phone), MEGREZ_FAKE_ADB_PYTHON (the python that runs the
agent, default this one), MEGREZ_FAKE_ADB_APP=missing (the app is not installed).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

PACKAGE = "dev.megrezmobile.demo"
ACTIVITY = f"{PACKAGE}/.BenchmarkActivity"
DEVICE_PREFIXES = ("/data/local/tmp", "/sdcard")  # the only device paths the harness touches


def root() -> Path:
    return Path(os.environ["MEGREZ_FAKE_ADB_ROOT"])


def to_host(text: str) -> str:
    """Device paths -> paths inside the phone's folder (plain text replacement also works inside quotes)."""
    for prefix in DEVICE_PREFIXES:
        text = text.replace(prefix, f"{root()}{prefix}")
    return text


def select_device(args: list[str]) -> list[str]:
    """Handle -s SERIAL like adb: exit with adb's own messages when the phone is missing or ambiguous."""
    serials = [s for s in os.environ.get("MEGREZ_FAKE_ADB_SERIALS", "emulator-5554").split(",") if s]
    if args[:1] == ["-s"]:
        if args[1] not in serials:
            sys.exit(print(f"adb: device '{args[1]}' not found", file=sys.stderr) or 1)
        return args[2:]
    if not serials:
        sys.exit(print("adb: no devices/emulators found", file=sys.stderr) or 1)
    if len(serials) > 1:
        sys.exit(print("adb: more than one device/emulator", file=sys.stderr) or 1)
    return args


SHELL_PRELUDE = f"""
getprop() {{ case "$1" in
  ro.product.model) echo 'Fake Pixel';; ro.build.version.release) echo 15;; ro.product.cpu.abi) echo arm64-v8a;;
esac; }}
pidof() {{ [ "$1" = {PACKAGE} ] && [ -f {{pidfile}} ] && cat {{pidfile}}; }}
"""


def shell(script: str) -> int:
    if script.startswith("am start"):
        return am_start(shlex.split(to_host(script)))
    prelude = SHELL_PRELUDE.replace("{pidfile}", shlex.quote(str(root() / "app.pid")))
    return subprocess.run(["sh", "-c", prelude + to_host(script)], cwd=root()).returncode


def am_start(argv: list[str]) -> int:
    component = argv[argv.index("-n") + 1]
    extras = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--es"}
    if component != ACTIVITY or os.environ.get("MEGREZ_FAKE_ADB_APP") == "missing":
        print(f"Starting: Intent {{ cmp={component} }}")
        print(f"Error type 3\nError: Activity class {{{component}}} does not exist.")
        return 0
    pidfile = root() / "app.pid"
    pidfile.unlink(missing_ok=True)
    app = subprocess.Popen([sys.executable, __file__, "--play-app", extras["bundle_dir"], extras["result_path"],
                            extras["args"]], start_new_session=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=open(root() / "app.log", "ab"))
    deadline = time.monotonic() + 10  # -W: return once the activity is up (it writes its pid first)
    while not pidfile.exists() and app.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    print(f"Starting: Intent {{ cmp={component} }}\nStatus: ok\nLaunchState: COLD\nActivity: {component}\n"
          f"WaitTime: 5\nComplete")
    return 0


def play_app(bundle_dir: str, result_path: str, args_json: str) -> int:
    """What BenchmarkActivity does: run the benchmark, write the result atomically or an .error file."""
    pidfile = root() / "app.pid"
    pidfile.write_text(str(os.getpid()))
    try:
        result = Path(result_path)
        result.parent.mkdir(parents=True, exist_ok=True)
        tmp = result.with_name(result.name + ".tmp")
        python = os.environ.get("MEGREZ_FAKE_ADB_PYTHON", sys.executable)
        done = subprocess.run([python, "-m", "megrez_mobile.harness.agent", "--bundle", bundle_dir,
                               "--out", str(tmp), *json.loads(args_json)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if done.returncode == 0:
            tmp.replace(result)
        else:
            last = [ln for ln in done.stderr.splitlines() if ln.strip()][-1:] or ["no output"]
            result.with_name(result.name + ".error").write_text(f"agent exited {done.returncode}: {last[0]}\n")
    finally:
        pidfile.unlink(missing_ok=True)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--play-app"]:
        return play_app(*argv[1:4])
    args = select_device(argv)
    command, rest = args[0], args[1:]
    if command == "shell":
        return shell(" ".join(rest))  # like adb: the words become one command line for the phone's sh
    if command == "push":
        target = Path(to_host(rest[1]))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rest[0], target)
        print(f"{rest[0]}: 1 file pushed, 0 skipped.")
        return 0
    if command == "pull":
        source = Path(to_host(rest[0]))
        if not source.is_file():
            print(f"adb: error: failed to stat remote object '{rest[0]}': No such file or directory", file=sys.stderr)
            return 1
        shutil.copyfile(source, rest[1])
        return 0
    print(f"fake adb: unsupported command {args!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
