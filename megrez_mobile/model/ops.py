"""Building blocks written with the ops ExecuTorch's XNNPACK delegate runs, for the encoders' dynamic shapes.

Whatever a delegate does not run is memory-planned at the *upper bound* of every dynamic dim. SDPA's
decomposition adds -inf guards over [heads, N, N] and XNNPACK has no layer-norm op, so with a slice of up to
128×128 patches those ops alone would plan gigabytes. Written as below, every [N, ·] tensor stays inside the
delegate. The delegate sizes its internal tensors at the program's bound too, and the largest are attention's
[heads, N, N] scores, so `attention` can compute a few heads at a time (`heads_per_pass`; at full size this took
46 MiB off a chat's peak, BENCHMARKS.md).
"""

from __future__ import annotations

import torch
from torch import nn


# The most bytes one pass of `attention` may give its float32 scores at a program's longest input.
SCORES_BYTES_PER_PASS = 32 << 20


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
              heads_per_pass: int | None = None) -> torch.Tensor:
    """softmax(q·kᵀ·scale)·v without a mask for [heads, N, d] inputs (scale defaults to 1/√d), as bmm + softmax +
    bmm (the math of F.scaled_dot_product_attention; 3-D so that no expand/reshape lands between the delegated
    ops). SDPA itself decomposes with -inf guards (eq, any, where) that run outside the delegate.

    `heads_per_pass` computes the heads in consecutive groups (None: all at once): the same math, with only one
    group's [heads, N, N] scores needed at a time."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if scale != 1.0:
        q = q * scale
    heads = q.shape[0]
    step = min(heads_per_pass or heads, heads)
    if step == heads:
        return torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1), v)
    return torch.cat([attention(q[i:i + step], k[i:i + step], v[i:i + step], scale=1.0)
                      for i in range(0, heads, step)])


def heads_per_pass(num_heads: int, max_tokens: int, budget_bytes: int = SCORES_BYTES_PER_PASS) -> int:
    """The most heads, dividing num_heads, whose float32 [heads, max_tokens, max_tokens] scores fit the budget
    (at least 1)."""
    per_head = 4 * max_tokens * max_tokens
    return max(n for n in range(1, num_heads + 1) if num_heads % n == 0 and (n == 1 or n * per_head <= budget_bytes))


def bound_attention_scores(module: nn.Module, max_tokens: int) -> None:
    """Give every attention of `module` over up to max_tokens tokens its `heads_per_pass` (see `attention`)."""
    for sub in module.modules():
        if hasattr(sub, "heads_per_pass"):
            sub.heads_per_pass = heads_per_pass(sub.num_heads, max_tokens)


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
