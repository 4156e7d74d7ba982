"""The benchmark contract between `megrez-mobile profile --device adb` and the Android app (android_demo/README.md).

One definition: devices.py drives the app with these names, the app (android_demo/core BenchmarkContract.kt)
declares the same ones, and tests/test_android_core.py checks that the Kotlin constants equal these. The result
schema is the Python agent's (profile.py); the metric names below are the ones it writes.
"""

from __future__ import annotations

RESULT_SCHEMA = "megrez-mobile/profile/1"  # profile.SCHEMA (a test holds them equal; importing profile needs torch)
APP_PACKAGE = "dev.megrezmobile.demo"
BENCHMARK_ACTIVITY_CLASS = ".BenchmarkActivity"
BENCHMARK_ACTIVITY = f"{APP_PACKAGE}/{BENCHMARK_ACTIVITY_CLASS}"
ADB_BUNDLE_ROOT = "/data/local/tmp/megrez-mobile"   # adb may write here, and apps may read what adb pushed
ADB_RESULT_DIR = f"/sdcard/Android/data/{APP_PACKAGE}/files/results"  # the app writes here with no permission

# Intent extras (`am start ... --es NAME VALUE`).
EXTRA_BUNDLE_DIR = "bundle_dir"
EXTRA_RESULT_PATH = "result_path"
EXTRA_ARGS = "args"           # a JSON array of strings: the agent's options below

# The app writes RESULT + TMP_SUFFIX, then renames it to RESULT; on a caught failure one line to RESULT + ERROR_SUFFIX.
TMP_SUFFIX = ".tmp"
ERROR_SUFFIX = ".error"

# The agent's options (python -m megrez_mobile.harness.agent --help), in order, with their kind.
AGENT_OPTIONS: tuple[tuple[str, str], ...] = (
    ("--reps", "int"), ("--warmup", "int"), ("--threads", "int"), ("--prefill", "int_list"), ("--decode", "int"),
    ("--decode-contexts", "int_list"), ("--audio-seconds", "float"), ("--top-ops", "int"), ("--no-per-op", "flag"), ("--quick", "flag"),
)

# Top-level keys of a result as the agent writes it (the harness adds "device").
RESULT_KEYS = ("schema", "bundle", "host", "options", "prompts", "verify_s", "rss_before_load_mb", "slice_shapes",
               "metrics", "operators")

LOAD_METRIC = "load_s"
VISION_METRIC = "vision_ms_per_slice"
AUDIO_METRIC = "audio_ms_per_audio_s"
PEAK_MEMORY_METRIC = "peak_rss_mb"
TTFT_PROMPTS = ("text", "image", "audio")


def prefill_metric(tokens: int) -> str:
    return f"prefill_tok_s@{tokens}"


def decode_metric(tokens: int) -> str:
    return f"decode_tok_s@{tokens}"


def ttft_metric(prompt: str) -> str:
    return f"ttft_s.{prompt}"


def metric_names(prefill_lengths: tuple[int, ...], decode_tokens: int) -> list[str]:
    """Every metric a result holds for these options, in the agent's order."""
    return ([LOAD_METRIC] + [prefill_metric(n) for n in prefill_lengths] + [decode_metric(decode_tokens)] +
            [ttft_metric(p) for p in TTFT_PROMPTS] + [VISION_METRIC, AUDIO_METRIC, PEAK_MEMORY_METRIC])
