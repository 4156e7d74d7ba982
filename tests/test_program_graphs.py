"""What runs outside the delegate in each method of the shipped program (no timing: the operator lists)."""

from __future__ import annotations

from helpers.pte import method_operators


def test_audio_encoder_has_no_portable_attention_guards_or_layer_norm(bundle_8da4w):
    """SDPA's decomposition put eq/any/where over [heads, T, T] outside XNNPACK (more than half of the full-size
    encoder's time); one clip of valid frames needs no mask, and the layer norms are written the delegatable way.
    The tiny encoder's 4 heads run as 2 passes of 2 (ops.heads_per_pass at 1,500 positions): the slices and the
    concatenation stay in the delegate too."""
    outside = method_operators(bundle_8da4w / "model.pte")["audio_encoder"]
    assert not outside & {"aten::where", "aten::eq", "aten::any", "aten::logical_not", "aten::full_like",
                          "aten::native_layer_norm", "aten::bmm", "aten::_softmax", "aten::cat",
                          "aten::slice_copy"}, sorted(outside)


def test_vision_encoder_attention_stays_in_the_delegate(bundle_8da4w):
    outside = method_operators(bundle_8da4w / "model.pte")["vision_encoder"]
    assert not outside & {"aten::where", "aten::eq", "aten::bmm", "aten::_softmax", "aten::native_layer_norm"}
