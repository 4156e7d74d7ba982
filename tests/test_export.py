"""Exported bundles against the eager fp32 model, method by method, with the thresholds documented in
export/README.md (the harness enforces the same ones)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from megrez_mobile.bundle import read_manifest

@pytest.fixture(scope="module")
def inputs(tiny_model, shared_data):
    msgs = [{"role": "user", "content": {"text": "Describe the image, then transcribe the audio.",
                                         "image": str(shared_data / "sample_image.jpg"),
                                         "audio": str(shared_data / "sample_audio.mp3")}}]
    return tiny_model.processor.build_inputs(msgs)


def _rel_max_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


def _decoder_logits(bundle, embeds: torch.Tensor) -> torch.Tensor:
    """Per-position logits from the program: prefill the first position, then one decode step per token."""
    bundle.reset()
    return torch.stack([bundle.decode(embeds[:, i:i + 1].contiguous(), i).clone() for i in range(embeds.shape[1])])


def _eager_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.text_logits(ids)[0]


@pytest.fixture(scope="module")
def fp32(bundle_fp32):
    from megrez_mobile import Bundle

    return Bundle.load(bundle_fp32)


@pytest.fixture(scope="module")
def q8da4w(bundle_8da4w):
    from megrez_mobile import Bundle

    return Bundle.load(bundle_8da4w)


SEQ = torch.randint(0, 1000, (1, 200), generator=torch.Generator().manual_seed(0))


def test_fp32_bundle_matches_eager_within_1e_4(fp32, tiny_model, inputs):
    embeds = fp32.embed_tokens(SEQ[0].tolist()).clone()
    assert _rel_max_err(embeds, tiny_model.embed_tokens(SEQ)) == 0.0
    assert _rel_max_err(_decoder_logits(fp32, embeds), _eager_logits(tiny_model, SEQ)) < 1e-4
    for slice_chw in inputs.image_slices[:3]:
        assert _rel_max_err(fp32.encode_image_slice(slice_chw)[0], tiny_model.encode_image_slice(slice_chw)) < 1e-4
    mel = inputs.audio_mels[0]
    assert _rel_max_err(fp32.encode_audio(mel)[0], tiny_model.encode_audio(mel)) < 1e-4


def test_8da4w_bundle_fidelity(q8da4w, tiny_model, inputs):
    logits = _decoder_logits(q8da4w, q8da4w.embed_tokens(SEQ[0].tolist()).clone())
    want = _eager_logits(tiny_model, SEQ)
    cosine = F.cosine_similarity(logits, want, dim=-1)
    assert float(cosine.min()) >= 0.99, cosine.min()
    # The synthetic lm_head is bigram-like (median top-1 margin ~2.4 logit std, as in a trained model), so a flip
    # means quantization noise beat a real margin (validate measures 99.7% on chat text).
    assert float((logits.argmax(-1) == want.argmax(-1)).float().mean()) >= 0.95
    for slice_chw in inputs.image_slices[:3]:
        got, ref = q8da4w.encode_image_slice(slice_chw)[0], tiny_model.encode_image_slice(slice_chw)
        assert float(F.cosine_similarity(got.flatten(), ref.flatten(), dim=0)) >= 0.98
    mel = inputs.audio_mels[0]
    got, ref = q8da4w.encode_audio(mel)[0], tiny_model.encode_audio(mel)
    assert float(F.cosine_similarity(got.flatten(), ref.flatten(), dim=0)) >= 0.98


def test_audio_preprocessor_method_matches_the_processor(q8da4w, tiny_model, shared_data):
    from megrez_mobile.processing.audio import load_audio

    wave = torch.from_numpy(load_audio(str(shared_data / "sample_audio.mp3")))
    got = q8da4w.run("audio_preprocessor", wave.float().contiguous())
    want = tiny_model.processor.log_mel(wave)
    assert got.shape[1:] == want.shape
    assert _rel_max_err(got[0], want) < 1e-4


def test_program_contract_constants_and_dynamic_bounds(q8da4w):
    manifest = q8da4w.manifest
    constants = manifest.program.constants
    assert constants["get_max_seq_len"] == manifest.context["max_seq_len"] == 1024
    assert constants["get_max_context_len"] == manifest.context["max_context"] == 4096
    assert constants["get_eos_ids"] == list(q8da4w.processor.stop_ids) == manifest.front_end["stop_ids"]
    # The dynamic upper bound of text_decoder's length equals get_max_seq_len (no export_llm off-by-one),
    # and the position input has size 1, so the runner passes [start].
    meta = q8da4w._program.metadata("text_decoder")
    assert list(meta.input_tensor_meta(0).sizes())[1] == constants["get_max_seq_len"]
    assert list(meta.input_tensor_meta(1).sizes()) == [1]
    assert q8da4w.method("get_max_seq_len").execute([])[0] == 1024
    assert list(q8da4w.method("get_eos_ids").execute([])) == constants["get_eos_ids"]
    # Every encoder is planned for its largest input: a 30 s clip (3000 mel frames), a 1792-px slice side.
    assert list(q8da4w._program.metadata("audio_encoder").input_tensor_meta(0).sizes()) == [1, 128, 3000]
    assert list(q8da4w._program.metadata("vision_encoder").input_tensor_meta(0).sizes()) == [1, 3, 1792, 1792]
    assert q8da4w.encode_audio(torch.randn(128, 3000)).shape == (1, 752, 128)
    # A segment of exactly get_max_seq_len tokens (a 30 s clip is 752) runs in one call.
    q8da4w.reset()
    logits = q8da4w.decode(torch.zeros(1, 1024, 128), 0)
    assert logits.shape == (constants["get_vocab_size"],)


def test_manifest_describes_the_front_end(bundle_8da4w, tiny_model):
    manifest = read_manifest(bundle_8da4w)
    fe = manifest.front_end
    ids = tiny_model.processor.ids
    assert fe["special_token_ids"]["unk"] == ids["unk"] and fe["special_token_ids"]["audio_start"] == ids["audio_start"]
    assert fe["preprocessor_config"]["scale_resolution"] == 448 and fe["preprocessor_config"]["n_fft"] == 400
    assert manifest.recipe["name"] == "xnnpack-8da4w"
    assert set(manifest.versions) == {"megrez-mobile", "torch", "executorch", "torchao"}
    methods = {m.name: m for m in manifest.program.methods}
    assert set(methods) == {"token_embedding", "text_decoder", "vision_encoder", "audio_encoder", "audio_preprocessor"}
    assert methods["text_decoder"].coverage_percent > 60 and methods["vision_encoder"].coverage_percent > 70
    json.loads((bundle_8da4w / "manifest.json").read_text())  # plain JSON an app can parse


def test_vision_encoder_takes_slices_up_to_the_slicers_bound(q8da4w, tiny_model):
    """The program is sized for max_slice_patches (1,080), not max_slice_side² (16,384): a slice at the bound
    matches eager, and Bundle refuses one over it (or of one patch) with the limit, before the program sees it."""
    from megrez_mobile.errors import ImageError
    from megrez_mobile.processing.image import max_slice_patches

    most = max_slice_patches(q8da4w.processor.config.image)
    assert most == 1080
    at_bound = torch.randint(0, 256, (3, 14 * 40, 14 * 27), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    got, ref = q8da4w.encode_image_slice(at_bound)[0], tiny_model.encode_image_slice(at_bound)
    assert float(F.cosine_similarity(got.flatten(), ref.flatten(), dim=0)) >= 0.98
    for rows, cols in ((41, 27), (1, 1)):
        with pytest.raises(ImageError, match="2 to 1080 patches"):
            q8da4w.encode_image_slice(torch.zeros(3, 14 * rows, 14 * cols, dtype=torch.uint8))
