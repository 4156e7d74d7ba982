"""Audio: Whisper-large-v3 encoder as packaged by Qwen-Audio (`audio.audio`) + Megrez projector.

One clip's valid log-mel frames [1, n_mels, F] in, [F/4 + 2, hidden] LLM embeddings out (the learned
audio BOS/EOS included). The valid length is the input's shape, so no padding mask is needed and the
same code exports with a dynamic F.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AudioConfig
from .ops import LayerNorm, attention


class WhisperAttention(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.num_heads = n_head
        self.heads_per_pass: int | None = None  # all heads at once; the exporter bounds it (ops.attention)
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        hd = d // self.num_heads
        # q and k are each scaled by head_dim^-1/4 before the product, exactly as Qwen-Audio does.
        scale = hd ** -0.25
        # One clip of valid frames attends to all of itself: no mask, so the whole block stays in the delegate.
        q, k, v = (proj(x).view(t, self.num_heads, hd).transpose(0, 1) for proj in (self.query, self.key, self.value))
        out = attention(q * scale, k * scale, v, scale=1.0, heads_per_pass=self.heads_per_pass)  # [heads, t, hd]
        return self.out(out.transpose(0, 1).reshape(b, t, d))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.attn = WhisperAttention(n_state, n_head)
        self.attn_ln = LayerNorm(n_state)
        self.mlp = nn.Sequential(nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state))
        self.mlp_ln = LayerNorm(n_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class AudioEncoder(nn.Module):
    """`audio.audio`: conv stem, loaded positional table, 32 pre-LN blocks, avg-pool, ln_post, proj, BOS/EOS."""

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(cfg.n_state, cfg.n_state, kernel_size=3, stride=2, padding=1)
        # Loaded from the checkpoint (the official fix c70b7cf), never regenerated.
        self.positional_embedding = nn.Parameter(torch.empty(cfg.n_ctx, cfg.n_state), requires_grad=False)
        self.blocks = nn.ModuleList(ResidualAttentionBlock(cfg.n_state, cfg.n_head) for _ in range(cfg.n_layer))
        self.avg_pool = cfg.avg_pool
        self.ln_post = LayerNorm(cfg.n_state)
        self.proj = nn.Linear(cfg.n_state, cfg.output_dim)
        self.audio_bos_eos_token = nn.Embedding(2, cfg.output_dim) if cfg.add_audio_bos_eos_token else None

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [1, n_mels, F] -> [1, F/4 (+2 with BOS/EOS), output_dim]."""
        if mel.shape[0] != 1:  # static under torch.export: the program takes one clip per call
            raise ValueError(f"the audio encoder takes one clip per call ([1, n_mels, F]); got {list(mel.shape)}")
        x = F.gelu(self.conv1(mel.to(self.conv1.weight.dtype)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.positional_embedding[: x.shape[1]]
        for block in self.blocks:
            x = block(x)
        if self.avg_pool:
            x = F.avg_pool1d(x.transpose(1, 2), kernel_size=2, stride=2).transpose(1, 2)
        x = self.proj(self.ln_post(x))
        if self.audio_bos_eos_token is not None:
            bos_eos = self.audio_bos_eos_token.weight.to(x.dtype)
            x = torch.cat((bos_eos[None, :1], x, bos_eos[None, 1:]), dim=1)
        return x


class AudioModel(nn.Module):
    """`audio`: the wrapper the checkpoint nests the encoder in."""

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self.audio = AudioEncoder(cfg)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.audio(mel)
