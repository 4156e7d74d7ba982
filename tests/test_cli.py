"""The command line, driven as a user would (click's runner, same process)."""

from __future__ import annotations

import re

from click.testing import CliRunner

from megrez_mobile.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_help_teaches():
    result = invoke("--help")
    assert result.exit_code == 0
    for verb in ("demo", "make-tiny", "run"):
        assert verb in result.output
    run_help = invoke("run", "--help").output
    assert "--image" in run_help and "--audio" in run_help and "Example" in run_help and "30 s clips" in run_help


def test_make_tiny_then_run(tmp_path, shared_data):
    out = tmp_path / "ckpt"
    made = invoke("make-tiny", out, "--seed", 3)
    assert made.exit_code == 0 and "wrote tiny checkpoint" in made.output
    again = invoke("make-tiny", out)
    assert again.exit_code != 0 and "already exists" in again.output

    result = invoke("run", out, "--prompt", "What is this?", "--image", shared_data / "sample_image.jpg",
                    "--audio", shared_data / "sample_audio.m4a", "--max-new-tokens", 6)
    assert result.exit_code == 0, result.output
    assert re.search(r"prompt: \d+ tokens \(448 image, 4\d audio, \d+ text\)", result.stderr)
    assert re.search(r"6 new tokens, decode [\d.]+ tok/s; stopped: max_new_tokens", result.stderr)
    assert result.stdout.strip()  # the streamed answer


def test_run_reports_bad_input_without_a_traceback(tiny_checkpoint, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    result = invoke("run", tiny_checkpoint, "-p", "hi", "-i", bad)
    assert result.exit_code == 1
    assert "Error: ImageError:" in result.output and "broken.png" in result.output
    assert "Traceback" not in result.output


def test_run_reports_a_broken_checkpoint(tiny_checkpoint, tmp_path):
    import shutil

    ckpt = tmp_path / "c"
    shutil.copytree(tiny_checkpoint, ckpt)
    (ckpt / "model-00001-of-00002.safetensors").unlink()
    result = invoke("run", ckpt, "-p", "hi")
    assert result.exit_code == 1 and "CheckpointError" in result.output and "model-00001-of-00002" in result.output


def test_demo_runs_the_whole_flow(demo_output, bundle_8da4w, tiny_checkpoint):
    """The demo, run once per session by the bundle_8da4w fixture in the shared directory (conftest)."""
    out = demo_output
    assert out["exit_code"] == 0 and out["exception"] is None, out
    # The checkpoint was there (the tiny_checkpoint fixture is the same make_checkpoint), so the demo reused it;
    # the export and the chat ran.
    assert "1/3" not in out["stderr"] and "2/3 exporting it with xnnpack-8da4w" in out["stderr"]
    assert bundle_8da4w == tiny_checkpoint.parent / "megrez-tiny-xnnpack-8da4w"
    assert "(448 image, 4" in out["stderr"] and "7 image slices, 1 audio clip(s)" in out["stderr"]
    assert "assistant: " in out["stdout"]
    assert re.search(r"prefill incl. encoders [\d.]+ tok/s; 32 new tokens, decode [\d.]+ tok/s", out["stderr"])


def test_demo_makes_the_checkpoint_when_the_workdir_has_none(tmp_path, bundle_8da4w):
    """Step 1/3 on an empty workdir (the session's bundle stands in for step 2, which the test above runs)."""
    import shutil

    shutil.copytree(bundle_8da4w, tmp_path / "megrez-tiny-xnnpack-8da4w")
    result = invoke("demo", "--workdir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "1/3 making a tiny random-weight checkpoint" in result.stderr and "2/3" not in result.stderr
    assert (tmp_path / "megrez-tiny" / "config.json").is_file()  # --workdir keeps the checkpoint
    assert "assistant: " in result.stdout
