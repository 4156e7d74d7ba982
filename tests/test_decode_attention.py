"""The decoder's attention for one query position (a decode step): the query heads that share a KV head are folded
into rows of one query, so ExecuTorch's custom_sdpa reads each KV head's cache once instead of once per query
head. Checked against plain attention (torch's SDPA over the cache up to the position), and in the program."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from megrez_mobile.checkpoint.synthetic import FULL_SIZE, TINY
from megrez_mobile.export.programs import causal_attention, load_custom_ops, one_position_attention

from helpers.pte import jump_instructions, operator_calls

HEAD_DIM, MAX_CONTEXT = 64, 256


def _plain_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: int) -> torch.Tensor:
    """q [1, 1, heads, d] at `pos` over cache slots [0, pos], each query head on KV head h // group."""
    group = q.shape[2] // k_cache.shape[2]
    k = k_cache[:, :pos + 1].transpose(1, 2).repeat_interleave(group, dim=1)  # [1, heads, pos + 1, d]
    v = v_cache[:, :pos + 1].transpose(1, 2).repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q.transpose(1, 2), k, v).transpose(1, 2)


@pytest.mark.parametrize("heads, kv_heads", [(FULL_SIZE.num_attention_heads, FULL_SIZE.num_key_value_heads),
                                             (TINY.num_attention_heads, TINY.num_key_value_heads), (4, 4)])
@pytest.mark.parametrize("pos", [0, 1, 2, 3, 100, MAX_CONTEXT - 1])
def test_one_position_attention_is_plain_attention_and_reads_no_slot_past_the_position(heads, kv_heads, pos):
    """Positions below group - 1 give the kernel a negative start; slots past `pos` hold huge stale values, which
    would dominate the softmax if any were read."""
    load_custom_ops()
    g = torch.Generator().manual_seed(pos)
    k_cache = torch.randn(1, MAX_CONTEXT, kv_heads, HEAD_DIM, generator=g)
    v_cache = torch.randn(1, MAX_CONTEXT, kv_heads, HEAD_DIM, generator=g)
    k_cache[:, pos + 1:], v_cache[:, pos + 1:] = 1e4, 1e4
    q = torch.randn(1, 1, heads, HEAD_DIM, generator=g)
    want = _plain_attention(q, k_cache, v_cache, pos)
    got = one_position_attention(q, k_cache, v_cache, torch.tensor([pos]), group=heads // kv_heads)
    # float32 softmax-weighted sums of unit-variance values: 1e-5 is about 100 ulps, a wrong slot is O(1e4)
    assert (got - want).abs().max() < 1e-5
    assert (got - causal_attention(q, k_cache, v_cache, torch.tensor([pos]))).abs().max() < 1e-5


def test_the_decoder_branches_once_a_layer_between_the_decode_and_the_prefill_attention(bundle_8da4w):
    """One torch.cond a layer in the program: the emitter writes it as a jump on the predicate (T == 1, computed
    once for all layers) into one branch, and a jump over the other; each branch calls custom_sdpa, and the cache is
    written once before them."""
    layers = TINY.num_hidden_layers
    pte = bundle_8da4w / "model.pte"
    jumps = [j.cond_value_index for j in jump_instructions(pte, "text_decoder")]
    assert len(jumps) == 2 * layers
    assert len(set(jumps[0::2])) == 1 and len(set(jumps[1::2])) == layers, jumps
    calls = operator_calls(pte, "text_decoder")
    assert calls["llama::custom_sdpa"] == 2 * layers
    assert calls["llama::update_cache"] == 2 * layers
