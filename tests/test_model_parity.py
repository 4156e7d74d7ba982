"""Each part of the model against an independent implementation loaded with the same weights.

Tolerances: everything runs in float32 on the same CPU, so the only differences are summation order
and fused vs unfused kernels: ~1e-6 relative per op, growing with depth. 1e-4 absolute on O(1)-sized
outputs is two orders above what we observe and three below any real bug (a swapped half of RoPE,
a missing norm weight or a wrong scale all move outputs by > 1e-2).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from megrez_mobile.model.vision import navit_position_ids, sincos_2d

ATOL = 1e-4


def strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


# --- decoder ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_llama(tiny_model):
    from transformers import LlamaConfig, LlamaForCausalLM

    c = tiny_model.config.text
    cfg = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                      num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                      num_key_value_heads=c.num_key_value_heads, rms_norm_eps=c.rms_norm_eps,
                      rope_theta=c.rope_theta, max_position_embeddings=c.max_position_embeddings,
                      tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
    model = LlamaForCausalLM(cfg).eval()
    missing, unexpected = model.load_state_dict(strip(tiny_model.state_dict(), "llm."), strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    return model


def test_decoder_matches_transformers_llama(tiny_model, hf_llama):
    torch.manual_seed(1)
    ids = torch.randint(0, tiny_model.config.text.vocab_size, (1, 200))
    with torch.no_grad():
        ours = tiny_model.text_logits(ids)
        theirs = hf_llama(input_ids=ids).logits
    assert ours.shape == (1, 200, tiny_model.config.text.vocab_size)
    assert theirs.abs().max() > 1.0  # the comparison is not between two near-zero tensors
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)


def test_decoder_at_large_positions_matches_transformers(tiny_model, hf_llama):
    """RoPE with theta 5e6 far into the 4K context (positions 3000..3063)."""
    torch.manual_seed(2)
    ids = torch.randint(0, tiny_model.config.text.vocab_size, (1, 64))
    positions = torch.arange(3000, 3064)
    with torch.no_grad():
        embeds = tiny_model.embed_tokens(ids)
        ours = tiny_model.llm(embeds, positions, use_cache=False)
        theirs = hf_llama(inputs_embeds=embeds, position_ids=positions[None]).logits
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)


def test_kv_cache_decoding_equals_full_forward(tiny_checkpoint):
    """Prefill 50 tokens then feed 30 one by one through the static cache: same logits as one full pass."""
    from megrez_mobile import MegrezOmni

    model = MegrezOmni.from_pretrained(tiny_checkpoint, load_processor=False)
    torch.manual_seed(3)
    ids = torch.randint(0, model.config.text.vocab_size, (1, 80))
    with torch.no_grad():
        full = model.text_logits(ids)[0]
        model.llm.setup_kv_cache(256)
        step_logits = [model.llm.last_logits(model.embed_tokens(ids[:, :50]), torch.arange(50))[0]]
        for p in range(50, 80):
            step_logits.append(model.llm.last_logits(model.embed_tokens(ids[:, p:p + 1]), torch.tensor([p]))[0])
    torch.testing.assert_close(torch.stack(step_logits), full[49:], atol=ATOL, rtol=1e-4)


def test_logits_from_embeddings_equals_text_logits(tiny_model):
    ids = torch.arange(40)[None] % tiny_model.config.text.vocab_size
    with torch.no_grad():
        a = tiny_model.text_logits(ids)
        b = tiny_model.logits_from_embeddings(tiny_model.embed_tokens(ids))
    assert torch.equal(a, b)


# --- vision ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_siglip(tiny_model):
    from transformers.models.idefics2.configuration_idefics2 import Idefics2VisionConfig
    from transformers.models.idefics2.modeling_idefics2 import Idefics2VisionTransformer

    v = tiny_model.config.vision
    cfg = Idefics2VisionConfig(hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
                               num_hidden_layers=v.num_hidden_layers, num_attention_heads=v.num_attention_heads,
                               image_size=v.image_size, patch_size=v.patch_size, layer_norm_eps=v.layer_norm_eps,
                               hidden_act=v.hidden_act)
    cfg._attn_implementation = "eager"
    model = Idefics2VisionTransformer(cfg).eval()
    model.load_state_dict(strip(tiny_model.state_dict(), "vision.vpm."), strict=True)
    return model


@pytest.mark.parametrize("h,w", [(14, 14), (46, 22), (37, 27), (1, 71), (80, 3)])
def test_siglip_matches_transformers_idefics2_vision(tiny_model, hf_siglip, h, w):
    """Idefics2's vision tower is the NaViT SigLIP with the same fractional position bucketing."""
    torch.manual_seed(h * 100 + w)
    pixels = torch.rand(1, 3, h * 14, w * 14) * 2 - 1
    with torch.no_grad():
        ours = tiny_model.vision.vpm(pixels)
        mask = torch.ones(1, h, w, dtype=torch.bool)
        theirs = hf_siglip(pixel_values=pixels, patch_attention_mask=mask).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)


def _reference_position_ids(h: int, w: int, side: int = 70) -> torch.Tensor:
    """The official (vLLM/MiniCPM) formula written out, with float32 index·(1/n) as on the GPU."""
    boundaries = torch.arange(1 / side, 1.0, 1 / side)
    fh = torch.arange(h, dtype=torch.float32) * (1 / torch.tensor(h))
    fw = torch.arange(w, dtype=torch.float32) * (1 / torch.tensor(w))
    bh = torch.bucketize(fh.clamp(max=1 - 1e-6), boundaries, right=True)
    bw = torch.bucketize(fw.clamp(max=1 - 1e-6), boundaries, right=True)
    return (bh[:, None] * side + bw).flatten()


def test_navit_position_ids():
    for h, w in [(1, 1), (70, 70), (35, 2), (46, 22), (37, 27), (140, 5), (3, 999)]:
        ids = navit_position_ids(h, w, 70)
        assert torch.equal(ids, _reference_position_ids(h, w))
        assert ids.min() >= 0 and ids.max() < 4900
    # A 70×70 slice uses every table row exactly once; a 35×35 slice every other row and column.
    assert torch.equal(navit_position_ids(70, 70, 70), torch.arange(4900))
    assert navit_position_ids(35, 35, 70).reshape(35, 35)[1, 1].item() == 2 * 70 + 2


def _minicpm_sincos(embed_dim: int, h: int, w: int) -> np.ndarray:
    """MiniCPM-V 2.6 resampler get_2d_sincos_pos_embed (version (2,5)), transcribed in numpy."""
    def one_d(dim, pos):
        omega = np.arange(dim // 2, dtype=np.float32)
        omega /= dim / 2.0
        omega = 1.0 / 10000 ** omega
        out = np.einsum("hw,d->hwd", pos, omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=-1)

    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), axis=0)
    return np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=-1)


@pytest.mark.parametrize("h,w", [(46, 22), (1, 90), (70, 70)])
def test_sincos_table_matches_minicpm(h, w):
    ours = sincos_2d(h, w, 2560).numpy()
    theirs = _minicpm_sincos(2560, h, w).reshape(h * w, 2560)
    np.testing.assert_allclose(ours, theirs, atol=2e-5)  # float32 sin/cos of arguments up to ~90 rad


def test_resampler_matches_torch_multihead_attention(tiny_model):
    r = tiny_model.vision.resampler
    mha = nn.MultiheadAttention(r.embed_dim, r.attn.num_heads).eval()
    mha.load_state_dict(strip(tiny_model.state_dict(), "vision.resampler.attn."))
    torch.manual_seed(4)
    h, w = 37, 27
    patches = torch.randn(h * w, tiny_model.config.vision.hidden_size)
    with torch.no_grad():
        ours = r(patches, h, w)
        x = r.ln_kv(r.kv_proj(patches))
        pos = torch.from_numpy(_minicpm_sincos(r.embed_dim, h, w).reshape(h * w, -1))
        out = mha(r.ln_q(r.query)[:, None], (x + pos)[:, None], x[:, None], need_weights=False)[0][:, 0]
        theirs = r.ln_post(out) @ r.proj
    assert ours.shape == (64, tiny_model.config.text.hidden_size)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)


def test_encode_image_slice_normalises_uint8(tiny_model, hf_siglip):
    torch.manual_seed(5)
    slice_chw = torch.randint(0, 256, (3, 28 * 14, 14 * 14), dtype=torch.uint8)
    with torch.no_grad():
        ours = tiny_model.encode_image_slice(slice_chw)
        feats = hf_siglip(pixel_values=(slice_chw[None].float() / 255 - 0.5) / 0.5,
                          patch_attention_mask=torch.ones(1, 28, 14, dtype=torch.bool)).last_hidden_state[0]
        theirs = tiny_model.vision.resampler(feats, 28, 14)
    assert ours.shape == (64, tiny_model.config.text.hidden_size)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)


# --- audio -----------------------------------------------------------------------------------------------------
def _hf_whisper_encoder(tiny_model, n_frames: int):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    a = tiny_model.config.audio
    cfg = WhisperConfig(num_mel_bins=a.n_mels, d_model=a.n_state, encoder_layers=a.n_layer,
                        encoder_attention_heads=a.n_head, encoder_ffn_dim=4 * a.n_state,
                        max_source_positions=n_frames // 2, activation_function="gelu")
    cfg._attn_implementation = "eager"
    enc = WhisperEncoder(cfg).eval()
    ours = strip(tiny_model.state_dict(), "audio.audio.")
    names = {"attn.query": "self_attn.q_proj", "attn.key": "self_attn.k_proj", "attn.value": "self_attn.v_proj",
             "attn.out": "self_attn.out_proj", "attn_ln": "self_attn_layer_norm", "mlp.0": "fc1", "mlp.2": "fc2",
             "mlp_ln": "final_layer_norm"}
    state = {"conv1.weight": ours["conv1.weight"], "conv1.bias": ours["conv1.bias"],
             "conv2.weight": ours["conv2.weight"], "conv2.bias": ours["conv2.bias"],
             "embed_positions.weight": ours["positional_embedding"][: n_frames // 2]}
    for k, v in ours.items():
        if k.startswith("blocks."):
            _, i, rest = k.split(".", 2)
            for src, dst in names.items():
                if rest.startswith(src + "."):
                    state[f"layers.{i}.{dst}.{rest[len(src) + 1:]}"] = v
    enc.layer_norm = nn.Identity()  # Megrez pools before its ln_post; compare the block stack itself
    missing, unexpected = enc.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"layer_norm.weight", "layer_norm.bias"}, (missing, unexpected)
    return enc


@pytest.mark.parametrize("n_frames, heads_per_pass", [(152, None), (400, None), (400, 1), (400, 2)])
def test_audio_encoder_matches_transformers_whisper(tiny_model, n_frames, heads_per_pass):
    """Also with the heads in passes, as the exporter computes them (ops.attention): the same math."""
    enc = _hf_whisper_encoder(tiny_model, n_frames)
    a = tiny_model.audio.audio
    torch.manual_seed(n_frames)
    mel = torch.randn(1, 128, n_frames) * 0.5
    with torch.no_grad():
        try:
            for block in a.blocks:
                block.attn.heads_per_pass = heads_per_pass
            ours = tiny_model.encode_audio(mel)
        finally:
            for block in a.blocks:
                block.attn.heads_per_pass = None
        x = enc(mel).last_hidden_state
        x = nn.functional.avg_pool1d(x.transpose(1, 2), 2, 2).transpose(1, 2)
        x = a.proj(a.ln_post(x))[0]
        bos, eos = a.audio_bos_eos_token.weight
        theirs = torch.cat([bos[None], x, eos[None]])
    assert ours.shape == (n_frames // 4 + 2, tiny_model.config.text.hidden_size)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)


def test_attention_passes_bound_the_scores_at_full_size():
    """At the full-size programs' longest inputs one pass's float32 scores stay within 32 MiB: the speech encoder's
    20 heads over 1,500 positions run 2 at a time (17 MiB, all at once 172 MiB), the vision tower's 16 over a
    1,080-patch slice 4 at a time (18 MiB, all at once 71 MiB); and a pass is the same math as all heads."""
    from megrez_mobile.model.ops import SCORES_BYTES_PER_PASS, attention, heads_per_pass

    assert SCORES_BYTES_PER_PASS == 32 << 20
    assert heads_per_pass(20, 1500) == 2 and heads_per_pass(16, 1080) == 4
    assert heads_per_pass(16, 4900) == 1 and heads_per_pass(4, 64) == 4  # at least one head; all when they fit
    torch.manual_seed(0)
    q, k, v = (torch.randn(6, 50, 8) for _ in range(3))
    whole = attention(q, k, v)
    for step in (1, 2, 3):
        assert torch.equal(attention(q, k, v, heads_per_pass=step), whole)
