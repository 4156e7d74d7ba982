"""validate and profile on tiny bundles: the numbers, the verdicts, the reports (devices: test_devices.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from megrez_mobile.cli import cli
from megrez_mobile.harness.report import compare_runs, load_run


@pytest.mark.parametrize("bundle_fixture", ["bundle_8da4w", "bundle_fp32"])
def test_validate_passes_on_good_bundles(request, bundle_fixture, tiny_checkpoint, tmp_path):
    bundle = request.getfixturevalue(bundle_fixture)
    result = CliRunner().invoke(cli, ["validate", str(bundle), "--reference", str(tiny_checkpoint),
                                      "--json", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema"] == "megrez-mobile/validate/1" and report["passed"] and report["failed_methods"] == []
    decoder = report["metrics"]["text_decoder"]
    assert decoder["positions"] >= 500 and decoder["greedy_tokens"] == 32
    assert set(report["metrics"]) == {"token_embedding", "audio_preprocessor", "vision_encoder", "audio_encoder",
                                      "text_decoder"}
    assert report["metrics"]["vision_encoder"]["samples"] == 7  # every slice of the sample image
    # The thresholds are the recipe's own.
    from megrez_mobile.export.recipe import Recipe

    recipe = "xnnpack-8da4w" if bundle_fixture == "bundle_8da4w" else "xnnpack-fp32"
    assert report["thresholds"]["decoder_min_top1"] == Recipe.load(recipe).fidelity.decoder_min_top1
    assert "PASSED" in result.output and "text_decoder" in result.output


@pytest.fixture(scope="module")
def perturbed_reference(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint with one audio-encoder weight perturbed: a model the tiny bundles are no longer."""
    import shutil

    from safetensors.torch import load_file, save_file

    ckpt = tmp_path_factory.mktemp("perturbed") / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    key = "audio.audio.blocks.1.mlp.0.weight"
    for shard in sorted(ckpt.glob("*.safetensors")):
        tensors = load_file(shard)
        if key in tensors:
            noise = torch.randn(tensors[key].shape, generator=torch.Generator().manual_seed(1))
            tensors[key] = (tensors[key].float() + 0.5 * noise * tensors[key].float().std()).to(tensors[key].dtype)
            save_file(tensors, shard, metadata={"format": "pt"})
            return ckpt
    pytest.fail(f"{key} not in the tiny checkpoint")


def test_validate_fails_naming_the_method_and_the_operator_on_perturbed_weights(bundle_fp32, perturbed_reference,
                                                                                  tmp_path):
    """The bundle and the reference differ in one weight of the speech encoder's second MLP (here the reference
    is the perturbed one, which spares an export: validate compares the two either way)."""
    result = CliRunner().invoke(cli, ["validate", str(bundle_fp32), "--reference", str(perturbed_reference),
                                      "--json", str(tmp_path / "report.json")])
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["failed_methods"] == ["audio_encoder"], report["checks"]
    assert "FAILED: audio_encoder" in result.output
    # The Inspector lines the bundle's ETDump up with a fresh export of the reference: the first operator whose
    # output is off is a linear of the perturbed MLP, not the conv stem or an attention before it.
    found = report["drilldown"]["audio_encoder"]
    assert "error" not in found, found
    assert found["snr_db"] < 60 <= found["snr_db_before"], found
    assert any("linear" in op for op in found["operators"]), found
    assert "the error jumps at operator" in result.output


def test_first_jump_skips_pairs_of_other_shapes_and_finds_the_drop():
    """A delegate output paired with a reference tensor of another shape gives NaN (drilldown's comparator), which
    must neither count as the jump nor hide the real one after it."""
    import math

    import pandas as pd

    from megrez_mobile.harness.drilldown import first_jump

    frame = pd.DataFrame([
        {"aot_ops": ["conv1d"], "gap": [95.0]},
        {"aot_ops": ["view", "bmm"], "gap": [math.nan]},   # another shape: skipped
        {"aot_ops": ["linear"], "gap": [math.nan, 90.0]},  # one comparable output of two
        {"aot_ops": ["linear_3"], "gap": [21.0]},
        {"aot_ops": ["add"], "gap": [20.5]},
    ])
    found = first_jump(frame, min_snr_db=30)
    assert [op["operators"] for op in found["ops"]] == [["conv1d"], ["linear"], ["linear_3"], ["add"]]
    assert (found["index"], found["operators"], found["snr_db"], found["snr_db_before"]) == (2, ["linear_3"], 21.0,
                                                                                             90.0)
    # Nothing below the threshold: the largest drop between comparable neighbours.
    assert first_jump(frame, min_snr_db=10)["operators"] == ["linear_3"]


def test_profile_local_reports_compares_and_renders(bundle_8da4w, tmp_path):
    runner = CliRunner()
    base = tmp_path / "base.json"
    result = runner.invoke(cli, ["profile", str(bundle_8da4w), "--device", "local", "--quick", "--json", str(base),
                                 "--html", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    run = load_run(base)
    assert run["schema"] == "megrez-mobile/profile-run/1" and len(run["devices"]) == 1
    res = run["devices"][0]["result"]
    assert res["schema"] == "megrez-mobile/profile/1"
    metrics = res["metrics"]
    assert {"load_s", "prefill_tok_s@16", "prefill_tok_s@64", "decode_tok_s@16", "ttft_s.text", "ttft_s.image",
            "ttft_s.audio", "vision_ms_per_slice", "audio_ms_per_audio_s", "peak_rss_mb"} <= set(metrics)
    for key, stat in metrics.items():
        assert stat["min"] <= stat["median"] <= stat["max"] and stat["median"] > 0, key
    assert metrics["decode_tok_s@16"]["n"] == 2  # --quick: 2 repetitions after a warm-up
    assert res["prompts"]["image"]["image_tokens"] == 448 and res["prompts"]["audio"]["audio_seconds"] == 5
    runs = {o["run"] for o in res["operators"]}
    assert {"text_decoder (prefill 16)", "text_decoder (decode 1)", "vision_encoder (1 slice)"} <= runs
    assert any(o["delegated"] and "Fully Connected" in o["operator"] for o in res["operators"])
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") >= len(metrics) and "time to first token" in html

    # The same run against itself is within noise; against a baseline 10x faster it is a regression (exit 1).
    assert all(v.status == "within noise" for v in compare_runs(run, run))
    fast = json.loads(base.read_text())
    stat = fast["devices"][0]["result"]["metrics"]["decode_tok_s@16"]
    stat.update(median=stat["median"] * 10, min=stat["min"] * 10, max=stat["max"] * 10)
    (tmp_path / "fast.json").write_text(json.dumps(fast))
    again = runner.invoke(cli, ["profile", str(bundle_8da4w), "--quick", "--no-per-op", "--compare",
                                str(tmp_path / "fast.json")])
    assert again.exit_code == 1, again.output
    assert "REGRESSION" in again.output.split("decode 16 tokens, tok/s")[1].splitlines()[0]


def _run(median: float, spread: float, better: str = "higher") -> dict:
    stat = {"median": median, "min": median - spread / 2, "max": median + spread / 2, "spread": spread, "n": 5,
            "unit": "tok/s", "better": better, "samples": []}
    return {"schema": "megrez-mobile/profile-run/1", "devices": [{"device": "local", "error": None, "result": {
        "metrics": {"m": stat}}}]}


@pytest.mark.parametrize("now, spread, better, status", [
    (95, 10, "higher", "within noise"), (80, 10, "higher", "regression"), (120, 10, "higher", "improvement"),
    (120, 10, "lower", "regression"), (80, 30, "lower", "within noise")])
def test_compare_calls_only_changes_beyond_the_measured_spread(now, spread, better, status):
    [verdict] = compare_runs(_run(now, spread, better), _run(100, 4, better))
    assert verdict.status == status


def test_validate_refuses_phone_only_bundles_before_loading_the_reference(bundle_8da4w, tmp_path):
    from megrez_mobile.errors import BundleError
    from megrez_mobile.harness.validate import require_runnable

    manifest = json.loads((bundle_8da4w / "manifest.json").read_text())
    for method in manifest["program"]["methods"]:  # where each method runs is what decides, not the default
        if method["name"] == "text_decoder":
            method["backend"] = "vulkan"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="methods on vulkan.*XNNPACK and the portable kernels only"):
        require_runnable(tmp_path)
    require_runnable(bundle_8da4w)
