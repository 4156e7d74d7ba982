"""Vision: SigLIP NaViT tower (`vision.vpm`) + perceiver resampler (`vision.resampler`), one slice at a time.

A slice is uint8 CHW [3, H, W] with H and W multiples of the patch size. Everything the official
processor passes alongside the pixels (tgt_size, patch mask, position ids, the resampler's 2D sin-cos
table) is derived here from the slice's shape, so the same code exports with dynamic H and W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MegrezConfig, VisionConfig
from ..errors import ImageError
from .ops import LayerNorm, attention, gelu_tanh


def navit_position_ids(h_patches: int, w_patches: int, num_patches_per_side: int) -> torch.Tensor:
    """Ids into the learned (side × side) table for an (h × w)-patch slice: fractional bucketing (NaViT).

    Row i maps to bucket(i/h) over boundaries k/side; float32 `index * (1/h)` as transformers' Idefics2 and
    the official model on CUDA compute it (the original CPU `arange` can land one bucket off at exact ties).
    """
    boundaries = torch.arange(1 / num_patches_per_side, 1.0, 1 / num_patches_per_side)
    # A 1-element tensor, not a 0-d one: coremltools reads the empty shape of `full([], 1)` as float and fails.
    step_h = torch.ones(1) / h_patches
    step_w = torch.ones(1) / w_patches
    frac_h = (torch.arange(h_patches, dtype=torch.float32) * step_h).clamp(max=1.0 - 1e-6)
    frac_w = (torch.arange(w_patches, dtype=torch.float32) * step_w).clamp(max=1.0 - 1e-6)
    # == torch.bucketize(frac, boundaries, right=True), with ops ExecuTorch has kernels for (it has no bucketize).
    rows = (frac_h[:, None] >= boundaries[None, :]).sum(-1)
    cols = (frac_w[:, None] >= boundaries[None, :]).sum(-1)
    return (rows[:, None] * num_patches_per_side + cols[None, :]).reshape(-1)


def sincos_2d(h: int, w: int, dim: int, count: int | None = None) -> torch.Tensor:
    """MiniCPM-V 2.6 (version (2,5)) 2D sin-cos table for an (h × w) grid, row-major [h·w, dim] (its first `count`
    rows if given: the exported program passes the bounded patch count, see `bounded_patch_count`).

    The first half of the channels encodes the column index, the second half the row index; each half is
    [sin(p·ω_k)] ++ [cos(p·ω_k)] with ω_k = 10000^(-k / (dim/4)). Computed from the shape, so no 70×70 cap.
    """
    quarter = dim // 4
    omega = 1.0 / torch.pow(10000.0, torch.arange(quarter, dtype=torch.float32) / quarter)

    def encode(pos: torch.Tensor) -> torch.Tensor:
        out = pos[:, None] * omega[None, :]
        return torch.cat((out.sin(), out.cos()), dim=-1)

    # Per-patch row/col indices first, so the [h·w, dim] table is built by elementwise ops only (no expand).
    patch = torch.arange(h * w if count is None else count)
    row, col = patch // w, patch % w
    return torch.cat((encode(col.float()), encode(row.float())), dim=-1)


class SiglipEmbeddings(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.patch_size = cfg.patch_size
        self.num_patches_per_side = cfg.num_patches_per_side
        self.patch_embedding = nn.Conv2d(cfg.num_channels, cfg.hidden_size, cfg.patch_size, cfg.patch_size)
        self.position_embedding = nn.Embedding(self.num_patches_per_side ** 2, cfg.hidden_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [1, 3, H, W] -> patch embeddings [1, h·w, D] in row-major patch order."""
        h, w = pixels.shape[2] // self.patch_size, pixels.shape[3] // self.patch_size
        x = self.patch_embedding(pixels.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        ids = navit_position_ids(h, w, self.num_patches_per_side).to(pixels.device)
        return x + self.position_embedding(ids)[None]

    def embed_patches(self, patches: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Normalised patches [N, 3·p·p] (`patchify`; the first N of an h×w grid) -> embeddings [N, D].

        The patch convolution (kernel = stride = p) as the linear map it is, so that the patch count can be a dim
        of its own (`bounded_patch_count`) rather than the product of the grid's two."""
        proj = self.patch_embedding
        if isinstance(proj, nn.Conv2d):  # the checkpoint's module, in eager use
            x = F.linear(patches.to(proj.weight.dtype), proj.weight.reshape(proj.out_channels, -1), proj.bias)
        else:  # the exporter's nn.Linear of the same weights (export.programs.VisionEncoder), which XNNPACK packs
            x = proj(patches.to(proj.weight.dtype))
        ids = navit_position_ids(h, w, self.num_patches_per_side).to(patches.device)[: patches.shape[0]]
        return x + self.position_embedding(ids)


class SiglipAttention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.heads_per_pass: int | None = None  # all heads at once; the exporter bounds it (ops.attention)
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [1, N, D] (one slice: every patch is valid, so no padding mask)."""
        n, d = x.shape[1], x.shape[2]
        q, k, v = (p(x).view(n, self.num_heads, self.head_dim).transpose(0, 1)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        out = attention(q, k, v, heads_per_pass=self.heads_per_pass)  # [heads, N, head_dim]
        return self.out_proj(out.transpose(0, 1).reshape(1, n, d))


class SiglipMLP(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.approximate = "tanh" if cfg.hidden_act == "gelu_pytorch_tanh" else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.fc2(gelu_tanh(h) if self.approximate == "tanh" else F.gelu(h))


class SiglipEncoderLayer(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layer_norm1 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = SiglipAttention(cfg)
        self.layer_norm2 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = SiglipMLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class SiglipEncoder(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(SiglipEncoderLayer(cfg) for _ in range(cfg.num_hidden_layers))


class SiglipVisionTransformer(nn.Module):
    """`vision.vpm`: embeddings, encoder, post_layernorm (no attention-pooling head)."""

    def __init__(self, cfg: VisionConfig, layers_used: int):
        super().__init__()
        self.embeddings = SiglipEmbeddings(cfg)
        self.encoder = SiglipEncoder(cfg)
        self.post_layernorm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.layers_used = layers_used

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encode(self.embeddings(pixels))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embeddings [1, N, D] -> hidden states [1, N, D]."""
        for layer in self.encoder.layers[: self.layers_used]:
            x = layer(x)
        return self.post_layernorm(x)


class PackedMultiheadAttention(nn.Module):
    """`nn.MultiheadAttention`'s parameters (packed in_proj) computed with plain ops (no fused fast path)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """query [Q, D], key/value [L, D] -> [Q, D]."""
        d = query.shape[-1]
        q, k, v = (self.project(x, i).view(x.shape[0], self.num_heads, d // self.num_heads).transpose(0, 1)
                   for i, x in enumerate((query, key, value)))
        out = attention(q, k, v)
        return self.out_proj(out.transpose(0, 1).reshape(-1, d))

    def project(self, x: torch.Tensor, which: int) -> torch.Tensor:
        """The q (0), k (1) or v (2) input projection."""
        d = self.out_proj.in_features
        rows = slice(which * d, (which + 1) * d)
        return F.linear(x, self.in_proj_weight[rows], self.in_proj_bias[rows])


class Resampler(nn.Module):
    """`vision.resampler`: 64 learned queries cross-attend to one slice's patches (MiniCPM-V 2.6)."""

    def __init__(self, num_queries: int, embed_dim: int, num_heads: int, kv_dim: int):
        super().__init__()
        self.embed_dim = embed_dim
        self.query = nn.Parameter(torch.empty(num_queries, embed_dim))
        self.kv_proj = nn.Linear(kv_dim, embed_dim, bias=False)
        self.attn = PackedMultiheadAttention(embed_dim, num_heads)
        self.ln_q = LayerNorm(embed_dim, eps=1e-6)
        self.ln_kv = LayerNorm(embed_dim, eps=1e-6)
        self.ln_post = LayerNorm(embed_dim, eps=1e-6)
        self.proj = nn.Parameter(torch.empty(embed_dim, embed_dim))

    def forward(self, patches: torch.Tensor, h_patches: int, w_patches: int) -> torch.Tensor:
        """patches [h·w, kv_dim] -> [num_queries, embed_dim]."""
        x = self.ln_kv(self.kv_proj(patches))
        pos = sincos_2d(h_patches, w_patches, self.embed_dim, count=patches.shape[0]).to(device=x.device, dtype=x.dtype)
        out = self.attn(self.ln_q(self.query), x + pos, x)
        return self.ln_post(out) @ self.proj


class VisionModel(nn.Module):
    """`vision`: one uint8 slice [3, H, W] -> [query_num, hidden] LLM embeddings (normalisation in-graph)."""

    def __init__(self, cfg: MegrezConfig):
        super().__init__()
        self.patch_size = cfg.vision.patch_size
        self.vpm = SiglipVisionTransformer(cfg.vision, cfg.vision_layers_used)
        self.resampler = Resampler(cfg.query_num, cfg.text.hidden_size, cfg.resampler_heads, cfg.vision.hidden_size)
        # Set by the exporter for XNNPACK/portable (processing.image.max_slice_patches): the patch count becomes a
        # dim of its own with this bound. None in eager use and on Core ML: the checkpoint's patch convolution.
        self.max_patches: int | None = None

    def forward(self, slice_chw: torch.Tensor) -> torch.Tensor:
        h, w = slice_chw.shape[-2] // self.patch_size, slice_chw.shape[-1] // self.patch_size
        pixels = slice_chw.reshape(1, 3, slice_chw.shape[-2], slice_chw.shape[-1])
        # (x - 127.5) / 127.5 == ToTensor then mean/std 0.5, done by the official model (vLLM get_vision_hidden_states).
        if self.max_patches is None:
            hidden = self.vpm((pixels.float() - 127.5) / 127.5)[0]
        else:  # the XNNPACK/portable export: the same math on the first `count` (= h·w) patches
            patches = patchify(pixels, self.patch_size).narrow(0, 0, bounded_patch_count(h, w, self.max_patches))
            embedded = self.vpm.embeddings.embed_patches((patches.float() - 127.5) / 127.5, h, w)
            hidden = self.vpm.encode(embedded[None])[0]
        return self.resampler(hidden, h, w)


def patchify(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """[1, C, h·p, w·p] -> [h·w, C·p·p]: row-major patches, each flattened in the patch convolution's weight order."""
    c, h, w = pixels.shape[1], pixels.shape[2] // patch, pixels.shape[3] // patch
    grid = pixels.reshape(c, h, patch, w, patch).permute(1, 3, 0, 2, 4)
    # Copied into a new tensor, not .contiguous() or .reshape(): their contiguity check made torch.export
    # specialise away slices one patch wide, which the slicer makes.
    out = torch.empty((h, w, c, patch, patch), dtype=pixels.dtype, device=pixels.device).copy_(grid)
    return out.view(h * w, c * patch * patch)


def bounded_patch_count(h: int, w: int, max_patches: int) -> int:
    """h·w, computed from data so that the exporter sees a new size bounded by max_patches.

    Exported with rows and cols as two dims, every [h·w, D] tensor is planned at the product of their bounds:
    (1792/14)² = 16,384 patches, where the slicer never makes more than 1,080. ExecuTorch's arena and XNNPACK's
    workspace (which keeps each tensor at the size it was defined with) both sized for that held ~0.6 GiB after
    one image (BENCHMARKS.md). Shapes derived from this count are planned at max_patches instead."""
    count = torch.ones(h, w, dtype=torch.int32).sum().item()
    # At least 2, as for the grid's own dims (exported size-oblivious): torchao's dynamic quantization branches on
    # "rows != 1". Slices of one patch are refused before they get here (`check_slice_shape`).
    torch._check(count >= 2)
    torch._check(count <= max_patches)
    torch._check(count <= h * w)
    return count


def check_slice_shape(slice_chw: torch.Tensor, patch_size: int) -> None:
    """Raise a clear error for a slice the encoder cannot take (kept out of forward: no value checks in-graph)."""
    shape = tuple(slice_chw.shape)
    if slice_chw.dtype != torch.uint8:
        raise ImageError(f"an image slice must be uint8 CHW [3, H, W]; got dtype {slice_chw.dtype}")
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[0] != 1) or shape[-3] != 3:
        raise ImageError(f"an image slice must be uint8 CHW [3, H, W] (or [1, 3, H, W]); got shape {list(shape)}")
    if shape[-1] % patch_size or shape[-2] % patch_size or 0 in shape:
        raise ImageError(f"slice sides must be positive multiples of {patch_size}; got H={shape[-2]} W={shape[-1]}. "
                         "Use MegrezProcessor.slice_image to cut images into valid slices.")
