"""How far a bundle's outputs are from the eager model's: the numbers `validate` reports and thresholds."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TensorGap:
    """An encoder output against the reference, flattened."""

    max_abs: float
    cosine: float
    snr_db: float  # 10·log10(‖ref‖² / ‖ref − got‖²); inf when identical

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def tensor_gap(got: torch.Tensor, want: torch.Tensor) -> TensorGap:
    if got.shape != want.shape:
        raise ValueError(f"shapes differ: bundle {list(got.shape)} vs reference {list(want.shape)}")
    got, want = got.detach().double().flatten(), want.detach().double().flatten()
    noise = float((got - want).pow(2).sum())
    signal = float(want.pow(2).sum())
    snr = math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal > 0 else -math.inf
    return TensorGap(max_abs=float((got - want).abs().max()),
                     cosine=float(F.cosine_similarity(got, want, dim=0)), snr_db=snr)


@dataclass(frozen=True)
class LogitsGap:
    """Next-token distributions at every teacher-forced position against the reference."""

    positions: int
    top1_agreement: float
    mean_kl: float  # KL(reference || bundle), nats per position
    max_kl: float
    min_cosine: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def logits_gap(got: torch.Tensor, want: torch.Tensor) -> LogitsGap:
    """`got`, `want`: [positions, vocab]."""
    got, want = got.detach().double(), want.detach().double()
    kl = F.kl_div(got.log_softmax(-1), want.log_softmax(-1), log_target=True, reduction="none").sum(-1)
    return LogitsGap(positions=int(got.shape[0]),
                     top1_agreement=float((got.argmax(-1) == want.argmax(-1)).double().mean()),
                     mean_kl=float(kl.mean()), max_kl=float(kl.max()),
                     min_cosine=float(F.cosine_similarity(got, want, dim=-1).min()))


def greedy_match_length(got: list[int], want: list[int]) -> int:
    """How many leading tokens two greedy continuations share."""
    n = 0
    for a, b in zip(got, want):
        if a != b:
            break
        n += 1
    return n
