"""Quantizing a large weight a block of rows at a time (`quantize._quantize_in_row_blocks`) gives exactly the
tensor that quantizing it whole gives, for every scheme the recipes use: the export's memory fix must not move a
single quantized value. The full-size LM head's transient (3.7 GiB whole, 0.7 GiB in blocks) is in BENCHMARKS.md.
"""

from __future__ import annotations

import pytest
import torch
import torchao.quantization
from torch import nn

from megrez_mobile.export import quantize
from megrez_mobile.export.recipe import QuantScheme, Recipe

ROWS, WIDTH = 1000, 256
BLOCK_ROWS = 96  # 11 blocks, the last one short


def _quantized(kind: str, weight: torch.Tensor, recipe: Recipe, name: str) -> nn.Module:
    layer = nn.Linear(WIDTH, ROWS, bias=False) if kind == "linear" else nn.Embedding(ROWS, WIDTH)
    with torch.no_grad():
        layer.weight.copy_(weight)
    quantize.quantize_modules(recipe, layer, prefix=name)
    return layer


@pytest.mark.parametrize("name, kind, scheme", [
    ("llm.lm_head", "linear", QuantScheme("8da8w")),
    ("llm.model.embed_tokens", "embedding", QuantScheme("8w")),
    ("llm.model.layers.0.mlp.up_proj", "linear", QuantScheme("8da4w", group_size=32)),
    ("llm.model.layers.0.mlp.up_proj", "linear", QuantScheme("8da4w", group_size=32, hqq=False)),
])
def test_row_blocks_quantize_to_the_same_tensor_as_the_whole_weight(monkeypatch, name, kind, scheme):
    recipe = Recipe.load("xnnpack-8da4w")
    monkeypatch.setattr(Recipe, "scheme_for", lambda _self, _name, _kind: scheme)
    weight = torch.randn(ROWS, WIDTH, generator=torch.Generator().manual_seed(0))
    whole = _quantized(kind, weight, recipe, name)

    calls = []
    real = torchao.quantization.quantize_
    monkeypatch.setattr(torchao.quantization, "quantize_", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    monkeypatch.setattr(quantize, "ROW_BLOCK_ELEMENTS", BLOCK_ROWS * WIDTH)
    blocks = _quantized(kind, weight, recipe, name)

    assert len(calls) == -(-ROWS // BLOCK_ROWS)
    a, b = whole.weight, blocks.weight
    assert type(b) is type(a) and isinstance(b, nn.Parameter) and not b.requires_grad
    names, meta = a.__tensor_flatten__()
    assert b.__tensor_flatten__()[1] == meta
    for inner in names:
        assert torch.equal(getattr(a, inner), getattr(b, inner)), inner
    x = torch.randn(3, WIDTH) if kind == "linear" else torch.tensor([[0, 95, 96, 999]])
    assert torch.equal(whole(x), blocks(x))
