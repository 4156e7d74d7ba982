"""The five methods of the program, as modules torch.export takes, per the contract in DESIGN.md.

Each wrapper reuses the eager model's own submodules (and so their weights, quantized or not), and adds only
what the runner contract asks for: batch dims, a single input per encoder, last-position logits, and a
decoder whose KV cache and attention are ExecuTorch's `llama::update_cache` / `llama::custom_sdpa`.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.export import Dim

from ..config import MegrezConfig, PreprocessorConfig
from ..model.decoder import MegrezLLM, apply_rope, rope_cos_sin, rotate_half_matrix
from ..model.omni import MegrezOmni
from ..model.ops import bound_attention_scores
from ..model.vision import PackedMultiheadAttention
from ..processing.audio import LogMelSpectrogram
from ..processing.image import max_slice_patches
from .recipe import DECODE_BRANCH_BACKENDS, KV_CACHE_DTYPES, Recipe


def load_custom_ops() -> None:
    """Register `llama::custom_sdpa` / `llama::update_cache` / `llama::custom_quantized_sdpa` and the
    `quantized_decomposed` ops with torch (and their ExecuTorch kernels)."""
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
    # The quantized_decomposed ops' out variants (int8 KV cache): to_executorch refuses an op without one.
    import executorch.kernels.quantized  # noqa: F401


class TokenEmbedding(nn.Module):
    """int64 [1, T] -> [1, T, D]."""

    def __init__(self, model: MegrezOmni):
        super().__init__()
        self.embed_tokens = model.llm.model.embed_tokens

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids)


class TextDecoder(nn.Module):
    """embeddings [1, T, D], start position int64 [1] -> logits of the last position [1, V].

    The runner passes `[pos]` because the position input's (static) size is 1; positions pos..pos+T-1 are built
    in-graph. The KV cache is [1, max_context, kv_heads, head_dim] per layer (the layout `update_cache` writes),
    and `custom_sdpa(is_causal=True)` attends to cache slots [0, pos + i] only, so stale slots past the current
    position (a rewound conversation, or the undefined initial content of a mutable buffer) are never read.

    With `decode_branch` (the float cache on XNNPACK or portable), a call with T = 1 (every decode step) takes
    `one_position_attention` instead, through a torch.cond in the program: the same slots, one pass per KV head
    instead of one per query head. The int8 cache keeps one path: its kernel gained nothing from that fold
    (BENCHMARKS.md).

    `kv_cache_dtype="int8"` keeps the cache as int8 rows with one float32 scale and one int8 zero point per
    (position, kv head) row: each new k/v row is quantized per token, asymmetrically, as it is written, and
    attention is `llama::custom_quantized_sdpa` on the int8 cache with q quantized the same way. A row of
    head_dim values costs head_dim + 5 bytes instead of 4 * head_dim.
    """

    def __init__(self, llm: MegrezLLM, max_context: int, kv_cache_dtype: str = "fp32", decode_branch: bool = True):
        super().__init__()
        load_custom_ops()
        if kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ValueError(f"kv_cache_dtype {kv_cache_dtype!r}: use one of {', '.join(KV_CACHE_DTYPES)}")
        # No weight needs a gradient, and one that asks for it puts autograd into ExecuTorch's re-traces, under
        # which the decoder's torch.cond cannot bind its branches' start position (PendingUnbackedSymbolNotFound).
        self.llm = llm.requires_grad_(False)
        cfg = llm.config
        self.max_context = max_context
        self.quantized = kv_cache_dtype == "int8"
        self.decode_branch = decode_branch
        # RoPE's rotate_half as a constant linear map: sliced, it ran outside XNNPACK (which slices no dynamic
        # shapes), and its four [T, heads, head_dim / 2] halves were planned in the arena at the prefill bound.
        self.register_buffer("rope_rotation", rotate_half_matrix(cfg.head_dim), persistent=False)
        shape = (1, max_context, cfg.num_key_value_heads, cfg.head_dim)
        row_shape = (1, max_context, cfg.num_key_value_heads, 1)
        for i in range(cfg.num_hidden_layers):
            for kv in ("k", "v"):
                if not self.quantized:
                    self.register_buffer(f"{kv}_cache_{i}", torch.zeros(shape), persistent=False)
                    continue
                self.register_buffer(f"{kv}_cache_{i}", torch.zeros(shape, dtype=torch.int8), persistent=False)
                self.register_buffer(f"{kv}_cache_scales_{i}", torch.ones(row_shape), persistent=False)
                self.register_buffer(f"{kv}_cache_zero_points_{i}", torch.zeros(row_shape, dtype=torch.int8),
                                     persistent=False)

    def forward(self, embeds: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        cfg = self.llm.config
        t = embeds.shape[1]
        start = input_pos[0].item()
        torch._check_is_size(start)
        torch._check(start + t <= self.max_context)
        cos, sin = rope_cos_sin(torch.arange(t) + start, cfg.head_dim, cfg.rope_theta)
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]  # broadcast over [1, T, heads, head_dim]
        x = embeds
        for i, layer in enumerate(self.llm.model.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = apply_rope(attn.q_proj(h).view(1, t, attn.num_heads, attn.head_dim), cos, sin, self.rope_rotation)
            k = apply_rope(attn.k_proj(h).view(1, t, attn.num_kv_heads, attn.head_dim), cos, sin, self.rope_rotation)
            v = attn.v_proj(h).view(1, t, attn.num_kv_heads, attn.head_dim)
            if self.quantized:
                y = self._attend_int8(i, q, k, v, start)
            else:
                y = self._attend_fp32(i, q, k, v, start, input_pos)
            x = x + attn.o_proj(y.reshape(1, t, attn.num_heads * attn.head_dim))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        # RMSNorm is per position: normalising only the last one gives the same logits for 1/T of the work.
        return self.llm.lm_head(self.llm.model.norm(x[:, -1, :]))

    def _attend_fp32(self, i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start, input_pos) -> torch.Tensor:
        k_cache, v_cache = getattr(self, f"k_cache_{i}"), getattr(self, f"v_cache_{i}")
        torch.ops.llama.update_cache(k, k_cache, start)
        torch.ops.llama.update_cache(v, v_cache, start)
        if not self.decode_branch:
            return causal_attention(q, k_cache, v_cache, input_pos)
        # A decode step (T = 1) takes the grouped-query path, prefill the causal kernel. The branch is in the
        # program (torch.cond), so every runner's decode takes it.
        one_position = functools.partial(one_position_attention, group=q.shape[2] // k_cache.shape[2])
        return torch.cond(q.shape[1] == 1, one_position, causal_attention, (q, k_cache, v_cache, input_pos))

    def _attend_int8(self, i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start) -> torch.Tensor:
        cache = {}
        for kv, rows in (("k", k), ("v", v)):
            for new, part in zip(quantize_rows(rows), ("", "_scales", "_zero_points")):
                cache[kv + part] = getattr(self, f"{kv}_cache{part}_{i}")
                torch.ops.llama.update_cache(new, cache[kv + part], start)
        q_int8, q_scales, q_zero_points = quantize_rows(q)
        # The kernel reads the int8 cache itself (slots [0, start + i] for query i, as custom_sdpa does) and returns
        # float32 [1, T, heads, head_dim].
        return torch.ops.llama.custom_quantized_sdpa(
            q_int8, cache["k"], cache["v"], start, None, 0.0, True, None, q_zero_points, q_scales,
            cache["k_zero_points"], cache["k_scales"], cache["v_zero_points"], cache["v_scales"])


def _start_position(input_pos: torch.Tensor):
    """The first query's position, read inside each torch.cond branch (a branch cannot take it as an int)."""
    start = input_pos[0].item()
    torch._check_is_size(start)
    return start


def causal_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, input_pos) -> torch.Tensor:
    """q [1, T, heads, head_dim] at positions start..start+T-1: query i attends to cache slots [0, start + i]."""
    start = _start_position(input_pos)
    return torch.ops.llama.custom_sdpa(q, k_cache, v_cache, start, None, 0, True)


def one_position_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, input_pos, group: int
                           ) -> torch.Tensor:
    """`causal_attention` for T = 1, with each KV head's query heads folded into rows of one query.

    `custom_sdpa` runs one query head at a time, so a decode step reads each KV head's cache once per query head
    that shares it (4 times at full size), one matrix-vector product per pass. Here the `group` query heads that
    share a KV head are given to it as that head's `group` query rows, one matrix product per KV head. Every row
    attends to every key it is given (is_causal=False), and the kernel gives it slots [0, start' + rows), which is
    [0, start] for start' = start - (group - 1). start' is negative below position group - 1; the kernel uses it
    only for that count. The shapes hold for any T (torch.cond traces both branches); the result is right for
    T = 1 only, the branch it is taken for.
    """
    start = _start_position(input_pos)
    _, t, heads, head_dim = q.shape
    kv_heads = heads // group
    # Query head h is kv head h // group (the decoder's grouping, and custom_sdpa's).
    rows = q.reshape(t, kv_heads, group, head_dim).transpose(1, 2).reshape(1, t * group, kv_heads, head_dim)
    y = torch.ops.llama.custom_sdpa(rows, k_cache, v_cache, start - t * (group - 1), None, 0, False)
    return y.reshape(t, group, kv_heads, head_dim).transpose(1, 2).reshape(1, t, heads, head_dim)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token asymmetric int8 over the last dim: x [..., head_dim] -> (int8 x, float32 scales [..., 1],
    int8 zero points [..., 1]), with ExecuTorch's quantized_decomposed ops (kernels in its quantized library)."""
    scales, zero_points = torch.ops.quantized_decomposed.choose_qparams_per_token_asymmetric(x, torch.int8)
    quantized = torch.ops.quantized_decomposed.quantize_per_token(x, scales, zero_points, -128, 127, torch.int8)
    # The op computes in float64/int64; the cache and the attention kernel keep float32 scales, int8 zero points.
    return quantized, scales.to(torch.float32), zero_points.to(torch.int8)


class SplitInProjection(PackedMultiheadAttention):
    """The resampler's packed attention with in_proj cut into three nn.Linear once, at export time: a delegate
    runs a linear only when its weight is a constant, not a slice computed in the graph."""

    def __init__(self, packed: PackedMultiheadAttention):
        nn.Module.__init__(self)
        self.num_heads, self.out_proj = packed.num_heads, packed.out_proj
        d = packed.out_proj.in_features
        self.in_proj = nn.ModuleList(nn.Linear(d, d) for _ in range(3))
        with torch.no_grad():
            for proj, w, b in zip(self.in_proj, packed.in_proj_weight.chunk(3), packed.in_proj_bias.chunk(3)):
                proj.weight.copy_(w)
                proj.bias.copy_(b)

    def project(self, x: torch.Tensor, which: int) -> torch.Tensor:
        return self.in_proj[which](x)


def patch_linear(conv: nn.Conv2d) -> nn.Linear:
    """The patch convolution (kernel = stride) as an nn.Linear over flattened patches, the same weights: a reshaped
    parameter would reach XNNPACK as a computed tensor it cannot pack, and the matmul would run unaccelerated."""
    with torch.no_grad():
        linear = nn.Linear(conv.weight[0].numel(), conv.out_channels, bias=conv.bias is not None)
        linear.weight.copy_(conv.weight.reshape(conv.out_channels, -1))
        if conv.bias is not None:
            linear.bias.copy_(conv.bias)
    return linear.to(conv.weight.dtype)


class VisionEncoder(nn.Module):
    """One slice [1, 3, H, W] of 0-255 pixels (H, W multiples of 14) -> [1, 64, D]; grid, position ids, table
    in-graph. uint8 everywhere but Core ML, which takes float32 pixels (see `method_specs`)."""

    def __init__(self, model: MegrezOmni, max_patches: int | None = None):
        super().__init__()
        # Shallow copies, so the eager model keeps its own (checkpoint-shaped) attention module.
        resampler = copy.copy(model.vision.resampler)
        resampler._modules = {**resampler._modules, "attn": SplitInProjection(model.vision.resampler.attn)}
        self.vision = copy.copy(model.vision)
        self.vision._modules = {**self.vision._modules, "resampler": resampler}
        self.vision.max_patches = max_patches
        if max_patches is not None:  # the patch-count path (VisionModel.forward) embeds patches with a linear map
            bound_attention_scores(self.vision.vpm, max_patches)
            embeddings = copy.copy(model.vision.vpm.embeddings)
            embeddings._modules = {**embeddings._modules, "patch_embedding": patch_linear(embeddings.patch_embedding)}
            vpm = copy.copy(model.vision.vpm)
            vpm._modules = {**vpm._modules, "embeddings": embeddings}
            self.vision._modules["vpm"] = vpm

    def forward(self, slice_chw: torch.Tensor) -> torch.Tensor:
        return self.vision(slice_chw).unsqueeze(0)


class AudioEncoder(nn.Module):
    """One clip's valid log-mel frames [1, 128, F] -> [1, F/4 + 2, D] including the learned audio BOS/EOS."""

    def __init__(self, model: MegrezOmni):
        super().__init__()
        self.audio = model.audio
        bound_attention_scores(self.audio, model.config.audio.n_ctx)  # n_ctx: the most encoder positions (30 s)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.audio(mel)


@dataclass
class MethodSpec:
    """How to export one method: the module, example inputs, dynamic shapes, and which model part it owns."""

    name: str
    build: Callable[[], nn.Module]
    example_inputs: tuple[torch.Tensor, ...]
    dynamic_shapes: Any
    # Checkpoint key prefixes of the weights this method needs (streamed in just before it is exported).
    weight_prefixes: tuple[str, ...]
    # Vision export needs size-oblivious shapes so that one-patch-high/wide slices stay in the same program.
    size_oblivious: bool = False


def method_specs(model: MegrezOmni, recipe: Recipe, preprocessor: PreprocessorConfig) -> list[MethodSpec]:
    """The methods in export order: small ones first, the decoder (the memory peak) last.

    On Core ML the vision encoder takes float32 pixels (the same 0-255 values) with H and W as plain dims: Core ML
    takes neither uint8 inputs nor dims that are expressions (14·rows), and its whole graph must be one Core ML
    model (see lowering.partitioners). The runners read the input dtype from the method's metadata.
    """
    cfg: MegrezConfig = model.config
    options = recipe.options
    d = cfg.text.hidden_size
    patch = cfg.vision.patch_size
    seq = Dim("seq", min=1, max=options.max_seq_len)
    side = preprocessor.image.max_slice_side // patch  # the slicer never produces a longer side
    rows, cols = (Dim(n, min=1, max=side) for n in ("rows", "cols"))
    if recipe.method_backend("vision_encoder") == "coreml":
        pixel_dtype = torch.float32
        pixel_dims = {2: Dim("height", min=patch, max=patch * side), 3: Dim("width", min=patch, max=patch * side)}
        # Core ML plans its own memory and takes no data-dependent size (bounded_patch_count) in its one model.
        max_patches = None
    else:
        pixel_dtype, pixel_dims = torch.uint8, {2: patch * rows, 3: patch * cols}
        max_patches = max_slice_patches(preprocessor.image)
    max_pairs = cfg.audio.n_ctx  # 1500 encoder positions = 3000 mel frames = 30 s
    mel_pairs = Dim("mel_pairs", min=2, max=max_pairs)
    audio = preprocessor.audio
    samples = Dim("samples", min=audio.hop_length, max=audio.samples_per_clip)
    return [
        MethodSpec("audio_preprocessor", lambda: LogMelSpectrogram(audio), (torch.zeros(audio.sampling_rate),),
                   ({0: samples},), ()),
        MethodSpec("token_embedding", lambda: TokenEmbedding(model), (torch.zeros(1, 4, dtype=torch.long),),
                   ({1: seq},), ("llm.model.embed_tokens.",)),
        MethodSpec("vision_encoder", lambda: VisionEncoder(model, max_patches),
                   (torch.zeros(1, 3, 4 * patch, 3 * patch, dtype=pixel_dtype),), (pixel_dims,), ("vision.",),
                   size_oblivious=True),
        MethodSpec("audio_encoder", lambda: AudioEncoder(model), (torch.zeros(1, cfg.audio.n_mels, 200),),
                   ({2: 2 * mel_pairs},), ("audio.",)),
        MethodSpec("text_decoder", lambda: TextDecoder(model.llm, options.max_context, options.kv_cache_dtype,
                                                       recipe.method_backend("text_decoder") in DECODE_BRANCH_BACKENDS),
                   (torch.zeros(1, 4, d), torch.zeros(1, dtype=torch.long)),
                   ({1: seq}, None), ("llm.model.layers.", "llm.model.norm.", "llm.lm_head.")),
    ]
