"""Sharded safetensors in the Hugging Face layout: read (validated, memory-mapped) and write (atomic).

Reading checks the whole checkpoint against the model before a single weight is copied: every shard
present and readable, every key expected, every shape right. One CheckpointError lists all problems.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError, OutputPathError
from ..untrusted import member, read_json

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# Buffers transformers used to persist; the official loaders skip them too (vLLM load_weights).
IGNORED_KEY_SUFFIXES = ("rotary_emb.inv_freq", "rotary_emb.cos_cached", "rotary_emb.sin_cached")

ProgressFn = Callable[[int, int], None]


def _read_weight_map(index_path: Path) -> dict[str, str]:
    fix = "Re-download it (it must be the model.safetensors.index.json of the same download as the shards)."
    raw = read_json(index_path, CheckpointError, fix)
    weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path}: weight_map must be a non-empty mapping of tensor name -> shard file. {fix}")
    for key, shard in weight_map.items():
        if not isinstance(shard, str):
            raise CheckpointError(f"{index_path}: weight_map[{key!r}] must be a shard file name, got "
                                  f"{type(shard).__name__}. {fix}")
    return weight_map


@dataclass(frozen=True)
class CheckpointIndex:
    """Which shard holds which key, and each key's shape and dtype (from the shard headers only)."""

    directory: Path
    weight_map: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]

    @classmethod
    def read(cls, directory: str | Path) -> "CheckpointIndex":
        directory = Path(directory)
        index_path = directory / INDEX_FILE
        if index_path.is_file():
            weight_map = _read_weight_map(index_path)
        elif (directory / SINGLE_FILE).is_file():
            weight_map = None
        else:
            raise CheckpointError(f"{directory} holds neither {INDEX_FILE} nor {SINGLE_FILE}: "
                                  "point at a Megrez-3B-Omni checkpoint directory")

        shard_names = sorted(set(weight_map.values())) if weight_map is not None else [SINGLE_FILE]
        for name in shard_names:  # before any shard is opened: a name from the index never leaves the directory
            member(directory, name, f"{index_path}: weight_map shard name", CheckpointError)
        missing = [n for n in shard_names if not (directory / n).is_file()]
        if missing:
            raise CheckpointError(f"{directory}: shard file(s) listed in {INDEX_FILE} are missing: "
                                  f"{', '.join(missing)}. Re-download them (all shards are needed).")

        shapes, dtypes, found_in = {}, {}, {}
        for name in shard_names:
            path = directory / name
            try:
                with safe_open(str(path), framework="pt") as f:
                    for key in f.keys():
                        sl = f.get_slice(key)
                        shapes[key] = tuple(sl.get_shape())
                        dtypes[key] = sl.get_dtype()
                        found_in[key] = name
            except Exception as e:  # safetensors raises SafetensorError / OSError on truncated or foreign files
                raise CheckpointError(f"{path} is not a readable safetensors file ({e}). It is probably truncated: "
                                      "re-download it.") from e
        if weight_map is None:
            weight_map = found_in
        misplaced = sorted(k for k, shard in weight_map.items() if found_in.get(k) != shard)
        if misplaced:
            raise CheckpointError(f"{index_path}: {len(misplaced)} key(s) are not in the shard the index names, e.g. "
                                  f"{', '.join(misplaced[:5])}. The shards and the index come from different "
                                  "downloads; re-download the checkpoint.")
        return cls(directory, dict(weight_map), shapes, dtypes)

    def check_against(self, expected: dict[str, tuple[int, ...]]) -> None:
        """Raise one CheckpointError listing every missing, unexpected and misshaped key."""
        present = {k for k in self.weight_map if not k.endswith(IGNORED_KEY_SUFFIXES)}
        missing = sorted(set(expected) - present)
        unexpected = sorted(present - set(expected))
        misshaped = sorted(k for k in present & set(expected) if self.shapes[k] != tuple(expected[k]))
        if not (missing or unexpected or misshaped):
            return
        lines = [f"{self.directory} does not match its config.json:"]

        def show(title: str, keys: list[str], fmt=lambda k: k):
            if keys:
                lines.append(f"  {len(keys)} {title}:")
                lines.extend(f"    {fmt(k)}" for k in keys[:20])
                if len(keys) > 20:
                    lines.append(f"    ... and {len(keys) - 20} more")

        show("missing key(s)", missing)
        show("unexpected key(s)", unexpected)
        show("key(s) with the wrong shape", misshaped,
             lambda k: f"{k}: checkpoint {list(self.shapes[k])}, config expects {list(expected[k])}")
        lines.append("Check that config.json belongs to these weights (a dim edited by hand, or mixed downloads).")
        raise CheckpointError("\n".join(lines))

    def iter_tensors(self, keys: set[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (key, tensor) shard by shard from memory-mapped files; only one tensor is materialised at a time."""
        by_shard: dict[str, list[str]] = {}
        for key, shard in self.weight_map.items():
            if keys is None or key in keys:
                by_shard.setdefault(shard, []).append(key)
        for shard in sorted(by_shard):
            with safe_open(str(self.directory / shard), framework="pt") as f:
                for key in by_shard[shard]:
                    yield key, f.get_tensor(key)


def load_into(model: torch.nn.Module, index: CheckpointIndex, expected: dict[str, tuple[int, ...]],
              progress: ProgressFn | None = None) -> None:
    """Copy every expected tensor into `model`'s (already allocated) parameters, converting dtype on the fly."""
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    done = 0
    with torch.no_grad():
        for key, tensor in index.iter_tensors(set(expected)):
            params[key].copy_(tensor)
            done += 1
            if progress is not None:
                progress(done, len(expected))


def check_destination(out_dir: str | Path, overwrite: bool = False) -> None:
    """Refuse, before any work, an output directory that could never be written (so no minutes are lost)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"{out_dir} is a file, not a directory; choose another output path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise OutputPathError(f"{out_dir} already exists and is not empty; choose another path or pass --overwrite")
    ancestor = out_dir.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"cannot create {out_dir}: {ancestor} is a file, not a directory; choose another "
                              "output path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot create {out_dir}: no write permission in {ancestor}; choose another output "
                              "path")


@contextmanager
def atomic_directory(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Write into a temporary sibling directory and rename it into place only when the block succeeds."""
    out_dir = Path(out_dir)
    check_destination(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield tmp
        # mkdtemp (and some writers) create owner-only files; give the result the usual umask permissions.
        umask = os.umask(0)
        os.umask(umask)
        for path in [tmp, *tmp.rglob("*")]:
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_sharded(out_dir: Path, shapes: dict[str, tuple[int, ...]], make_tensor: Callable[[str, tuple], torch.Tensor],
                  num_shards: int, dtype: torch.dtype, progress: ProgressFn | None = None) -> None:
    """Write `shapes` as `num_shards` safetensors files + index, producing one shard's tensors at a time."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    sizes = {k: math.prod(s) * itemsize for k, s in shapes.items()}
    total = sum(sizes.values())
    budget = math.ceil(total / num_shards)
    groups: list[list[str]] = [[]]
    filled = 0
    for key in shapes:
        if groups[-1] and filled + sizes[key] > budget and len(groups) < num_shards:
            groups.append([])
            filled = 0
        groups[-1].append(key)
        filled += sizes[key]
    weight_map, done = {}, 0
    for i, keys in enumerate(groups, start=1):
        name = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for key in keys:
            tensors[key] = make_tensor(key, shapes[key]).to(dtype).contiguous()
            weight_map[key] = name
            done += 1
            if progress is not None:
                progress(done, len(shapes))
        save_file(tensors, str(out_dir / name), metadata={"format": "pt"})
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
