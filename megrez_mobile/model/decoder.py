"""The Llama decoder of Megrez-3B-Omni (GQA, RoPE, RMSNorm, SwiGLU, untied head, no biases).

Module and parameter names mirror transformers' `LlamaForCausalLM` under the checkpoint prefix `llm.`,
so the official weights load by name. Export-first: plain ops, a static-shape KV cache written with
`index_copy_`, masks built from the position tensor, no Python branches on tensor values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TextConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 and cast back before the weight, as transformers' LlamaRMSNorm does.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [T, head_dim] for integer positions [T], computed in float32 (non-interleaved halves)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               rotation: torch.Tensor | None = None) -> torch.Tensor:
    """x·cos + rotate_half(x)·sin. With `rotation` (`rotate_half_matrix`), rotate_half is that linear map instead
    of two slices and a cat: the same numbers, and a delegate runs it where it slices no dynamic shapes."""
    if rotation is not None:
        return x * cos + F.linear(x, rotation) * sin
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def rotate_half_matrix(head_dim: int) -> torch.Tensor:
    """W [head_dim, head_dim] with F.linear(x, W) == cat(-x[..., half:], x[..., :half]) exactly: each output is
    one input times ±1, the rest of its sum exact zeros."""
    half = head_dim // 2
    w = torch.zeros(head_dim, head_dim)
    w[torch.arange(half), torch.arange(half) + half] = -1.0
    w[torch.arange(half) + half, torch.arange(half)] = 1.0
    return w


class KVCache(nn.Module):
    """Static-shape cache [1, kv_heads, max_context, head_dim]; positions index the sequence dim."""

    def __init__(self, kv_heads: int, head_dim: int, max_context: int, dtype: torch.dtype):
        super().__init__()
        shape = (1, kv_heads, max_context, head_dim)
        # Zeroed so that masked (never written) slots contribute exactly 0, never NaN garbage.
        self.register_buffer("k", torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype), persistent=False)

    @property
    def max_context(self) -> int:
        return self.k.shape[2]

    def update(self, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k.index_copy_(2, positions, k)
        self.v.index_copy_(2, positions, v)
        return self.k, self.v


class Attention(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, cfg.hidden_size, bias=False)
        self.kv_cache: KVCache | None = None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor,
                mask: torch.Tensor, use_cache: bool) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q = apply_rope(q, cos.to(q.dtype), sin.to(q.dtype))
        k = apply_rope(k, cos.to(k.dtype), sin.to(k.dtype))
        if use_cache and self.kv_cache is not None:
            k, v = self.kv_cache.update(positions, k, v)
        # GQA by expanding the shared KV heads (plain view ops; no enable_gqa fast path in the export path).
        groups = self.num_heads // self.num_kv_heads
        s = k.shape[2]
        k = k[:, :, None].expand(b, self.num_kv_heads, groups, s, self.head_dim).reshape(b, self.num_heads, s, -1)
        v = v[:, :, None].expand(b, self.num_kv_heads, groups, s, self.head_dim).reshape(b, self.num_heads, s, -1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, positions, mask, use_cache):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, positions, mask, use_cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    """`llm.model`: embeddings, blocks and the final norm."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class MegrezLLM(nn.Module):
    """`llm`: the decoder with its untied LM head. Runs on embeddings so multimodal features can be spliced in."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.config = cfg
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    # --- KV cache -------------------------------------------------------------------------------------------
    def setup_kv_cache(self, max_context: int | None = None, dtype: torch.dtype | None = None) -> None:
        """Attach static caches (default: the config's context length). Replaces any existing cache."""
        max_context = max_context or self.config.max_position_embeddings
        dtype = dtype or self.lm_head.weight.dtype
        device = self.lm_head.weight.device
        for layer in self.model.layers:
            attn = layer.self_attn
            attn.kv_cache = KVCache(attn.num_kv_heads, attn.head_dim, max_context, dtype).to(device)

    def drop_kv_cache(self) -> None:
        for layer in self.model.layers:
            layer.self_attn.kv_cache = None

    @property
    def _cache(self) -> KVCache | None:
        return self.model.layers[0].self_attn.kv_cache if len(self.model.layers) else None

    @property
    def max_context(self) -> int | None:
        return self._cache.max_context if self._cache is not None else None

    # --- forward --------------------------------------------------------------------------------------------
    def hidden_states(self, embeds: torch.Tensor, positions: torch.Tensor, use_cache: bool = True) -> torch.Tensor:
        """Final-norm hidden states [1, T, D] for embeddings [1, T, D] at integer positions [T].

        With an attached KV cache (and `use_cache`) the tokens are written into it and attend to every cached
        slot at a position <= their own; otherwise they attend causally among themselves and the cache is untouched.
        """
        cache = self._cache if use_cache else None
        key_positions = (torch.arange(cache.max_context, device=positions.device) if cache is not None
                         else positions)
        mask = key_positions[None, :] <= positions[:, None]
        cos, sin = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta)
        x = embeds
        for layer in self.model.layers:
            x = layer(x, cos, sin, positions, mask, cache is not None)
        return self.model.norm(x)

    def forward(self, embeds: torch.Tensor, positions: torch.Tensor, use_cache: bool = True) -> torch.Tensor:
        """Logits of every position [1, T, V]."""
        return self.lm_head(self.hidden_states(embeds, positions, use_cache))

    def last_logits(self, embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits of the last position only [1, V]: the decode path never materialises [T, V]."""
        return self.lm_head(self.hidden_states(embeds, positions)[:, -1, :])
