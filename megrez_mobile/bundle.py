"""The bundle: the directory an app ships (manifest.json + model.pte + tokenizer.json), written atomically.

The manifest is the boundary between export and every runtime (Python, Kotlin, Swift): it holds what a front
end needs to build exactly the token sequence the eager processor builds (special-token ids, chat template,
slicing and audio parameters, stop ids, context), what made the program (recipe, checkpoint digest, versions),
and the size and sha256 of every file, which `read_bundle` verifies before anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import PreprocessorConfig
from .errors import BundleError, MegrezError
from .export.recipe import KV_CACHE_DTYPES, Recipe
from .untrusted import bounded, member, plain_name, read_json, typed_fields

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
PROGRAM_FILE = "model.pte"
TOKENIZER_FILE = "tokenizer.json"


_FIX = "Re-export the bundle with `megrez-mobile export`, or copy it again from its source"
_SHA256 = re.compile(r"[0-9a-f]{64}")
# The largest context any front end may be asked to keep (the KV cache is allocated from it).
MAX_CONTEXT = 1 << 20


def _typed(cls, raw: Any, where: str, **kwargs) -> dict[str, Any]:
    return typed_fields(cls, raw, where, BundleError, fix=_FIX, **kwargs)


@dataclass(frozen=True)
class FileEntry:
    file: str
    bytes: int = bounded(0, 1 << 44)
    sha256: str

    @classmethod
    def of(cls, directory: Path, name: str) -> "FileEntry":
        path = directory / name
        return cls(name, path.stat().st_size, sha256_file(path))

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> "FileEntry":
        entry = cls(**_typed(cls, raw, where))
        plain_name(entry.file, f"{where}: file", BundleError)
        if not _SHA256.fullmatch(entry.sha256):
            raise BundleError(f"{where}: sha256 must be 64 lowercase hex digits, got {entry.sha256[:80]!r}. {_FIX}")
        return entry


@dataclass(frozen=True)
class MethodEntry:
    """One method of the program: what it runs on and how much of it the delegate runs."""

    name: str
    backend: str
    quantization: str
    delegated_ops: int
    total_ops: int
    delegates: int
    export_seconds: float = bounded(0.0, None)
    # Layers whose recipe scheme the backend does not accept, and what they got instead: one entry per
    # {"requested", "used", "reason", "layers": [checkpoint module names]}. Empty when every rule applied as written.
    quantization_fallbacks: tuple[dict[str, Any], ...] = ()

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
class Context:
    """The manifest's `context`: what the program's constant methods say, checked against them at load."""

    max_context: int = bounded(2, MAX_CONTEXT)
    max_seq_len: int = bounded(1, MAX_CONTEXT)
    # The element type of the program's KV cache (KV_CACHE_DTYPES); manifests from before it was recorded held
    # only float32 caches.
    kv_cache_dtype: str = "fp32"


@dataclass(frozen=True)
class FrontEnd:
    """The manifest's `front_end` as the runtimes read it (validated; the manifest keeps the plain mapping)."""

    special_token_ids: dict[str, int]
    stop_ids: list[int]
    preprocessor_config: dict[str, Any]
    default_system_prompt: str | None = None
    chat_template: dict[str, str] | None = None


@dataclass(frozen=True)
class Manifest:
    model_id: str
    checkpoint: dict[str, Any]       # source path (informational) and digest of its config, index and headers
    recipe: dict[str, Any]           # the full recipe, overrides applied
    program: ProgramEntry
    tokenizer: FileEntry
    front_end: dict[str, Any]        # special-token ids, chat template, image/audio parameters, stop ids
    context: dict[str, int | str]    # max_context, max_seq_len, kv_cache_dtype (absent in older manifests: fp32)
    versions: dict[str, str]
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> "Manifest":
        """Every field a runtime or front end reads, checked for type and range; the error names the field."""
        if not isinstance(raw, dict):
            raise BundleError(f"{source} is not a manifest (a JSON object). {_FIX}")
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise BundleError(f"{source}: schema_version {raw.get('schema_version')!r}, this SDK reads "
                              f"{SCHEMA_VERSION}; re-export the bundle with this version of megrez-mobile")
        top = _typed(cls, raw, source, only=("model_id", "checkpoint", "recipe", "front_end", "context",
                                             "versions", "schema_version"))
        prog = _typed(ProgramEntry, raw.get("program"), f"{source}: program", only=("backend", "constants"))
        methods = raw["program"].get("methods")
        if not isinstance(methods, list) or not methods:
            raise BundleError(f"{source}: program.methods must be a non-empty list. {_FIX}")
        program = ProgramEntry(
            FileEntry.from_dict(raw["program"].get("file"), f"{source}: program.file"), prog["backend"],
            tuple(MethodEntry(**_typed(MethodEntry, m, f"{source}: program.methods[{i}]"))
                  for i, m in enumerate(methods)),
            prog["constants"])
        manifest = cls(program=program, tokenizer=FileEntry.from_dict(raw.get("tokenizer"), f"{source}: tokenizer"),
                       **top)
        manifest._check(source)
        return manifest

    def _check(self, source: str) -> None:
        context = self.typed_context(source)
        if context.max_seq_len > context.max_context:
            raise BundleError(f"{source}: context.max_seq_len ({context.max_seq_len}) exceeds context.max_context "
                              f"({context.max_context}). {_FIX}")
        if context.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise BundleError(f"{source}: context.kv_cache_dtype is {context.kv_cache_dtype!r}; this SDK knows "
                              f"{', '.join(KV_CACHE_DTYPES)}. {_FIX}")
        for name, key in (("get_max_context_len", "max_context"), ("get_max_seq_len", "max_seq_len")):
            if self.program.constants.get(name) != self.context[key]:
                raise BundleError(f"{source}: program.constants.{name} ({self.program.constants.get(name)!r}) "
                                  f"disagrees with context.{key} ({self.context[key]}). {_FIX}")
        _typed(FrontEnd, self.front_end, f"{source}: front_end")
        if not self.front_end["stop_ids"]:
            raise BundleError(f"{source}: front_end.stop_ids is empty: generation would never stop. {_FIX}")
        try:  # the front end's parameters, with their own bounds
            PreprocessorConfig.from_dict(self.front_end["preprocessor_config"], f"{source}: front_end.preprocessor_config")
        except MegrezError as e:
            raise BundleError(f"{e}. {_FIX}") from None
        try:  # the recipe as exported: `validate` and `inspect` read it
            recipe = Recipe.from_dict(self.recipe, f"{source}: recipe")
        except MegrezError as e:
            raise BundleError(f"{e}. {_FIX}") from None
        if recipe.options.kv_cache_dtype != context.kv_cache_dtype:
            raise BundleError(f"{source}: context.kv_cache_dtype ({context.kv_cache_dtype}) disagrees with "
                              f"recipe.options.kv_cache_dtype ({recipe.options.kv_cache_dtype}). {_FIX}")
        if names := {e.file for e in self.all_files()} & {MANIFEST_FILE}:
            raise BundleError(f"{source}: a file entry names {names.pop()}, the manifest itself. {_FIX}")
        if self.program.file.file == self.tokenizer.file:
            raise BundleError(f"{source}: program.file and tokenizer name the same file. {_FIX}")

    def typed_context(self, source: str = MANIFEST_FILE) -> Context:
        """The manifest's `context`, typed and with its defaults (an older manifest's KV cache is fp32)."""
        return Context(**_typed(Context, self.context, f"{source}: context"))

    @property
    def kv_cache_dtype(self) -> str:
        return self.typed_context().kv_cache_dtype

    def all_files(self) -> tuple[FileEntry, ...]:
        return (self.program.file, self.tokenizer)

    @property
    def backends(self) -> list[str]:
        """Every delegate the program's methods run on (a runtime must have all of them to load the bundle)."""
        return sorted({m.backend for m in self.program.methods} - {"portable"})

    def path_of(self, bundle_dir: str | Path, entry: FileEntry) -> Path:
        """Where `entry` lives in `bundle_dir`: the one path both verification and loading use."""
        return member(Path(bundle_dir), entry.file, f"{Path(bundle_dir) / MANIFEST_FILE}: {entry.file}", BundleError)

    @property
    def program_file(self) -> str:
        return self.program.file.file


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
    return Manifest.from_dict(read_json(path, BundleError, _FIX), str(path))


def verify_files(bundle_dir: str | Path, manifest: Manifest, checksums: bool = True) -> None:
    """Check every listed file's size (and sha256); the error names each file that is wrong and how."""
    bundle_dir = Path(bundle_dir)
    problems = []
    for entry in manifest.all_files():
        path = manifest.path_of(bundle_dir, entry)
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
