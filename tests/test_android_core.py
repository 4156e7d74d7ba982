"""android_demo/core (plain Kotlin, the phone's front end) compiled with kotlinc and tested on the JVM.

- its JUnit tests pass: identical runner-input plans for every Python-written vector, slice pixels within ±1,
  geometry, audio lengths, the resampler's distance to soxr, manifest, checksums, EXIF, UTF-8, arguments;
- "the phone's inputs give the SDK's answer": the plan and pixels the core's CLI produced for an image + audio +
  text chat, fed to ExecuTorch's stock MultimodalRunner (audio through the bundle's own audio_preprocessor, as
  the app does), give Bundle.chat's greedy tokens over two turns;
- the benchmark contract constants in Kotlin equal megrez_mobile/harness/app_contract.py.

Toolchain (installed by .ci/run): kotlinc from npm `kotlin-compiler` (MEGREZ_KOTLINC, .toolchain/node_modules, or
PATH), JUnit 4 from Debian's junit4 (/usr/share/java), java 17. Required under CI=true; skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from megrez_mobile.harness import app_contract

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "android_demo" / "core"
VECTORS = REPO / "tests" / "vectors" / "front_end"
CONTRACT_KT = CORE / "src/main/kotlin/dev/megrezmobile/core/BenchmarkContract.kt"
JUNIT_JARS = ("/usr/share/java/junit4.jar", "/usr/share/java/hamcrest-core.jar")


def _kotlinc() -> str | None:
    for candidate in (os.environ.get("MEGREZ_KOTLINC"), REPO / ".toolchain/node_modules/kotlin-compiler/bin/kotlinc",
                      shutil.which("kotlinc")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


def _missing() -> str | None:
    if not shutil.which("java"):
        return "java is not on PATH (Java 17: apt-get install openjdk-17-jdk-headless)"
    if not _kotlinc():
        return ("kotlinc not found: `npm install --prefix .toolchain kotlin-compiler@2.4.20` (as .ci/run does) "
                "or set MEGREZ_KOTLINC")
    absent = [j for j in JUNIT_JARS if not Path(j).is_file()]
    if absent:
        return f"JUnit 4 missing ({', '.join(absent)}): apt-get install junit4"
    return None


@pytest.fixture(scope="session")
def core_build(tmp_path_factory):
    """core + its CLI + its tests compiled once into one jar; returns (java classpath, JUnit test classes)."""
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Android core's JVM tests are required in CI: {missing}")
        pytest.skip(missing)
    kotlinc = _kotlinc()
    lib = Path(kotlinc).resolve().parent.parent / "lib"
    test_cp = [str(lib / "kotlin-test.jar"), str(lib / "kotlin-test-junit.jar"), *JUNIT_JARS]
    jar = tmp_path_factory.mktemp("kotlin") / "core-all.jar"
    sources = [CORE / "src/main/kotlin", CORE / "src/cli/kotlin", CORE / "src/test/kotlin"]
    done = subprocess.run([kotlinc, "-nowarn", *map(str, sources), "-cp", os.pathsep.join(test_cp), "-d", str(jar)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"kotlinc failed:\n{done.stderr[-4000:]}"
    tests = sorted({m for f in (CORE / "src/test/kotlin").rglob("*.kt")
                    for m in re.findall(r"^class (\w+Test)\b", f.read_text(), re.M)})
    classpath = os.pathsep.join([str(jar), str(lib / "kotlin-stdlib.jar"), *test_cp])
    return classpath, [f"dev.megrezmobile.core.{t}" for t in tests]


def _plan_cli(classpath: str, request: Path, media_out: Path | None = None) -> str:
    argv = ["java", "-cp", classpath, "dev.megrezmobile.cli.PlanCliKt", str(request)]
    if media_out:
        argv += ["--media-out", str(media_out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_core_junit_tests_pass(core_build):
    classpath, tests = core_build
    assert len(tests) >= 7
    done = subprocess.run(["java", f"-Dmegrez.vectors={VECTORS}", "-cp", classpath, "org.junit.runner.JUnitCore",
                           *tests], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:]
    ran = re.search(r"OK \((\d+) tests\)", done.stdout)
    assert ran and int(ran.group(1)) >= 20, done.stdout[-2000:]
    assert "largest difference 0" in done.stdout  # the slices are Pillow's bytes, not just within ±1


def test_core_cli_prints_the_sdks_plan(core_build):
    classpath, _ = core_build
    case = VECTORS / "cases" / "sample_image_audio"
    assert _plan_cli(classpath, case / "request.json") == (case / "plan.json").read_text()


# --- the phone's inputs give the SDK's answer ----------------------------------------------------------------------


def _request(bundle_dir: Path, messages: list, continuation: dict | None = None) -> dict:
    from megrez_mobile.processing.plan import added_token_strings

    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    request = {"front_end": manifest["front_end"], "added_tokens": added_token_strings(bundle_dir / "tokenizer.json"),
               "messages": messages}
    if continuation:
        request["continuation"] = continuation
    return request


def _runner_turn(classpath: str, request: dict, work: Path, bundle) -> list:
    """The core's plan as stock-runner inputs; audio clips through the bundle's audio_preprocessor, as the app does."""
    work.mkdir()
    (work / "request.json").write_text(json.dumps(request))
    plan = json.loads(_plan_cli(classpath, work / "request.json", work / "media"))
    turn = []
    for k, item in enumerate(plan["inputs"]):
        if item["kind"] == "text":
            turn.append(("text", item["text"]))
        elif item["kind"] == "image":
            raw = (work / "media" / f"input{k:02d}.chw").read_bytes()
            turn.append(("image", torch.frombuffer(bytearray(raw), dtype=torch.uint8)
                         .reshape(3, item["height"], item["width"]).clone()))
        else:
            wave = torch.frombuffer(bytearray((work / "media" / f"input{k:02d}.f32").read_bytes()), dtype=torch.float32)
            assert wave.numel() == item["samples"]
            mel = bundle.run("audio_preprocessor", wave.clone())[0]
            assert mel.shape[-1] == item["mel_frames"]
            turn.append(("audio", mel))
    return turn


def test_phone_inputs_give_the_sdks_answer_over_two_turns(core_build, bundle_8da4w, tmp_path):
    from test_stock_runner import run_stock_runner, runner_bytes

    from megrez_mobile import Bundle

    classpath, _ = core_build
    bundle = Bundle.load(bundle_8da4w)
    tok = bundle.processor.tokenizer
    image = REPO / "megrez_mobile" / "assets" / "sample_image.jpg"
    audio = VECTORS / "inputs" / "speech_16k_1p5s.wav"
    user1 = {"role": "user", "content": {"text": "Describe the image, then transcribe the audio.",
                                         "image": str(image), "audio": str(audio)}}
    first = bundle.generate([user1], max_new_tokens=10)
    turn1 = _runner_turn(classpath, _request(bundle_8da4w, [user1]), tmp_path / "t1", bundle)
    assert [k for k, _ in turn1].count("image") == 7 and [k for k, _ in turn1].count("audio") == 1

    user2 = {"role": "user", "content": "And in one word?"}
    # Tokens the runner emitted but never fed back: the last one of an answer cut by the limit (none after a stop id).
    pending = "" if first.stop_reason == "stop_token" else tok.decode(first.token_ids[-1:], skip_special_tokens=False)
    second = bundle.generate([user1, {"role": "assistant", "content": first.text}, user2], max_new_tokens=10)
    turn2 = _runner_turn(classpath, _request(bundle_8da4w, [user2], {"images_before": 1, "audio_before": 1,
                                                                     "pending_answer": pending}),
                         tmp_path / "t2", bundle)

    got = run_stock_runner(bundle_8da4w, [turn1, turn2], tmp_path, max_new_tokens=10)
    for stats, printed, result in zip(got["stats"], got["bytes"], (first, second)):
        emitted = result.token_ids + ([bundle.processor.stop_ids[0]] if result.stop_reason == "stop_token" else [])
        assert stats["prompt_tokens"] == result.prompt_tokens  # the runner holds exactly the SDK's prompt
        assert stats["generated_tokens"] + 1 == len(emitted)
        assert printed == runner_bytes(tok, emitted)


# --- the benchmark contract ----------------------------------------------------------------------------------------


def _kotlin_consts() -> dict[str, str]:
    return dict(re.findall(r'const val (\w+) = "([^"]*)"', CONTRACT_KT.read_text()))


def test_kotlin_benchmark_contract_equals_the_sdks():
    kt = _kotlin_consts()
    c = app_contract
    assert kt["APP_PACKAGE"] == c.APP_PACKAGE
    assert f'{kt["APP_PACKAGE"]}/{kt["BENCHMARK_ACTIVITY"]}' == c.BENCHMARK_ACTIVITY
    assert (kt["EXTRA_BUNDLE_DIR"], kt["EXTRA_RESULT_PATH"], kt["EXTRA_ARGS"]) == (
        c.EXTRA_BUNDLE_DIR, c.EXTRA_RESULT_PATH, c.EXTRA_ARGS)
    assert (kt["ADB_BUNDLE_ROOT"], kt["TMP_SUFFIX"], kt["ERROR_SUFFIX"]) == (c.ADB_BUNDLE_ROOT, c.TMP_SUFFIX,
                                                                             c.ERROR_SUFFIX)
    assert (kt["RESULT_SCHEMA"], kt["LOAD_METRIC"], kt["VISION_METRIC"], kt["AUDIO_METRIC"],
            kt["PEAK_MEMORY_METRIC"]) == (c.RESULT_SCHEMA, c.LOAD_METRIC, c.VISION_METRIC, c.AUDIO_METRIC,
                                          c.PEAK_MEMORY_METRIC)
    text = CONTRACT_KT.read_text()
    options = re.findall(r'"(--[\w-]+)" to "(\w+)"', text)
    assert tuple(options) == c.AGENT_OPTIONS
    keys = re.search(r"RESULT_KEYS = listOf\(([^)]*)\)", text).group(1)
    assert tuple(re.findall(r'"(\w+)"', keys)) == c.RESULT_KEYS
    prompts = re.search(r"TTFT_PROMPTS = listOf\(([^)]*)\)", text).group(1)
    assert tuple(re.findall(r'"(\w+)"', prompts)) == c.TTFT_PROMPTS
    for fn, arg in (("prefillMetric", 128), ("decodeMetric", 128), ("ttftMetric", "text")):
        template = re.search(rf'fun {fn}\(\w+: \w+\) = "([^"]*)"', text).group(1)
        python = {"prefillMetric": c.prefill_metric, "decodeMetric": c.decode_metric, "ttftMetric": c.ttft_metric}[fn]
        assert re.sub(r"\$\w+", str(arg), template) == python(arg)


def test_sdk_contract_matches_the_agent_and_the_harness():
    """app_contract is what the agent parses, what profile.py writes and what devices.py sends."""
    import argparse
    import inspect

    from megrez_mobile.harness import agent, devices, profile

    assert app_contract.RESULT_SCHEMA == profile.SCHEMA
    assert devices.BENCHMARK_ACTIVITY == app_contract.BENCHMARK_ACTIVITY
    captured = {}
    real = argparse.ArgumentParser.parse_args

    def spy(self, args=None, namespace=None):  # catch the agent's own parser: every option it accepts, in order
        captured["parser"] = self
        return real(self, args, namespace)

    argparse.ArgumentParser.parse_args = spy
    try:
        agent.parse_options(["--bundle", "b", "--out", "o"])
    finally:
        argparse.ArgumentParser.parse_args = real
    accepted = [next(s for s in a.option_strings if s.startswith("--")) for a in captured["parser"]._actions
                if a.option_strings and a.option_strings[-1] not in ("--help", "--bundle", "--out")]
    assert accepted == [name for name, _ in app_contract.AGENT_OPTIONS]
    source = inspect.getsource(profile.profile_bundle)
    for name in ("load_s", "vision_ms_per_slice", "audio_ms_per_audio_s", "peak_rss_mb", "prefill_tok_s@",
                 "decode_tok_s@", "ttft_s."):
        assert f'"{name}' in source or f"f\"{name}" in source, name
    written = source.split("result: dict[str, Any] = {")[1].split("\n    }\n")[0]
    assert list(app_contract.RESULT_KEYS) == re.findall(r'^\s+"(\w+)": ', written, re.M)


def test_app_declares_the_contracts_names():
    """The installed app must answer `am start -n dev.megrezmobile.demo/.BenchmarkActivity` (exported)."""
    gradle = (REPO / "android_demo/app/build.gradle.kts").read_text()
    manifest = (REPO / "android_demo/app/src/main/AndroidManifest.xml").read_text()
    assert re.search(r'applicationId = "([^"]+)"', gradle).group(1) == app_contract.APP_PACKAGE
    assert re.search(r'namespace = "([^"]+)"', gradle).group(1) == app_contract.APP_PACKAGE
    activity = re.search(r'<activity android:name="(\.BenchmarkActivity)" android:exported="true"', manifest)
    assert activity and activity.group(1) == app_contract.BENCHMARK_ACTIVITY_CLASS
    assert '"org.pytorch:executorch-android:1.5.1"' in gradle and "minSdk = 28" in gradle
    app = (REPO / "android_demo/app/src/main/java/dev/megrezmobile/demo/BenchmarkActivity.kt").read_text()
    for name in ("EXTRA_BUNDLE_DIR", "EXTRA_RESULT_PATH", "EXTRA_ARGS", "TMP_SUFFIX", "ERROR_SUFFIX"):
        assert f"BenchmarkContract.{name}" in app, name  # the app reads the names from the core, never literals
