"""Building blocks written with the ops ExecuTorch's XNNPACK delegate runs, for the encoders' dynamic shapes.

Whatever a delegate does not run is memory-planned at the *upper bound* of every dynamic dim. SDPA's
decomposition adds -inf guards over [heads, N, N] and XNNPACK has no layer-norm op, so with a slice of up to
128×128 patches those ops alone would plan gigabytes. Written as below, every [N, ·] tensor stays inside the
delegate, which sizes its buffers for the actual input.
"""

from __future__ import annotations

import torch
from torch import nn


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """softmax(q·kᵀ·scale)·v without a mask for [heads, N, d] inputs (scale defaults to 1/√d), as bmm + softmax +
    bmm (the math of F.scaled_dot_product_attention; 3-D so that no expand/reshape lands between the delegated
    ops). SDPA itself decomposes with -inf guards (eq, any, where) that run outside the delegate."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if scale != 1.0:
        q = q * scale
    return torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1), v)


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm (same parameters, same math) with the mean taken over the innermost dims of a 4-D view,
    the only reduction XNNPACK delegates."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        h = x.float().reshape(1, -1, shape[-1], 1)  # float32 statistics, as nn.LayerNorm keeps for bf16 inputs
        centered = h - h.mean(dim=(2, 3), keepdim=True)
        var = (centered * centered).mean(dim=(2, 3), keepdim=True)
        y = (centered / torch.sqrt(var + self.eps)).reshape(shape) * self.weight.float() + self.bias.float()
        return y.to(x.dtype)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (SigLIP's gelu_pytorch_tanh), written out: XNNPACK's GELU ignores
    `approximate="tanh"` and computes the exact erf form, which shifted the fp32 vision output by 1.3e-4."""
    return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
