"""Shared fixtures. The tiny checkpoint is written once per session through the SDK's own writer, and each tiny
bundle is exported once per session.

The suite runs on pytest-xdist workers (pyproject: `-n auto --dist loadfile`, at most MAX_WORKERS): a test file
stays on one worker, and what every worker needs (the checkpoints, the bundles, each a minute or more to export)
is made once by whichever worker asks first, under a file lock, in a directory all workers of this run share.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# Each worker imports torch and may export at once (~2-3 GB each); more than 4 gains little on this suite.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config) -> int:
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


# Files that start the long shared work (exports, the board's venv), in the order the workers should take them:
# two workers start two different exports instead of one idling on the other's lock. xdist hands files out in
# collection order (pyproject: --no-loadscope-reorder); the other files keep theirs after these.
START_FIRST = ("test_export_odd_dims.py", "test_hostile_inputs.py", "test_kv_cache.py", "test_devices.py",
               "test_export.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(START_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


REPO = Path(__file__).resolve().parents[1]
# The real sample inputs ship inside the package (a fresh clone has nothing beside it).
SAMPLE_DATA = REPO / "megrez_mobile" / "assets"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The sample image (720×1480) and speech clip (mp3 and m4a) shipped with the SDK."""
    return SAMPLE_DATA


def made_once(tmp_path_factory, name: str, make: Callable[[Path], object]) -> Path:
    """`make(path)` run once per test run, whichever worker asks first; the others wait and reuse `path`.

    `make` must create `path` only when complete (make_checkpoint and export_bundle do). The directory is this
    run's own: the workers' shared parent under xdist, else this session's temp dir."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "made-once"
    shared.mkdir(exist_ok=True)
    path = shared / name
    with FileLock(str(shared / f"{name}.lock")):
        if not path.exists():
            make(path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random-weight checkpoint in the official layout, written by the SDK's own make-tiny."""
    from megrez_mobile.checkpoint.synthetic import make_checkpoint

    return made_once(tmp_path_factory, "megrez-tiny", lambda path: make_checkpoint(path, seed=0))


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """The tiny checkpoint loaded in float32 through MegrezOmni.from_pretrained (shared: treat as read-only)."""
    import torch

    from megrez_mobile import MegrezOmni

    torch.manual_seed(0)
    return MegrezOmni.from_pretrained(tiny_checkpoint, dtype=torch.float32)


def _export(checkpoint: Path, tmp_path_factory, recipe: str) -> Path:
    from megrez_mobile.export.pipeline import export_bundle

    return made_once(tmp_path_factory, f"{checkpoint.name}-{recipe}", lambda path: export_bundle(checkpoint, recipe, path))


DEMO_OUTPUT = "demo-output.json"


@pytest.fixture(scope="session")
def bundle_8da4w(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint exported once with xnnpack-8da4w (shared: never modify it in a test).

    It is made by `megrez-mobile demo --workdir` the shared directory: the demo exports exactly this (the tiny
    checkpoint, xnnpack-8da4w, to `megrez-tiny-xnnpack-8da4w` beside it), so the suite runs the README's demo
    and the shared export in one go. What the demo printed is kept for test_cli (`demo_output`)."""
    def run_demo(path: Path) -> None:
        import json

        from click.testing import CliRunner

        from megrez_mobile.cli import cli

        assert path == tiny_checkpoint.parent / "megrez-tiny-xnnpack-8da4w", path  # where the demo writes it
        result = CliRunner().invoke(cli, ["demo", "--workdir", str(path.parent)])
        (path.parent / DEMO_OUTPUT).write_text(json.dumps(
            {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr,
             "exception": repr(result.exception) if result.exception else None}))
        if not path.is_dir():
            raise AssertionError(f"the demo wrote no bundle: {result.output[-2000:]}")

    return made_once(tmp_path_factory, "megrez-tiny-xnnpack-8da4w", run_demo)


@pytest.fixture(scope="session")
def demo_output(bundle_8da4w) -> dict:
    """exit_code, stdout, stderr (and exception) of the demo run that made bundle_8da4w."""
    import json

    return json.loads((bundle_8da4w.parent / DEMO_OUTPUT).read_text())


@pytest.fixture(scope="session")
def bundle_fp32(tiny_checkpoint, tmp_path_factory) -> Path:
    return _export(tiny_checkpoint, tmp_path_factory, "xnnpack-fp32")


@pytest.fixture(scope="session")
def bundle_kv8(tiny_checkpoint, tmp_path_factory) -> Path:
    """xnnpack-8da4w with an int8 KV cache (xnnpack-8da4w-kv8): the same weights as bundle_8da4w, only the cache
    differs (shared: never modify it in a test)."""
    return _export(tiny_checkpoint, tmp_path_factory, "xnnpack-8da4w-kv8")


# A checkpoint whose dims the recipes' group size (32) does not divide: the decoder MLP is 688 wide (down_proj's
# input) and the vision MLP 152 (fc2's input; like SigLIP's 4304, a multiple of 8 but not of 32).
ODD_DIMS = dict(intermediate_size=688, vision_intermediate_size=152)


@pytest.fixture(scope="session")
def odd_checkpoint(tmp_path_factory) -> Path:
    from megrez_mobile.checkpoint.synthetic import TINY, make_checkpoint

    return made_once(tmp_path_factory, "megrez-odd",
                     lambda path: make_checkpoint(path, TINY.with_dims("tiny-odd", **ODD_DIMS)))


@pytest.fixture(scope="session")
def odd_bundles(odd_checkpoint, tmp_path_factory):
    """recipe name -> the odd-dims checkpoint exported with it, exported on first use (shared: never modify)."""
    done: dict[str, Path] = {}

    def get(recipe: str) -> Path:
        if recipe not in done:
            done[recipe] = _export(odd_checkpoint, tmp_path_factory, recipe)
        return done[recipe]
    return get
