"""Bad input loses nothing and says what to do: recipes refused before work, interrupted exports, corrupted
bundles, prompts past the context. Plus the phone-only backends: they export, and report delegation."""

from __future__ import annotations

import re
import shutil

import pytest

from megrez_mobile.errors import BundleError, ContextOverflowError, RecipeError
from megrez_mobile.export.recipe import Recipe

BASE = {"name": "t", "backend": "xnnpack", "rules": []}


def _recipe(**changes) -> Recipe:
    return Recipe.from_dict({**BASE, **changes}, "test.yaml")


def test_recipe_with_unknown_pattern_is_refused_before_any_weight_is_read(tiny_checkpoint, tmp_path, monkeypatch):
    from megrez_mobile.export import pipeline

    monkeypatch.setattr(pipeline, "_load_and_quantize", lambda *a: pytest.fail("weights were read"))
    recipe = _recipe(rules=[{"pattern": "llm.model.layer.*", "scheme": "8da4w", "group_size": 32}])
    with pytest.raises(RecipeError, match=r"'llm.model.layer.\*' \(linear\) matches no linear module"):
        pipeline.export_bundle(tiny_checkpoint, recipe, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("backend, scheme, reason", [
    ("xnnpack", "8w", "wrong numbers"), ("xnnpack", "4w", "wrong numbers"),
    ("coreml", "8da4w", "no dynamic activation quantization"), ("vulkan", "8da8w", "8da4w or 4w only")])
def test_combinations_a_backend_computes_wrongly_are_refused(backend, scheme, reason):
    recipe = _recipe(backend=backend, rules=[{"pattern": "llm.*", "scheme": scheme, "group_size": 32}])
    with pytest.raises(RecipeError, match=reason):
        recipe.check(["llm.model.layers.0.mlp.up_proj"], ["llm.model.embed_tokens"])


def test_a_method_that_falls_back_to_xnnpack_is_checked_against_xnnpack():
    recipe = _recipe(backend="vulkan", rules=[{"pattern": "vision.*", "scheme": "4w", "group_size": 32}])
    with pytest.raises(RecipeError, match=r"4w on xnnpack \(its method falls back from vulkan\).*wrong numbers"):
        recipe.check(["vision.vpm.encoder.layers.0.mlp.fc1"], ["llm.model.embed_tokens"])
    recipe = _recipe(backend="vulkan", rules=[{"pattern": "llm.*", "scheme": "4w", "group_size": 32}])
    recipe.check(["llm.model.layers.0.mlp.up_proj"], ["llm.model.embed_tokens"])  # the decoder stays on Vulkan
    # Core ML takes the vision tower itself now (float32 pixels), so weight-only linears are right there.
    _recipe(backend="coreml", rules=[{"pattern": "vision.*", "scheme": "4w", "group_size": 32}]).check(
        ["vision.vpm.encoder.layers.0.mlp.fc1"], ["llm.model.embed_tokens"])


def test_recipe_files_are_validated():
    for bad, match in [({"backend": "tpu"}, "backend is 'tpu'"),
                       ({"rules": [{"pattern": "x", "scheme": "3bit"}]}, "scheme '3bit' is unknown"),
                       ({"rules": [{"pattern": "x", "kind": "conv"}]}, "kind 'conv' is unknown"),
                       ({"options": {"max_seq_len": 8192}}, "max_seq_len"),
                       ({"options": {"context": 10}}, "options: unknown key.*context")]:
        with pytest.raises(RecipeError, match=match):
            _recipe(**bad)
    with pytest.raises(RecipeError, match="no recipe named"):
        Recipe.load("xnnpack-9bit")
    assert Recipe.load("xnnpack-8da4w").with_overrides(max_context=2048).options.max_context == 2048


def test_an_export_interrupted_half_way_leaves_nothing_that_looks_complete(tiny_checkpoint, tmp_path, monkeypatch):
    from megrez_mobile.export import pipeline

    real, calls = pipeline._export_one, []

    def fail_on_third(spec, recipe, say):
        calls.append(spec.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(spec, recipe, say)

    monkeypatch.setattr(pipeline, "_export_one", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        pipeline.export_bundle(tiny_checkpoint, "xnnpack-fp32", tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture()
def bundle_copy(bundle_8da4w, tmp_path):
    return shutil.copytree(bundle_8da4w, tmp_path / "bundle")


def test_corrupted_pte_is_named(bundle_copy):
    from megrez_mobile import Bundle

    pte = bundle_copy / "model.pte"
    data = bytearray(pte.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pte.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model.pte: sha256 differs"):
        Bundle.load(bundle_copy)
    pte.write_bytes(bytes(data[:-100]))
    with pytest.raises(BundleError, match=r"model.pte: .* bytes, the manifest says"):
        Bundle.load(bundle_copy)
    (bundle_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer.json: missing"):
        Bundle.load(bundle_copy, verify_checksums=False)
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json is not valid JSON"):
        Bundle.load(bundle_copy)


def test_prompt_past_the_context_is_refused_and_the_session_survives(bundle_8da4w):
    from megrez_mobile import Bundle

    bundle = Bundle.load(bundle_8da4w)
    long_text = "the quick brown fox jumps over the lazy dog " * 600
    with pytest.raises(ContextOverflowError, match="context holds 4096 positions"):
        bundle.chat([{"role": "user", "content": long_text}], max_new_tokens=4)
    assert bundle.chat([{"role": "user", "content": "hello"}], max_new_tokens=4) is not None


@pytest.mark.parametrize("recipe, backend", [
    ("vulkan-8da4w", "vulkan"), ("coreml-fp16", "coreml"), ("coreml-4w", "coreml")])
def test_phone_only_backends_export_and_report_delegation(odd_bundles, recipe, backend):
    from megrez_mobile import Bundle
    from megrez_mobile.bundle import read_manifest

    # The odd-dims checkpoint (MLP widths not multiples of the group): shared with test_export_odd_dims.
    manifest = read_manifest(odd_bundles(recipe))
    methods = {m.name: m for m in manifest.program.methods}
    assert methods["token_embedding"].delegates == 0  # the quantized lookup stays on ExecuTorch's kernels
    # The decoder and the encoders run on the phone backend; fallbacks to XNNPACK are recorded as such (Vulkan
    # cannot plan the vision tower's dynamic shapes; Core ML takes it whole, with float32 pixels).
    for name in ("text_decoder", "audio_encoder"):
        assert methods[name].backend == backend and methods[name].coverage_percent > 60, (name, methods[name])
    vision = methods["vision_encoder"]
    if backend == "coreml":
        assert vision.backend == "coreml" and vision.coverage_percent == 100 and vision.delegates == 1
    else:
        assert vision.backend == "xnnpack" and vision.coverage_percent > 70
    # They run only on devices: the Python wheel has no such backend, and says so.
    bundle = Bundle.load(odd_bundles(recipe))
    with pytest.raises(BundleError, match="backend"):
        bundle.encode_audio(__import__("torch").zeros(128, 100))


def test_a_recipe_puts_methods_on_different_backends_in_one_program(odd_bundles, tmp_path):
    """coreml-encoders: both encoders on Core ML, the decoder on XNNPACK, one model.pte; inspect says so."""
    import torch
    from click.testing import CliRunner

    from megrez_mobile import Bundle
    from megrez_mobile.bundle import read_manifest
    from megrez_mobile.cli import cli
    from megrez_mobile.harness.validate import require_runnable

    bundle = odd_bundles("coreml-encoders")
    manifest = read_manifest(bundle)
    methods = {m.name: m for m in manifest.program.methods}
    for encoder in ("vision_encoder", "audio_encoder"):
        assert methods[encoder].backend == "coreml" and methods[encoder].coverage_percent == 100, methods[encoder]
        assert methods[encoder].delegates == 1  # one Core ML model each
    assert methods["text_decoder"].backend == "xnnpack" and methods["text_decoder"].coverage_percent > 60
    # Core ML takes no uint8: the vision encoder takes float32 pixels, and the program says so to every runner.
    assert Bundle.load(bundle).vision_pixel_dtype == torch.float32
    assert manifest.backends == ["coreml", "xnnpack"] and manifest.recipe["method_backends"] == {
        "vision_encoder": "coreml", "audio_encoder": "coreml"}
    shown = CliRunner().invoke(cli, ["inspect", str(bundle)]).output
    assert re.search(r"vision_encoder\s+coreml\s", shown) and re.search(r"audio_encoder\s+coreml\s", shown)
    assert re.search(r"text_decoder\s+xnnpack\s", shown)
    with pytest.raises(BundleError, match="methods on coreml"):
        require_runnable(bundle)


def test_method_backends_are_validated(tmp_path):
    for bad, match in [({"method_backends": {"token_embedding": "coreml"}}, "not a delegated method"),
                       ({"method_backends": {"audio_encoder": "tpu"}}, "backend is 'tpu'"),
                       ({"method_backends": ["coreml"]}, "must be a mapping")]:
        with pytest.raises(RecipeError, match=match):
            _recipe(**bad)
