"""Quantization rules -> torchao configs, applied in place to the eager model's linears and embeddings.

Separate from backend packing (lowering.py): a rule says what numbers the weights hold; the partitioner decides
who runs them. A grouped scheme on a layer whose input width the group does not divide (SigLIP's 4304-wide MLP
input, or any checkpoint's odd MLP width, is not a multiple of 32) falls back to the closest scheme the layer's
backend accepts (`fallback_scheme`); every fallback is reported and recorded in the manifest with its layers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ExportError
from .recipe import QuantScheme, Recipe


@dataclass(frozen=True)
class QuantizedLayer:
    name: str
    scheme: QuantScheme                 # what the layer holds
    requested: QuantScheme | None = None  # the recipe's scheme, where a fallback replaced it
    reason: str = ""                    # why the fallback

    @property
    def fell_back(self) -> bool:
        return self.requested is not None


# XNNPACK packs 4-bit weights in groups that are a multiple of 32 (a per-channel 4-bit weight is packed as one group
# of the whole input width, so it needs that width to be a multiple of 32) and 8-bit weights only per channel
# ("Delegation to XNNPACK requires group_size to be a multiple of 32"; "Only 4b group quantization is supported").
XNNPACK_GROUP_MULTIPLE = 32


def _accepts(backend: str, scheme: QuantScheme, in_features: int) -> str | None:
    """Why `backend` cannot run a linear with `in_features` inputs quantized as `scheme` (None: it can)."""
    group = scheme.group_size or in_features
    if in_features % group:
        return f"input width {in_features} is not a multiple of group {group}"
    if backend == "xnnpack" and scheme.weight_bits == 4 and group % XNNPACK_GROUP_MULTIPLE:
        what = f"group {group}" if scheme.group_size else f"per channel (one group of {in_features})"
        return f"XNNPACK packs 4-bit weights in groups that are a multiple of {XNNPACK_GROUP_MULTIPLE}, not {what}"
    if backend == "xnnpack" and scheme.weight_bits == 8 and scheme.group_size:
        return "XNNPACK takes 8-bit weights per channel only"
    return None


def fallback_scheme(backend: str, scheme: QuantScheme, in_features: int,
                    kind: str = "linear") -> tuple[QuantScheme, str]:
    """The scheme a layer really gets on `backend` and, if it differs from the recipe's, why.

    In order of preference: the recipe's scheme; the same bits per channel; 8 bits per channel (same activation
    scheme). Embeddings run on ExecuTorch's quantized-embedding kernel, which takes any per-row group.
    """
    if scheme.scheme == "none":
        return scheme, ""
    if kind == "embedding":
        if scheme.group_size and in_features % scheme.group_size:
            return (dataclasses.replace(scheme, group_size=0),
                    f"embedding width {in_features} is not a multiple of group {scheme.group_size}")
        return scheme, ""
    reason = _accepts(backend, scheme, in_features)
    if reason is None:
        return scheme, ""
    per_channel = dataclasses.replace(scheme, group_size=0)
    eight_bit = dataclasses.replace(per_channel, scheme="8da8w" if scheme.dynamic_activations else "8w")
    for candidate in (per_channel, eight_bit):
        if candidate == scheme:
            continue
        refused = _accepts(backend, candidate, in_features)
        if refused is None:
            return candidate, reason
        reason += f"; {candidate.describe()}: {refused}"
    raise ExportError(f"no quantization of a {in_features}-wide linear that {backend} accepts is close to "
                      f"{scheme.describe()} ({reason}); quantize it with another rule or scheme none")


def quantizable_modules(model: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """(checkpoint module name, module) of every nn.Linear and nn.Embedding under `model`."""
    for name, module in model.named_modules(prefix=prefix.rstrip(".")):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            yield name, module


def module_kind(module: nn.Module) -> str:
    return "embedding" if isinstance(module, nn.Embedding) else "linear"


def _torchao_config(scheme: QuantScheme, group_size: int):
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerAxis, PerGroup

    granularity = PerGroup(group_size) if group_size else PerAxis(0)
    dtype = torch.int4 if scheme.weight_bits == 4 else torch.int8
    algorithm = "hqq_scale_only" if scheme.hqq else "affine"
    if scheme.dynamic_activations:
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=dtype, weight_granularity=granularity,
                                                     intx_choose_qparams_algorithm=algorithm)
    return IntxWeightOnlyConfig(weight_dtype=dtype, granularity=granularity, intx_choose_qparams_algorithm=algorithm)


def quantize_modules(recipe: Recipe, model: nn.Module, prefix: str = "",
                     backend: str | None = None) -> list[QuantizedLayer]:
    """Quantize every linear/embedding under `model` (named from `prefix`) by the recipe's first matching rule,
    falling back per layer to what `backend` (the one the method lands on; default the recipe's) accepts."""
    from torchao.quantization import quantize_

    backend = backend or recipe.backend
    done = []
    for name, module in list(quantizable_modules(model, prefix)):
        requested = recipe.scheme_for(name, module_kind(module))
        if requested.scheme == "none":
            continue
        scheme, reason = fallback_scheme(backend, requested, module.weight.shape[-1], module_kind(module))
        _quantize_in_row_blocks(module, _torchao_config(scheme, scheme.group_size))
        done.append(QuantizedLayer(name, scheme, requested if reason else None, reason))
    return done


# torchao's quantize_ holds about three float copies of a weight while it quantizes it: ~4 GB for the full-size
# LM head or token table (1.26 GB each in fp32), the largest transient of the export (BENCHMARKS.md). Every scheme
# here quantizes each row on its own (per row, or per group along the row), so row blocks give the same numbers.
# Blocks stay far below glibc's largest mmap threshold (32 MiB): HQQ's scale search allocates fresh temporaries on
# every iteration, and above the threshold each is a fresh mmap the kernel zero-fills page by page (5 M page faults
# and 9.6 s for one full-size decoder layer at 128 MB blocks; 0.15 M and 1.2 s at 4 MB, reusing heap chunks).
ROW_BLOCK_ELEMENTS = 1 << 20  # 4 MB of fp32 weights per block


def _quantize_in_row_blocks(module: nn.Linear | nn.Embedding, config) -> None:
    """Quantize `module.weight` in place (the module keeps its identity, its weight becomes a torchao quantized
    tensor), a block of rows at a time when the weight is large, and join the blocks into one tensor."""
    from torchao.quantization import quantize_

    weight = module.weight
    rows, width = weight.shape
    block = max(1, ROW_BLOCK_ELEMENTS // width)
    if rows <= block:
        quantize_(module, config, filter_fn=lambda _m, _fqn: True)
        return
    parts = []
    for start in range(0, rows, block):
        n = min(block, rows - start)
        # A layer of the same kind holding a view of the rows (quantize_ reads the layer's attributes); no bias:
        # quantize_ leaves a bias as it is, and the real layer keeps its own.
        part = (nn.Linear(width, n, bias=False, device="meta") if isinstance(module, nn.Linear)
                else nn.Embedding(n, width, device="meta"))
        part.weight = nn.Parameter(weight.detach()[start:start + n], requires_grad=False)
        quantize_(part, config, filter_fn=lambda _m, _fqn: True)
        parts.append(part.weight)
    # The quantized tensor is a wrapper subclass: join its inner tensors (values, scales, zero points) row-wise.
    quantized_type = type(parts[0])
    names, meta = parts[0].__tensor_flatten__()
    inner = {n: torch.cat([getattr(p, n) for p in parts]) for n in names}
    del parts
    joined = quantized_type.__tensor_unflatten__(inner, meta, weight.shape, weight.stride())
    module.weight = nn.Parameter(joined, requires_grad=False)
