"""Checkpoint -> bundle, one method at a time so that the full-size model exports on a laptop.

Stages per method: stream its weights from the safetensors (module by module, quantizing each linear as soon as
it is loaded), torch.export, lower with the recipe's backend, then free its eager weights. Only the lowered
methods are kept; they are joined into one program at the end and written into an atomic bundle directory.
Peak memory is therefore ~ the quantized model plus one method's lowering, not the float model.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import hashlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..bundle import (MANIFEST_FILE, PROGRAM_FILE, TOKENIZER_FILE, FileEntry, Manifest, MethodEntry, ProgramEntry,
                      read_manifest)
from ..checkpoint.safetensors_io import INDEX_FILE, CheckpointIndex, atomic_directory, check_destination
from ..config import CONFIG_FILE, MegrezConfig
from ..errors import ExportError
from ..model.omni import MegrezOmni, check_tokenizer_fits
from ..processing.processor import MegrezProcessor
from .lowering import lower_for_debugging, lower_method, to_executorch
from .programs import MethodSpec, method_specs
from .quantize import module_kind, quantizable_modules, quantize_modules
from .recipe import Recipe

MODEL_ID = "Infinigence/Megrez-3B-Omni"
StageFn = Callable[[str], None]
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ExportResult:
    bundle_dir: Path
    manifest: Manifest
    seconds: float


def export_bundle(checkpoint_dir: str | Path, recipe: Recipe | str, out_dir: str | Path, overwrite: bool = False,
                  on_stage: StageFn | None = None, on_weights: ProgressFn | None = None) -> ExportResult:
    """Export `checkpoint_dir` with `recipe` into the bundle directory `out_dir` (appears only when complete)."""
    start = time.perf_counter()
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    recipe = recipe if isinstance(recipe, Recipe) else Recipe.load(recipe)
    say = on_stage or (lambda _msg: None)
    check_destination(out_dir, overwrite)  # before minutes of export, not after

    config, index, processor, model, expected = _prepare(checkpoint_dir, recipe)
    say(f"recipe {recipe.name}: backend {recipe.backend}, context {recipe.options.max_context}, "
        f"max segment {recipe.options.max_seq_len} tokens, {recipe.options.kv_cache_dtype} KV cache")

    lowered, entries = {}, []
    specs = method_specs(model, recipe, processor.config)
    loaded = _WeightStreamer(model, index, expected, on_weights)
    for spec in specs:
        t0 = time.perf_counter()
        quant, fallbacks = _load_and_quantize(spec, model, loaded, recipe, say)
        lowered[spec.name], coverage = _export_one(spec, recipe, say)
        seconds = time.perf_counter() - t0
        entries.append(MethodEntry(spec.name, recipe.method_backend(spec.name) if coverage.delegates else "portable", quant,
                                   coverage.delegated_ops, coverage.total_ops, coverage.delegates, round(seconds, 2),
                                   fallbacks))
        say(f"{spec.name}: done in {seconds:.1f} s ({coverage.percent:.0f}% of ops delegated)")
        loaded.release(spec.weight_prefixes)
        gc.collect()
        trim_heap()

    say("joining methods into one program (memory planning, serialization)")
    constants = _constant_methods(config, recipe, processor)
    program = to_executorch(lowered, constants)
    del lowered
    gc.collect()
    trim_heap()

    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        say(f"writing {PROGRAM_FILE}")
        with open(tmp / PROGRAM_FILE, "wb") as f:
            program.write_to_file(f)
        del program
        shutil.copyfile(checkpoint_dir / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
        manifest = Manifest(
            model_id=MODEL_ID,
            checkpoint={"path": str(checkpoint_dir.resolve()), "digest": checkpoint_digest(checkpoint_dir, index)},
            recipe=recipe.to_dict(),
            program=ProgramEntry(FileEntry.of(tmp, PROGRAM_FILE), recipe.backend, tuple(entries), constants),
            tokenizer=FileEntry.of(tmp, TOKENIZER_FILE),
            front_end=front_end_description(processor),
            context={"max_context": recipe.options.max_context, "max_seq_len": recipe.options.max_seq_len,
                     "kv_cache_dtype": recipe.options.kv_cache_dtype},
            versions=_versions())
        (tmp / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
    return ExportResult(out_dir, read_manifest(out_dir), time.perf_counter() - start)


def _prepare(checkpoint_dir: Path, recipe: Recipe):
    """Read everything but the weights and refuse what can be refused before a weight is read."""
    config = MegrezConfig.from_pretrained(checkpoint_dir)
    index = CheckpointIndex.read(checkpoint_dir)
    processor = MegrezProcessor.from_pretrained(checkpoint_dir)
    with torch.device("meta"):
        model = MegrezOmni(config)
    expected = model.checkpoint_shapes()
    index.check_against(expected)
    if recipe.options.max_context > config.text.max_position_embeddings:
        raise ExportError(f"recipe {recipe.name}: max_context {recipe.options.max_context} exceeds the model's "
                          f"max_position_embeddings ({config.text.max_position_embeddings}, config.json); pass "
                          f"--max-context {config.text.max_position_embeddings} or less")
    modules = dict(quantizable_modules(model))
    recipe.check([n for n, m in modules.items() if isinstance(m, nn.Linear)],
                 [n for n, m in modules.items() if isinstance(m, nn.Embedding)])
    check_tokenizer_fits(processor, config, checkpoint_dir)
    return config, index, processor, model, expected


def export_method_for_debugging(checkpoint_dir: str | Path, recipe: Recipe, method: str):
    """One method of a bundle, exported again exactly as `export_bundle` does, with an ETRecord attached
    (`lower_for_debugging`): what `validate`'s drill-down compares a bundle's intermediate outputs against."""
    checkpoint_dir = Path(checkpoint_dir)
    config, index, processor, model, expected = _prepare(checkpoint_dir, recipe)
    specs = method_specs(model, recipe, processor.config)
    spec = next(s for s in specs if s.name == method)
    _load_and_quantize(spec, model, _WeightStreamer(model, index, expected, None), recipe, lambda _: None)
    return lower_for_debugging(recipe, method, torch_export(spec))


# --- weights ------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to hand back this way
        return None


def trim_heap() -> None:
    """Hand the heap pages freed so far back to the OS (glibc's `malloc_trim`; elsewhere nothing).

    glibc keeps freed heap memory for reuse, and the float weights that quantizing a layer frees come back in
    pieces the next layer's allocations do not fill: at full size the decoder's load-and-quantize stage grew by
    ~130 MiB a layer for 83 MB of quantized weights, and that stage set the export's peak (BENCHMARKS.md)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class _WeightStreamer:
    """Materialises the model's weights module by module from the memory-mapped shards, and frees them again."""

    def __init__(self, model: nn.Module, index: CheckpointIndex, expected: dict[str, tuple[int, ...]],
                 progress: ProgressFn | None):
        self.model, self.index, self.expected, self.progress = model, index, expected, progress
        self.done = 0

    def load_module(self, name: str, module: nn.Module) -> None:
        """Allocate and fill the parameters `module` owns directly (not its children's)."""
        own = [k for k, _ in module.named_parameters(recurse=False)]
        own += [k for k, _ in module.named_buffers(recurse=False) if k not in module._non_persistent_buffers_set]
        keys = {f"{name}.{k}" if name else k for k in own} & set(self.expected)
        if not keys:
            return
        module.to_empty(device="cpu", recurse=False)
        with torch.no_grad():
            for key, tensor in self.index.iter_tensors(keys):
                getattr(module, key.rsplit(".", 1)[1]).copy_(tensor)
                self.done += 1
        if self.progress is not None:
            self.progress(self.done, len(self.expected))

    def release(self, prefixes: tuple[str, ...]) -> None:
        """Send a finished method's eager weights back to the meta device (the lowered program has its own copy)."""
        for name, module in self.model.named_modules():
            if any(f"{name}.".startswith(p) for p in prefixes):
                for key, param in list(module.named_parameters(recurse=False)):
                    # Shape-only placeholders (quantized weights cannot be `to_empty`'d).
                    setattr(module, key, nn.Parameter(torch.empty(param.shape, device="meta"), requires_grad=False))


def _load_and_quantize(spec: MethodSpec, model: MegrezOmni, weights: _WeightStreamer, recipe: Recipe,
                       say: StageFn) -> tuple[str, tuple[dict, ...]]:
    """Load the weights of `spec`'s modules one module at a time, quantizing each linear/embedding right away.

    Returns the method's schemes (as the manifest's `quantization` string) and its fallbacks: layers whose recipe
    scheme the method's backend does not accept, grouped by (requested, used, reason), with their names."""
    if not spec.weight_prefixes:
        return "float", ()
    say(f"{spec.name}: loading and quantizing weights")
    backend = recipe.method_backend(spec.name)
    schemes, fallbacks = set(), {}
    for name, module in model.named_modules():
        if not any(f"{name}.".startswith(p) for p in spec.weight_prefixes):
            continue
        weights.load_module(name, module)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            for layer in quantize_modules(recipe, module, prefix=name, backend=backend):
                schemes.add(layer.scheme.describe() + (" (fallback)" if layer.fell_back else ""))
                if layer.fell_back:
                    key = (layer.requested.describe(), layer.scheme.describe(), layer.reason)
                    fallbacks.setdefault(key, []).append(layer.name)
            if recipe.scheme_for(name, module_kind(module)).scheme == "none":
                schemes.add("float")
            trim_heap()  # the float weight this layer just dropped
    entries = tuple({"requested": requested, "used": used, "reason": reason, "layers": layers}
                    for (requested, used, reason), layers in fallbacks.items())
    for e in entries:
        shown = ", ".join(e["layers"][:4]) + (f" and {len(e['layers']) - 4} more" if len(e["layers"]) > 4 else "")
        say(f"{spec.name}: {len(e['layers'])} layer(s) get {e['used']} instead of {e['requested']} on {backend} "
            f"({e['reason']}): {shown}")
    return ", ".join(sorted(schemes)) or "float", entries


# --- export + lowering ------------------------------------------------------------------------------------------
def _export_one(spec: MethodSpec, recipe: Recipe, say: StageFn):
    say(f"{spec.name}: torch.export")
    exported = torch_export(spec)
    trim_heap()  # tracing's garbage, before lowering makes the method's peak
    say(f"{spec.name}: lowering to {recipe.method_backend(spec.name)}")
    return lower_method(recipe, spec.name, exported)


def torch_export(spec: MethodSpec):
    """torch.export of one method as the bundle exports it (size-oblivious where the spec asks for it)."""
    import torch.fx.experimental._config as fx_config

    module = spec.build().eval()
    try:
        with torch.no_grad(), fx_config.patch(backed_size_oblivious=spec.size_oblivious):
            return torch.export.export(module, spec.example_inputs, dynamic_shapes=spec.dynamic_shapes, strict=False)
    except Exception as e:  # noqa: BLE001 - re-raised naming the method
        raise ExportError(f"torch.export of {spec.name} failed: {type(e).__name__}: {e}") from e


# --- metadata -----------------------------------------------------------------------------------------------------
def _constant_methods(config: MegrezConfig, recipe: Recipe, processor: MegrezProcessor) -> dict:
    o = recipe.options
    return {
        # Equal to text_decoder's dynamic upper bound (ExecuTorch's own export_llm is off by one here).
        "get_max_seq_len": o.max_seq_len,
        "get_max_context_len": o.max_context,
        "use_kv_cache": True,
        "enable_dynamic_shape": True,
        "use_sdpa_with_kv_cache": True,
        "get_vocab_size": config.text.vocab_size,
        "get_n_layers": config.text.num_hidden_layers,
        # Replaces the tokenizer's EOS in the stock runners: every id the chat stops at.
        "get_eos_ids": list(processor.stop_ids),
    }


def front_end_description(processor: MegrezProcessor) -> dict:
    """Everything a Kotlin/Swift front end needs to build the same token sequence as MegrezProcessor."""
    tok = processor.tokenizer
    special = {"role_start": processor.role_start, "role_end": processor.role_end, "turn_end": processor.turn_end}
    for name, text in (("eos", "<|eos|>"), ("pad", "<|pad|>")):
        if tok.has_token(text):
            special[name] = tok.token_id(text)
    special.update(processor.ids)
    return {
        "special_token_ids": special,
        "stop_ids": list(processor.stop_ids),
        "preprocessor_config": processor.config.to_dict(),
        "default_system_prompt": processor.default_system_prompt,
        "chat_template": {
            "turn": "<|role_start|>{role}<|role_end|>{content}<|turn_end|>",
            "generation_prompt": "<|role_start|>assistant<|role_end|>",
            "default_system_turn": "added first when the messages have no system message",
            "user_content": "{image placeholder}\\n, then Audio {k}: {audio placeholder}\\n, then the text",
            "image_placeholder": ("<|image_id_start|>{k}<|image_id_end|><|image_start|>{64 x unk}<|image_end|> "
                                  "then rows of cols x <|slice_start|>{64 x unk}<|slice_end|> joined by \\n"),
            "audio_placeholder": "<|audio_start|>{F/4+2 x unk}<|audio_end|> per 30 s clip",
            "text": "user text is tokenized as plain text: it never produces special tokens",
        },
    }


def checkpoint_digest(checkpoint_dir: Path, index: CheckpointIndex) -> str:
    """sha256 over config.json, the shard index and every shard's size and safetensors header (cheap, no weights)."""
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, INDEX_FILE):
        path = checkpoint_dir / name
        if path.is_file():
            digest.update(path.read_bytes())
    for shard in sorted(set(index.weight_map.values())):
        path = checkpoint_dir / shard
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            digest.update(path.stat().st_size.to_bytes(8, "little") + f.read(header_len))
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {pkg: version(pkg) for pkg in ("megrez-mobile", "torch", "executorch", "torchao")}
