"""A checkpoint whose MLP widths the recipes' group size does not divide exports with every shipped recipe.

Each layer whose input width the group (32) does not divide gets the closest scheme its method's backend accepts
(`quantize.fallback_scheme`), and the manifest records it per method with the layer names. The odd-dims bundles
are shared through the `odd_bundles` session fixture (test_export_errors reuses the phone-backend ones).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from megrez_mobile.bundle import read_manifest
from megrez_mobile.export.quantize import fallback_scheme
from megrez_mobile.export.recipe import QuantScheme, Recipe, shipped_recipes

DOWN_PROJS = ["llm.model.layers.0.mlp.down_proj", "llm.model.layers.1.mlp.down_proj"]
VISION_FC2 = ["vision.vpm.encoder.layers.0.mlp.fc2", "vision.vpm.encoder.layers.1.mlp.fc2"]

# recipe -> method -> the fallbacks its manifest must record: (requested, used, layers)
EXPECTED = {
    "xnnpack-8da4w": {"text_decoder": [("8da4w g32", "8da8w per-channel", DOWN_PROJS)]},
    # Vulkan takes 4-bit weights per channel at any width; its vision tower runs on XNNPACK, which does not.
    "vulkan-8da4w": {"text_decoder": [("8da4w g32", "8da4w per-channel", DOWN_PROJS)],
                     "vision_encoder": [("8da4w g32", "8da8w per-channel", VISION_FC2)]},
    "coreml-fp16": {},
    "coreml-4w": {"text_decoder": [("4w g32", "4w per-channel", DOWN_PROJS)]},
    # The decoder is on XNNPACK there; the audio encoder's float weights go to Core ML as they are.
    "coreml-encoders": {"text_decoder": [("8da4w g32", "8da8w per-channel", DOWN_PROJS)]},
}


# Recipes that differ from one in EXPECTED only in their options (same rules and backends) fall back exactly as it
# does: they are checked against that twin instead of being exported again.
SAME_RULES_AS = {"xnnpack-8da4w-kv8": "xnnpack-8da4w"}
# Recipes that quantize nothing have no layer to fall back: nothing to export here (bundle_fp32 covers the float
# lowering).
QUANTIZES_NOTHING = {"xnnpack-fp32"}


def test_every_shipped_recipe_is_covered():
    assert sorted([*EXPECTED, *SAME_RULES_AS, *QUANTIZES_NOTHING]) == shipped_recipes()
    for recipe, twin in SAME_RULES_AS.items():
        a, b = Recipe.load(recipe), Recipe.load(twin)
        assert (a.rules, a.backend, a.method_backends) == (b.rules, b.backend, b.method_backends)
    for recipe in QUANTIZES_NOTHING:
        assert Recipe.load(recipe).rules == ()


@pytest.mark.parametrize("backend, requested, width, used", [
    # XNNPACK: 4-bit groups must be multiples of 32 (per channel = one group of the whole width), 8-bit per channel.
    ("xnnpack", QuantScheme("8da4w", 32), 688, QuantScheme("8da8w", 0)),
    ("xnnpack", QuantScheme("8da4w", 32), 4304, QuantScheme("8da8w", 0)),  # SigLIP's fc2 at full size
    ("xnnpack", QuantScheme("8da4w", 64), 96, QuantScheme("8da4w", 0)),     # one 4-bit group of 96 = 3 x 32
    ("xnnpack", QuantScheme("8da4w", 32), 256, QuantScheme("8da4w", 32)),   # divides: as written
    ("xnnpack", QuantScheme("8da8w", 32), 256, QuantScheme("8da8w", 0)),    # XNNPACK has no 8-bit groups
    ("vulkan", QuantScheme("8da4w", 32), 688, QuantScheme("8da4w", 0)),
    ("coreml", QuantScheme("4w", 32), 688, QuantScheme("4w", 0)),
    ("coreml", QuantScheme("8w", 0), 688, QuantScheme("8w", 0)),
])
def test_fallback_is_the_closest_scheme_the_backend_accepts(backend, requested, width, used):
    got, reason = fallback_scheme(backend, requested, width)
    assert got == used
    assert bool(reason) == (got != requested)
    if requested.weight_bits == 4 and used.weight_bits == 8:  # the reason says why 4-bit per channel was refused too
        assert reason.endswith(f"XNNPACK packs 4-bit weights in groups that are a multiple of 32, not per channel "
                               f"(one group of {width})"), reason


@pytest.mark.parametrize("recipe", sorted(EXPECTED))
def test_odd_dims_export_records_each_fallback_with_its_layers(odd_bundles, recipe):
    manifest = read_manifest(odd_bundles(recipe))
    methods = {m.name: m for m in manifest.program.methods}
    assert set(methods) == {"token_embedding", "text_decoder", "vision_encoder", "audio_encoder", "audio_preprocessor"}
    got = {m.name: [(f["requested"], f["used"], sorted(f["layers"])) for f in m.quantization_fallbacks]
           for m in manifest.program.methods if m.quantization_fallbacks}
    assert got == EXPECTED[recipe]
    for name, fallbacks in EXPECTED[recipe].items():
        assert all(f["reason"] for f in methods[name].quantization_fallbacks)
        # The summary line (`quantization`) names the scheme the fallback layers really hold.
        assert all(f"{used} (fallback)" in methods[name].quantization for _, used, _ in fallbacks)
    # The fallback layers stay inside the delegate: as much of each method is delegated as with even dims.
    assert methods["text_decoder"].coverage_percent > 60 and methods["vision_encoder"].coverage_percent > 70


def test_odd_dims_8da4w_bundle_matches_the_eager_model(odd_bundles, odd_checkpoint):
    from megrez_mobile import Bundle, MegrezOmni

    model = MegrezOmni.from_pretrained(odd_checkpoint, dtype=torch.float32)
    assert model.config.text.intermediate_size == 688
    bundle = Bundle.load(odd_bundles("xnnpack-8da4w"))
    seq = torch.randint(0, 1000, (1, 100), generator=torch.Generator().manual_seed(1))
    embeds = bundle.embed_tokens(seq[0].tolist()).clone()
    bundle.reset()
    logits = torch.stack([bundle.decode(embeds[:, i:i + 1].contiguous(), i).clone() for i in range(seq.shape[1])])
    with torch.no_grad():
        want = model.text_logits(seq)[0]
    cosine = F.cosine_similarity(logits, want, dim=-1)
    assert float(cosine.min()) >= 0.99, cosine.min()
    assert float((logits.argmax(-1) == want.argmax(-1)).float().mean()) >= 0.95
    slice_chw = torch.randint(0, 256, (3, 448, 448), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    got, ref = bundle.encode_image_slice(slice_chw)[0], model.encode_image_slice(slice_chw)
    assert float(F.cosine_similarity(got.flatten(), ref.flatten(), dim=0)) >= 0.98

