"""Quantization rules -> torchao configs, applied in place to the eager model's linears and embeddings.

Separate from backend packing (lowering.py): a rule says what numbers the weights hold; the partitioner decides
who runs them. A grouped scheme on a layer whose input width the group does not divide falls back to
per-channel (SigLIP's 4304-wide MLP input is not a multiple of 32), and the fallback is reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .recipe import QuantScheme, Recipe


@dataclass(frozen=True)
class QuantizedLayer:
    name: str
    scheme: QuantScheme
    fell_back_to_per_channel: bool = False


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


def quantize_modules(recipe: Recipe, model: nn.Module, prefix: str = "") -> list[QuantizedLayer]:
    """Quantize every linear/embedding under `model` (named from `prefix`) by the recipe's first matching rule."""
    from torchao.quantization import quantize_

    done = []
    for name, module in list(quantizable_modules(model, prefix)):
        scheme = recipe.scheme_for(name, module_kind(module))
        if scheme.scheme == "none":
            continue
        group = scheme.group_size
        fell_back = bool(group) and module.weight.shape[-1] % group != 0
        if fell_back:
            group = 0
        # In place: the module keeps its identity, its weight becomes a torchao quantized tensor.
        quantize_(module, _torchao_config(scheme, group), filter_fn=lambda _m, _fqn: True)
        done.append(QuantizedLayer(name, scheme, fell_back))
    return done
