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

