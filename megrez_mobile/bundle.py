"""The bundle: the directory an app ships (manifest.json + model.pte + tokenizer.json), written atomically.

The manifest is the boundary between export and every runtime (Python, Kotlin, Swift): it holds what a front
end needs to build exactly the token sequence the eager processor builds (special-token ids, chat template,
slicing and audio parameters, stop ids, context), what made the program (recipe, checkpoint digest, versions),
and the size and sha256 of every file, which `read_bundle` verifies before anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
PROGRAM_FILE = "model.pte"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class FileEntry:
    file: str
    bytes: int
    sha256: str

    @classmethod
    def of(cls, directory: Path, name: str) -> "FileEntry":
        path = directory / name
        return cls(name, path.stat().st_size, sha256_file(path))


@dataclass(frozen=True)
class MethodEntry:
    """One method of the program: what it runs on and how much of it the delegate runs."""

    name: str
    backend: str
    quantization: str
    delegated_ops: int
    total_ops: int
    delegates: int
    export_seconds: float

    @property
    def coverage_percent(self) -> float:
        return coverage_percent(self.delegated_ops, self.total_ops)


@dataclass(frozen=True)
class ProgramEntry:
    file: FileEntry
    backend: str
    methods: tuple[MethodEntry, ...]
    constants: dict[str, Any]


@dataclass(frozen=True)
class Manifest:
    model_id: str
    checkpoint: dict[str, Any]       # source path (informational) and digest of its config, index and headers
    recipe: dict[str, Any]           # the full recipe, overrides applied
    program: ProgramEntry
    tokenizer: FileEntry
    front_end: dict[str, Any]        # special-token ids, chat template, image/audio parameters, stop ids
    context: dict[str, int]          # max_context, max_seq_len
    versions: dict[str, str]
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str) -> "Manifest":
        try:
            if raw.get("schema_version") != SCHEMA_VERSION:
                raise BundleError(f"{source}: schema_version {raw.get('schema_version')!r}, this SDK reads "
                                  f"{SCHEMA_VERSION}; re-export the bundle with this version of megrez-mobile")
            prog = raw["program"]
            program = ProgramEntry(FileEntry(**prog["file"]), prog["backend"],
                                   tuple(MethodEntry(**m) for m in prog["methods"]), dict(prog["constants"]))
            return cls(model_id=raw["model_id"], checkpoint=raw["checkpoint"], recipe=raw["recipe"], program=program,
                       tokenizer=FileEntry(**raw["tokenizer"]), front_end=raw["front_end"], context=raw["context"],
                       versions=raw["versions"], schema_version=raw["schema_version"])
        except (KeyError, TypeError) as e:
            raise BundleError(f"{source} is malformed ({type(e).__name__}: {e}); re-export the bundle") from e

    def all_files(self) -> tuple[FileEntry, ...]:
        return (self.program.file, self.tokenizer)


def coverage_percent(delegated_ops: int, total_ops: int) -> float:
    return 100.0 * delegated_ops / total_ops if total_ops else 100.0


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(bundle_dir: str | Path) -> Manifest:
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST_FILE
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir} is not a directory; pass the folder `megrez-mobile export` wrote")
    if not path.is_file():
        partial = sorted(p.name for p in bundle_dir.parent.glob(f".{bundle_dir.name}.partial-*"))
        hint = f" (found unfinished export(s) {partial}: re-run the export)" if partial else ""
        raise BundleError(f"{path} is missing: {bundle_dir} is not a complete bundle{hint}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON ({e}); re-export the bundle") from e
    if not isinstance(raw, dict):
        raise BundleError(f"{path} is not a manifest object; re-export the bundle")
    return Manifest.from_dict(raw, str(path))


def verify_files(bundle_dir: str | Path, manifest: Manifest, checksums: bool = True) -> None:
    """Check every listed file's size (and sha256); the error names each file that is wrong and how."""
    bundle_dir = Path(bundle_dir)
    problems = []
    for entry in manifest.all_files():
        path = bundle_dir / entry.file
        if not path.is_file():
            problems.append(f"{entry.file}: missing")
            continue
        size = path.stat().st_size
        if size != entry.bytes:
            problems.append(f"{entry.file}: {size:,} bytes, the manifest says {entry.bytes:,} (truncated or replaced)")
        elif checksums and sha256_file(path) != entry.sha256:
            problems.append(f"{entry.file}: sha256 differs from the manifest (corrupted or modified)")
    if problems:
        raise BundleError(f"bundle {bundle_dir} failed verification:\n  " + "\n  ".join(problems) +
                          "\nCopy the bundle again (or re-export it); do not edit files inside a bundle.")
