"""benchmarks/same_run.py: the cached full-size bundle is reused only for the export it would make again."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import same_run  # noqa: E402


def test_the_cached_bundles_key_follows_the_sdk_source_recipe_and_checkpoint(tiny_checkpoint, tmp_path, monkeypatch):
    import megrez_mobile

    key = same_run.bundle_key(tiny_checkpoint, "xnnpack-8da4w")
    assert key == same_run.bundle_key(tiny_checkpoint, "xnnpack-8da4w")
    assert key != same_run.bundle_key(tiny_checkpoint, "xnnpack-fp32")

    # A commit that changes the export but not the version must not reuse a bundle exported before it.
    package = tmp_path / "megrez_mobile"
    shutil.copytree(Path(megrez_mobile.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(megrez_mobile, "__file__", str(package / "__init__.py"))
    assert same_run.bundle_key(tiny_checkpoint, "xnnpack-8da4w") == key
    programs = package / "export" / "programs.py"
    programs.write_text(programs.read_text() + "\n# a change\n")
    assert same_run.bundle_key(tiny_checkpoint, "xnnpack-8da4w") != key


def test_each_round_is_published_so_an_interrupted_run_keeps_its_figures(tmp_path, monkeypatch):
    """The run takes hours: a table written only at the end is lost to a stopped run. After every round the caller
    gets everything merged so far, and the table says how many rounds it holds."""
    import copy

    import pytest

    from benchmarks.same_run_table import render

    def fake_profile(bundle, threads, per_op, out):
        fake_profile.calls += 1
        if fake_profile.calls == 3:
            raise KeyboardInterrupt  # the run is stopped during round 3: not a runtime failure to record
        return {"metrics": {"prefill_tok_s@128": {"samples": [100.0 + fake_profile.calls], "unit": "tok/s"}},
                "cotenant": {"quiet": True}}

    fake_profile.calls = 0
    monkeypatch.setattr(same_run, "profile_ours", fake_profile)
    published = []
    others = {"executorch_stock", "llama_cpp", "stock_multimodal"}
    with pytest.raises(KeyboardInterrupt):
        same_run.run_rounds(tmp_path / "bundle", tmp_path / "stock.pte", None, 2, 5, tmp_path, others,
                            on_round=lambda so_far: published.append(copy.deepcopy(so_far)))
    assert [r["rounds_done"] for r in published] == [1, 2]
    prefill = published[-1]["metrics"]["ours"]["prefill_tok_s@128"]
    assert (prefill["samples"], prefill["median"]) == ([101.0, 102.0], 101.5)
    assert "2 of 5 (interrupted) interleaved rounds" in render({"round_count": 5, "threads": 2,
                                                                "rounds": published[-1]})
    assert " 5 interleaved rounds" in render({"round_count": 5, "rounds": {**published[-1], "rounds_done": 5}})
