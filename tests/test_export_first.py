"""The model is written export-first: each component torch.exports with dynamic shapes and matches eager.

This is the property the ExecuTorch exporter relies on (one slice of any 14-multiple size, one clip of any
length, a KV-cached decoder over a dynamic number of tokens), checked on the tiny checkpoint.
"""

from __future__ import annotations

import pytest
import torch
import torch.fx.experimental._config as fx_config
from torch import nn
from torch.export import Dim, export


class Vision(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.vision = model.vision

    def forward(self, slice_chw):
        return self.vision(slice_chw)


class Audio(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.audio = model.audio

    def forward(self, mel):
        return self.audio(mel)


class Decoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.llm = model.llm

    def forward(self, embeds, positions):
        return self.llm.last_logits(embeds, positions)


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    from megrez_mobile import MegrezOmni

    return MegrezOmni.from_pretrained(tiny_checkpoint, load_processor=False)


def test_vision_exports_with_dynamic_height_and_width(model):
    wrapper = Vision(model)
    h, w = Dim("h", min=1, max=200), Dim("w", min=1, max=200)
    example = torch.randint(0, 256, (1, 3, 37 * 14, 27 * 14), dtype=torch.uint8)
    # Slices one patch high or wide exist (a 10000×20 image gives a 9996×14 source). Without size-oblivious
    # shapes, export's contiguity checks specialise h, w >= 2; with it one program takes every size.
    with fx_config.patch(backed_size_oblivious=True):
        program = export(wrapper, (example,), dynamic_shapes=({2: 14 * h, 3: 14 * w},)).module()
    for rows, cols in [(46, 22), (1, 90), (2, 1), (70, 70)]:
        x = torch.randint(0, 256, (1, 3, rows * 14, cols * 14), dtype=torch.uint8)
        torch.testing.assert_close(program(x), model.vision(x), atol=1e-5, rtol=1e-5)


def test_audio_exports_with_dynamic_frames(model):
    wrapper = Audio(model)
    frames = Dim("frames", min=2, max=1500)
    program = export(wrapper, (torch.randn(1, 128, 300),), dynamic_shapes=({2: 2 * frames},)).module()
    for n in (152, 3000):
        mel = torch.randn(1, 128, n)
        out = program(mel)
        assert out.shape == (1, n // 4 + 2, model.config.text.hidden_size)
        torch.testing.assert_close(out, model.audio(mel), atol=1e-5, rtol=1e-5)


def test_kv_cached_decoder_exports_with_dynamic_length(model, tiny_checkpoint):
    from megrez_mobile import MegrezOmni

    model.llm.setup_kv_cache(256)
    wrapper = Decoder(model)
    tokens = Dim("tokens", min=1, max=128)
    program = export(wrapper, (torch.randn(1, 10, 128), torch.arange(10)),
                     dynamic_shapes=({1: tokens}, {0: tokens})).module()
    model.llm.drop_kv_cache()
    # Prefill 20 embeddings, then decode 3 single steps, through the exported program's own cache.
    reference = MegrezOmni.from_pretrained(tiny_checkpoint, load_processor=False)
    torch.manual_seed(0)
    embeds = torch.randn(1, 23, 128)
    full = reference.llm(embeds, torch.arange(23))[0]
    got = [program(embeds[:, :20], torch.arange(20))[0]]
    got += [program(embeds[:, p:p + 1], torch.tensor([p]))[0] for p in range(20, 23)]
    torch.testing.assert_close(torch.stack(got), full[19:], atol=1e-4, rtol=1e-4)


def test_the_core_ml_vision_program_takes_float_pixels_and_matches_eager(model, tiny_checkpoint):
    """On Core ML the vision encoder takes float32 pixels (0-255) with H and W as plain dims (Core ML has no uint8
    input and no 14·rows dims): the method the exporter builds gives the eager uint8 encoder's output."""
    from megrez_mobile.export.programs import method_specs
    from megrez_mobile.export.recipe import Recipe
    from megrez_mobile.processing.processor import MegrezProcessor

    preprocessor = MegrezProcessor.from_pretrained(tiny_checkpoint).config
    spec = next(s for s in method_specs(model, Recipe.load("coreml-encoders"), preprocessor)
                if s.name == "vision_encoder")
    assert spec.example_inputs[0].dtype == torch.float32
    with torch.no_grad(), fx_config.patch(backed_size_oblivious=True):
        program = export(spec.build().eval(), spec.example_inputs, dynamic_shapes=spec.dynamic_shapes).module()
    for rows, cols in [(46, 22), (1, 90), (2, 1)]:
        x = torch.randint(0, 256, (1, 3, rows * 14, cols * 14), dtype=torch.uint8)
        torch.testing.assert_close(program(x.float())[0], model.vision(x), atol=1e-5, rtol=1e-5)


def test_the_xnnpack_vision_program_sizes_patch_tensors_by_the_slicers_bound(model, tiny_checkpoint):
    """Rows and cols are two dims, each up to max_slice_side / 14, so a [rows·cols, D] tensor would be planned (by
    ExecuTorch and inside XNNPACK) for 16,384 patches. The exported method narrows the patches to a count of its
    own, bounded by max_slice_patches: no float tensor may depend on both grid dims, and every patch-count dim is
    bounded by it. It still gives the eager encoder's output for every slice size the slicer can make."""
    from megrez_mobile.export.pipeline import torch_export
    from megrez_mobile.export.programs import method_specs
    from megrez_mobile.export.recipe import Recipe
    from megrez_mobile.processing.image import max_slice_patches
    from megrez_mobile.processing.processor import MegrezProcessor

    preprocessor = MegrezProcessor.from_pretrained(tiny_checkpoint).config
    spec = next(s for s in method_specs(model, Recipe.load("xnnpack-8da4w"), preprocessor)
                if s.name == "vision_encoder")
    program = torch_export(spec)
    rows, cols = (d.node.expr for d in program.graph_module.graph.find_nodes(op="placeholder")[-1]
                  .meta["val"].shape[2:])
    grid = rows.free_symbols | cols.free_symbols
    counts, env = set(), None
    for node in program.graph.nodes:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        symbols = set().union(*(d.node.expr.free_symbols for d in val.shape if isinstance(d, torch.SymInt)))
        if val.dtype.is_floating_point:
            assert not grid <= symbols, (node.name, val.shape)
        for d in val.shape:
            if isinstance(d, torch.SymInt) and not d.node.expr.free_symbols & grid:
                counts.add(d.node.expr)
                env = d.node.shape_env
    assert counts and {int(env.bound_sympy(c).upper) for c in counts} == {max_slice_patches(preprocessor.image)}
    module = program.module()
    for r, c in [(46, 22), (1, 90), (2, 1), (32, 33)]:
        x = torch.randint(0, 256, (1, 3, r * 14, c * 14), dtype=torch.uint8)
        torch.testing.assert_close(module(x)[0], model.vision(x), atol=1e-5, rtol=1e-5)
