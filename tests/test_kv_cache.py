"""The recipe option `kv_cache_dtype` (fp32 | int8): what the int8 program holds and runs, how close it stays to
the model, how it is recorded, and how a bad value is refused. The stock MultimodalRunner runs the int8 bundle in
test_stock_runner.py; the one extra export (bundle_kv8) is shared with it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from megrez_mobile.bundle import read_manifest
from megrez_mobile.cli import cli
from megrez_mobile.errors import BundleError, RecipeError
from megrez_mobile.export.recipe import Recipe
from megrez_mobile.harness.memory import kv_cache_bytes, planned_memory

from helpers.pte import method_operators, mutable_buffers


def _dims(checkpoint) -> tuple[int, int, int]:
    from megrez_mobile.config import MegrezConfig

    text = MegrezConfig.from_pretrained(checkpoint).text
    return text.num_hidden_layers, text.num_key_value_heads, text.hidden_size // text.num_attention_heads


def test_kv8_recipe_is_8da4w_with_an_int8_cache_and_no_looser_thresholds():
    kv8, base = Recipe.load("xnnpack-8da4w-kv8"), Recipe.load("xnnpack-8da4w")
    assert kv8.options.kv_cache_dtype == "int8" and base.options.kv_cache_dtype == "fp32"
    assert kv8.rules == base.rules and kv8.backend == base.backend
    assert kv8.options.max_context == base.options.max_context and kv8.options.max_seq_len == base.options.max_seq_len
    f, g = kv8.fidelity, base.fidelity
    assert (f.decoder_min_top1 >= g.decoder_min_top1 and f.decoder_max_kl <= g.decoder_max_kl
            and f.decoder_min_greedy_match >= g.decoder_min_greedy_match)


def test_the_int8_program_runs_the_quantized_cache_ops(bundle_kv8, bundle_8da4w):
    ops = method_operators(bundle_kv8 / "model.pte")["text_decoder"]
    assert {"llama::custom_quantized_sdpa", "llama::update_cache", "quantized_decomposed::quantize_per_token",
            "quantized_decomposed::choose_qparams_per_token_asymmetric"} <= ops
    assert "llama::custom_sdpa" not in ops
    fp32_ops = method_operators(bundle_8da4w / "model.pte")["text_decoder"]
    assert "llama::custom_sdpa" in fp32_ops and "llama::custom_quantized_sdpa" not in fp32_ops
    # The other methods are the same program.
    assert {m: o for m, o in method_operators(bundle_kv8 / "model.pte").items() if m != "text_decoder"} == \
           {m: o for m, o in method_operators(bundle_8da4w / "model.pte").items() if m != "text_decoder"}


def test_the_int8_cache_is_planned_in_its_own_memory_id_at_about_a_quarter(bundle_kv8, bundle_8da4w, tiny_checkpoint):
    layers, kv_heads, head_dim = _dims(tiny_checkpoint)
    max_context = read_manifest(bundle_kv8).context["max_context"]
    rows = layers * 2 * max_context * kv_heads  # K and V rows of head_dim values
    fp32_bytes = rows * head_dim * 4
    int8_bytes = rows * (head_dim + 4 + 1)  # int8 values, a float32 scale and an int8 zero point per row
    assert kv_cache_bytes(planned_memory(bundle_8da4w / "model.pte")) == fp32_bytes == 4_194_304
    assert kv_cache_bytes(planned_memory(bundle_kv8 / "model.pte")) == int8_bytes == 1_212_416
    assert 0.25 < int8_bytes / fp32_bytes < 0.3  # (head_dim + 5) / (4 head_dim); 0.27 at the full size's 64
    # Every cache tensor (values, scales, zero points) is a named mutable buffer in mem_id 2, apart from the
    # activations (mem_id 1) that other methods' calls overwrite, so the cache persists between decoder calls.
    buffers = mutable_buffers(bundle_kv8 / "model.pte", "text_decoder")
    expected = {}
    for i in range(layers):
        for kv in "kv":
            expected[f"{kv}_cache_{i}"] = ("int8", [1, max_context, kv_heads, head_dim])
            expected[f"{kv}_cache_scales_{i}"] = ("float32", [1, max_context, kv_heads, 1])
            expected[f"{kv}_cache_zero_points_{i}"] = ("int8", [1, max_context, kv_heads, 1])
    assert {name: (b["dtype"], b["sizes"]) for name, b in buffers.items()} == expected
    assert {b["mem_id"] for b in buffers.values()} == {2}
    assert sum(b["bytes"] for b in buffers.values()) == int8_bytes


def test_the_int8_bundle_validates_within_its_thresholds(bundle_kv8, tiny_checkpoint):
    from megrez_mobile.harness.validate import validate_bundle

    report = validate_bundle(bundle_kv8, tiny_checkpoint)
    assert report.passed, report.table()
    assert report.recipe == "xnnpack-8da4w-kv8"
    decoder = report.metrics["text_decoder"]
    # Measured: top-1 0.9967, mean KL 0.0032, greedy 32/32, as xnnpack-8da4w's bundle (see the recipe's comment).
    assert decoder["positions"] >= 500
    assert decoder["top1_agreement"] >= 0.99 and decoder["mean_kl"] <= 0.01, decoder
    assert decoder["greedy_match"] == decoder["greedy_tokens"] == 32, decoder
    assert report.thresholds == dataclasses.asdict(Recipe.load("xnnpack-8da4w-kv8").fidelity)


SEQ = torch.randint(0, 1000, (1, 96), generator=torch.Generator().manual_seed(0))


def test_only_the_cache_differs_from_the_fp32_cache_bundle(bundle_kv8, bundle_8da4w, tiny_model):
    """Same weights: the int8 cache alone moves the logits by ~6e-5 nats, one token at a time and in prefill chunks
    (the kernel's T <= 4 quantized-GEMM branch and its T > 4 dequantize-then-GEMM branch)."""
    from megrez_mobile import Bundle
    from megrez_mobile.harness.metrics import logits_gap

    embeds = tiny_model.embed_tokens(SEQ).detach()
    runs = {}
    for name, path in (("int8", bundle_kv8), ("fp32", bundle_8da4w)):
        b = Bundle.load(path)
        b.reset()
        steps = [b.decode(embeds[:, i:i + 1].contiguous(), i).clone() for i in range(SEQ.shape[1])]
        b.reset()
        chunks = [b.decode(embeds[:, i:i + 16].contiguous(), i).clone() for i in range(0, SEQ.shape[1], 16)]
        runs[name] = torch.stack(steps), torch.stack(chunks)
    for got, want in zip(runs["int8"], runs["fp32"]):
        gap = logits_gap(got, want)
        assert not torch.equal(got, want)  # a different cache really ran
        assert gap.top1_agreement == 1.0 and gap.mean_kl < 5e-4 and gap.min_cosine > 0.9995, gap.to_dict()


def test_the_manifest_and_inspect_record_the_cache_dtype(bundle_kv8, bundle_8da4w):
    kv8, base = read_manifest(bundle_kv8), read_manifest(bundle_8da4w)
    assert kv8.context["kv_cache_dtype"] == kv8.recipe["options"]["kv_cache_dtype"] == kv8.kv_cache_dtype == "int8"
    assert base.context["kv_cache_dtype"] == base.kv_cache_dtype == "fp32"
    result = CliRunner().invoke(cli, ["inspect", str(bundle_kv8)])
    assert result.exit_code == 0, result.output
    assert "kv cache    int8 (int8 rows, a float32 scale and an int8 zero point per row), 1,212,416 bytes planned" \
        in result.output
    result = CliRunner().invoke(cli, ["inspect", str(bundle_8da4w)])
    assert "kv cache    fp32 (float32), 4,194,304 bytes planned" in result.output


def _edit_manifest(bundle, tmp_path, edit):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    data = json.loads((copy / "manifest.json").read_text())
    edit(data)
    (copy / "manifest.json").write_text(json.dumps(data))
    return copy


def test_a_manifest_from_before_the_option_means_fp32_and_still_loads(bundle_8da4w, tmp_path):
    from megrez_mobile import Bundle

    def old(data):
        del data["context"]["kv_cache_dtype"], data["recipe"]["options"]["kv_cache_dtype"]
    copy = _edit_manifest(bundle_8da4w, tmp_path, old)
    assert read_manifest(copy).kv_cache_dtype == "fp32"
    assert Bundle.load(copy, verify_checksums=False).manifest.kv_cache_dtype == "fp32"


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["context"].update(kv_cache_dtype="int4"),
     r"context.kv_cache_dtype is 'int4'; this SDK knows fp32, int8"),
    (lambda d: d["context"].update(kv_cache_dtype=8), r"context: kv_cache_dtype must be a string"),
    (lambda d: d["context"].update(kv_cache_dtype="int8"),
     r"context.kv_cache_dtype \(int8\) disagrees with recipe.options.kv_cache_dtype \(fp32\)"),
])
def test_a_wrong_cache_dtype_in_a_manifest_is_named(bundle_8da4w, tmp_path, edit, match):
    copy = _edit_manifest(bundle_8da4w, tmp_path, edit)
    with pytest.raises(BundleError, match=match) as caught:
        read_manifest(copy)
    assert "manifest.json" in str(caught.value)


def test_an_unknown_cache_dtype_is_a_recipe_error_naming_file_field_and_values(tmp_path, tiny_checkpoint):
    path = tmp_path / "r.yaml"
    path.write_text("backend: xnnpack\noptions: {kv_cache_dtype: int4}\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: options: kv_cache_dtype is 'int4'; use one of fp32, int8"):
        Recipe.load(path)
    with pytest.raises(RecipeError, match="kv_cache_dtype is 'fp16'; use one of fp32, int8"):
        Recipe.load("xnnpack-8da4w").with_overrides(kv_cache_dtype="fp16")
    assert Recipe.load("xnnpack-8da4w").with_overrides(kv_cache_dtype="int8").options.kv_cache_dtype == "int8"
    # From the command line: the same message, before anything is exported.
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", str(tiny_checkpoint), "-o", str(out), "--kv-cache-dtype", "int4"])
    assert result.exit_code == 1 and "kv_cache_dtype is 'int4'; use one of fp32, int8" in result.output
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize("recipe, backend", [("vulkan-8da4w", "vulkan"), ("coreml-fp16", "coreml")])
def test_an_int8_cache_on_a_decoder_backend_that_cannot_lower_it_is_refused(recipe, backend, tiny_checkpoint,
                                                                             tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tiny_checkpoint), "-r", recipe, "-o", str(tmp_path / "out"),
                                      "--kv-cache-dtype", "int8"])
    assert result.exit_code == 1, result.output
    assert f"kv_cache_dtype int8 with text_decoder on {backend}" in result.output
    assert "use kv_cache_dtype fp32 there, or the decoder on xnnpack or portable" in result.output
