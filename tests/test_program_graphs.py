"""What runs outside the delegate in each method of the shipped program (no timing: the operator lists)."""

from __future__ import annotations

from helpers.pte import method_operators, operator_calls, planned_activation_shapes

from megrez_mobile.checkpoint.synthetic import TINY
from megrez_mobile.model.ops import heads_per_pass


def test_audio_encoder_has_no_portable_attention_guards_or_layer_norm(bundle_8da4w):
    """SDPA's decomposition put eq/any/where over [heads, T, T] outside XNNPACK (more than half of the full-size
    encoder's time); one clip of valid frames needs no mask, and the layer norms are written the delegatable way.
    The tiny encoder's 4 heads run as 2 passes of 2 (ops.heads_per_pass at 1,500 positions): each pass's products
    and softmax stay in the delegate; only the head slices run outside (XNNPACK slices no dynamic shapes)."""
    outside = method_operators(bundle_8da4w / "model.pte")["audio_encoder"]
    audio = TINY.audio
    passes = audio["n_head"] // heads_per_pass(audio["n_head"], 1500)
    assert passes == 2
    # q, k and v sliced once a pass in each layer, and the positional table once to the clip's length
    assert operator_calls(bundle_8da4w / "model.pte", "audio_encoder")["aten::slice_copy"] == \
        audio["n_layer"] * passes * 3 + 1
    assert not outside & {"aten::where", "aten::eq", "aten::any", "aten::logical_not", "aten::full_like",
                          "aten::native_layer_norm", "aten::bmm", "aten::_softmax"}, sorted(outside)


def test_vision_encoder_attention_stays_in_the_delegate(bundle_8da4w):
    outside = method_operators(bundle_8da4w / "model.pte")["vision_encoder"]
    assert not outside & {"aten::where", "aten::eq", "aten::bmm", "aten::_softmax", "aten::native_layer_norm"}


def test_decoder_plans_no_ffn_or_rope_temporaries(bundle_8da4w):
    """The decoder's arena holds its layer boundaries, not a layer's insides. With a delegate per quantized linear,
    the FFN's gate, up and product were three planned [T, intermediate] tensors (88 of the full-size decoder's
    99 MB at the 1,024-token bound), and RoPE's sliced halves ran outside XNNPACK as [1, T, heads, head_dim / 2]
    copies. Grouped, and with rotate_half as a linear map, they stay inside the delegate."""
    shapes = planned_activation_shapes(bundle_8da4w / "model.pte", "text_decoder")
    assert shapes, "no planned activations read"
    assert not [s for s in shapes if s and s[-1] == TINY.intermediate_size], shapes
    half_head = TINY.hidden_size // TINY.num_attention_heads // 2
    assert not [s for s in shapes if len(s) == 4 and s[-1] == half_head], shapes
