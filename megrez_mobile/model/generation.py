"""Token generation shared by every backend: sampling, stop ids, UTF-8-safe streaming, timings.

A backend supplies the prompt's last logits and a `decode_step(token_id, position) -> logits [V]`
callable; this module does the rest, so the eager model and an ExecuTorch program decode identically.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError, NumericalError
from ..processing.tokenizer import MegrezTokenizer

StreamFn = Callable[[str], None]


@dataclass(frozen=True)
class SamplingConfig:
    """The model card's knobs. `sampling=False` (or temperature 0) is greedy decoding."""

    sampling: bool = False
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 100
    # 1.0 = off. The official demo samples with 1.2; greedy OCR-style prompts may also want it.
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        numbers = (self.temperature, self.top_p, self.repetition_penalty)
        if (not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in numbers)
                or isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                or (self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)))
                or self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0 or self.repetition_penalty <= 0):
            raise InputError(f"invalid sampling settings (temperature={self.temperature!r}, top_p={self.top_p!r}, "
                             f"top_k={self.top_k!r}, repetition_penalty={self.repetition_penalty!r}, seed={self.seed!r})"
                             ": need finite numbers with temperature >= 0 (0 = greedy), 0 < top_p <= 1, an integer "
                             "top_k >= 0 (0 = off), repetition_penalty > 0 (1.0 = off) and an integer seed")

    @property
    def greedy(self) -> bool:
        return not self.sampling or self.temperature == 0


def check_max_new_tokens(max_new_tokens) -> int:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    return max_new_tokens


def apply_repetition_penalty(logits: torch.Tensor, history: Sequence[int], penalty: float) -> torch.Tensor:
    """transformers' rule: seen tokens' positive logits are divided by `penalty`, negative ones multiplied."""
    if penalty == 1.0 or not history:
        return logits
    ids = torch.tensor(sorted(set(history)), dtype=torch.long)
    seen = logits[ids]
    logits = logits.clone()
    logits[ids] = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits


def next_token(logits: torch.Tensor, history: Sequence[int], cfg: SamplingConfig,
               generator: torch.Generator | None = None) -> int:
    """Pick the next id from last-position logits [V] (order as transformers: penalty, temperature, top-k, top-p)."""
    logits = logits.float()
    if not bool(torch.isfinite(logits).all()):
        # argmax over NaN picks an arbitrary id: without this check the answer is a stream of garbage ("!!!!").
        bad = int((~torch.isfinite(logits)).sum())
        raise NumericalError(f"the model produced {bad} NaN/infinite logit(s) at position {len(history)}: its weights "
                             "(or the program computing them) are broken, e.g. a checkpoint with NaN weights or an "
                             "overflowing float16 backend. Check the checkpoint (megrez-mobile validate) or "
                             "re-export in float32.")
    logits = apply_repetition_penalty(logits, history, cfg.repetition_penalty)
    if cfg.greedy:
        return int(torch.argmax(logits))
    logits = logits / cfg.temperature
    if 0 < cfg.top_k < logits.numel():
        kth = torch.topk(logits, cfg.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop tokens once the mass before them already reaches top_p (always keep the best one).
        drop = cumulative - sorted_logits.softmax(-1) >= cfg.top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


class IncrementalDetokenizer:
    """Turns a growing id list into text pieces that never end inside a UTF-8 character.

    Byte-level BPE tokens can be fragments of one Chinese character; a fragment decodes to U+FFFD, so we
    hold text back until the decoded window no longer ends in one (the approach of vLLM's detokenizer).
    """

    def __init__(self, tokenizer: MegrezTokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        prefix_text = decode(self.ids[self.prefix_offset:self.read_offset])
        new_text = decode(self.ids[self.prefix_offset:])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return new_text[len(prefix_text):]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end decodes to U+FFFD)."""
        prefix_text = self.tokenizer.decode(self.ids[self.prefix_offset:self.read_offset])
        rest = self.tokenizer.decode(self.ids[self.prefix_offset:])[len(prefix_text):]
        self.prefix_offset = self.read_offset = len(self.ids)
        return rest


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    stop_reason: str  # "stop_token" | "max_new_tokens" | "context_full"
    prefill_seconds: float
    decode_seconds: float

    @property
    def prefill_tokens_per_second(self) -> float:
        return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds > 0 else float("inf")

    @property
    def decode_tokens_per_second(self) -> float:
        steps = max(len(self.token_ids) - 1, 0)  # the first token comes from prefill
        return steps / self.decode_seconds if self.decode_seconds > 0 else float("nan")


def generate(prefill: Callable[[], torch.Tensor], decode_step: Callable[[int, int], torch.Tensor],
             prompt_ids: Sequence[int], tokenizer: MegrezTokenizer, stop_ids: Sequence[int], max_context: int,
             sampling: SamplingConfig, max_new_tokens: int, stream: StreamFn | None = None) -> GenerationResult:
    """Prefill, then decode until a stop id, `max_new_tokens`, or the end of the context."""
    generator = None
    if sampling.seed is not None:
        generator = torch.Generator().manual_seed(sampling.seed)
    detok = IncrementalDetokenizer(tokenizer)
    history = list(prompt_ids)
    start = time.perf_counter()
    logits = prefill()
    prefill_seconds = time.perf_counter() - start
    start = time.perf_counter()
    generated: list[int] = []
    pieces: list[str] = []
    position = len(prompt_ids)
    stop_reason = "max_new_tokens"
    while len(generated) < max_new_tokens:
        token = next_token(logits, history, sampling, generator)
        if token in stop_ids:
            stop_reason = "stop_token"
            break
        generated.append(token)
        history.append(token)
        piece = detok.push(token)
        if piece:
            pieces.append(piece)
            if stream is not None:
                stream(piece)
        if len(generated) >= max_new_tokens:
            break
        if position >= max_context:
            stop_reason = "context_full"
            break
        logits = decode_step(token, position)
        position += 1
    tail = detok.flush()
    if tail:
        pieces.append(tail)
        if stream is not None:
            stream(tail)
    return GenerationResult("".join(pieces), generated, len(prompt_ids), stop_reason, prefill_seconds,
                            time.perf_counter() - start)
