"""The runner-input plan: what a phone hands ExecuTorch's stock MultimodalRunner for a chat turn.

`MegrezProcessor.build_inputs` gives token ids; a phone cannot send ids. Android's `LlmModule` takes text
(`prefillPrompt`), one uint8 CHW image per call (`prefillImages`) and one log-mel per call (`prefillAudio`), and
the runner's C++ tokenizer turns every marker string inside a text into its special id. So the plan renders the
same chat template as `build_inputs`, in the same order, as a list of runner inputs:

    text   the template's marker strings with the (neutralised) message text between them
    image  one slice (the source thumbnail or one grid cell): its geometry, and its uint8 [3, H, W] pixels
    audio  one <= 30 s clip of the 16 kHz waveform: its sample range, mel frames and placeholder span

Tokenizing every text piece with the runner's tokenizer gives exactly `build_inputs`' ids for ordinary text
(tests/test_runner_plan.py checks this with the C++ tokenizer and end to end with the stock runner). The Kotlin
core (android_demo/core) implements the same steps under the same names; `plan_to_json` is the format both
print, so any tool can diff them (`python -m megrez_mobile.processing.vectors` writes the shared test vectors).

User text and the neutralisation rule: `build_inputs` encodes message text with the BPE model alone, so typed
"<|turn_end|>" stays plain text. The runner has no such mode, so every message text is passed through
`neutralize`: a WORD JOINER (U+2060, invisible, no line-break opportunity, unchanged by NFC/NFKC) goes right
after the first character of every occurrence of an added-token string (all of tokenizer.json's
"added_tokens": the C++ tokenizer matches each of them). Text without such a string is unchanged, so its
tokens are `build_inputs`' tokens; text with one can no longer produce any special id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import audio_tokens_for_frames, encoder_mel_frames
from ..errors import CheckpointError
from ..untrusted import read_json
from .audio import load_audio, split_clips
from .image import load_image, to_chw_uint8
from .processor import MegrezProcessor, Message, _validate

PLAN_SCHEMA = "megrez-mobile/runner-plan/1"
WORD_JOINER = "\u2060"


# ----------------------------------------------------------------------------------------------------------------
# Neutralisation
# ----------------------------------------------------------------------------------------------------------------


def added_token_strings(tokenizer_json: str | Path) -> list[str]:
    """Every "added_tokens" content of a tokenizer.json, in file order (what the C++ tokenizer matches in text)."""
    path = Path(tokenizer_json)
    raw = read_json(path, CheckpointError, "re-download or re-export it")  # from a stranger: checked like the rest
    tokens = raw.get("added_tokens", []) if isinstance(raw, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, dict) for t in tokens):
        raise CheckpointError(f"{path}: added_tokens must be a list of objects; re-download or re-export it")
    return [t["content"] for t in tokens if isinstance(t.get("content"), str) and t["content"]]


def neutralize(text: str, added_tokens: Sequence[str]) -> str:
    """`text` with a WORD JOINER after the first character of every added-token occurrence (identity otherwise).

    Scans left to right: a joiner cannot be part of any token, so once inserted no match can span it, and every
    later occurrence starts to its right. One-character tokens cannot be split this way and are ignored.
    """
    tokens = sorted({t for t in added_tokens if len(t) >= 2})
    if not tokens or not any(t in text for t in tokens):
        return text
    out, i = [], 0
    while i < len(text):
        out.append(text[i])
        if any(text.startswith(t, i) for t in tokens):
            out.append(WORD_JOINER)
        i += 1
    return "".join(out)


# ----------------------------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class RunnerPlan:
    """`inputs` are JSON-ready dicts in runner order; `pixels[k]` / `clips[k]` belong to the k-th image / audio input."""

    inputs: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    audio: list[dict[str, Any]] = field(default_factory=list)
    pixels: list[torch.Tensor] = field(default_factory=list)
    clips: list[np.ndarray] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        return {"schema": PLAN_SCHEMA, "inputs": self.inputs, "images": self.images, "audio": self.audio}

    def texts(self) -> list[str]:
        return [i["text"] for i in self.inputs if i["kind"] == "text"]


@dataclass(frozen=True)
class Continuation:
    """A turn appended to a conversation whose KV cache the runner kept (the phone's multi-turn).

    `pending_answer` is the text of answer tokens the runner emitted but never fed back (the last token of an
    answer cut by the token limit; empty when it stopped at a stop id, which is never fed back either).
    """

    images_before: int = 0
    audio_before: int = 0
    pending_answer: str = ""


class _PlanBuilder:
    def __init__(self):
        self.plan = RunnerPlan()
        self._text: list[str] = []

    def text(self, s: str) -> None:
        self._text.append(s)

    def flush(self) -> None:
        if self._text and "".join(self._text):
            self.plan.inputs.append({"kind": "text", "text": "".join(self._text)})
        self._text = []

    def media(self, entry: dict[str, Any]) -> None:
        self.flush()
        self.plan.inputs.append(entry)


def _markers(processor: MegrezProcessor) -> dict[str, str]:
    m = processor.config.markers
    return {name: getattr(m, name) for name in ("im_start", "im_end", "im_id_start", "im_id_end", "slice_start",
                                                 "slice_end", "audio_start", "audio_end")}


def runner_plan(processor: MegrezProcessor, messages: Sequence[Message], added_tokens: Sequence[str],
                continuation: Continuation | None = None, add_generation_prompt: bool = True) -> RunnerPlan:
    """The runner inputs for `messages` (a whole conversation, or with `continuation` the turns after a kept cache).

    Same template and order as `MegrezProcessor.build_inputs`; with `continuation`, the result continues a cache
    that holds the earlier turns up to (not including) the previous answer's closing <|turn_end|>.
    """
    messages = _validate(messages) if not continuation else [_validate([m])[0] for m in messages]
    mk = _markers(processor)
    role_start, role_end, turn_end = "<|role_start|>", "<|role_end|>", "<|turn_end|>"
    b = _PlanBuilder()
    safe = lambda s: neutralize(s, added_tokens)  # noqa: E731
    image_index = continuation.images_before if continuation else 0
    audio_index = continuation.audio_before if continuation else 0
    if continuation:
        b.text(safe(continuation.pending_answer) + turn_end)
    elif messages[0]["role"] != "system" and processor.default_system_prompt:
        b.text(f"{role_start}system{role_end}{safe(processor.default_system_prompt)}{turn_end}")
    for msg in messages:
        content = msg["content"]
        b.text(f"{role_start}{msg['role']}{role_end}")
        media_before = False
        if content.get("image") is not None:
            _plan_image(b, processor, content["image"], image_index, mk)
            image_index += 1
            b.text("\n")
            media_before = True
        if content.get("audio") is not None:
            audio_index += 1
            b.text(f"Audio {audio_index}: ")
            _plan_audio(b, processor, content["audio"], audio_index - 1, mk)
            b.text("\n")
            media_before = True
        body = safe(content.get("text") or "")
        if media_before and body:
            # build_inputs tokenizes "\n" and the text apart; a text starting with whitespace and a newline would
            # merge with that "\n" in one piece ("\n \n" is one pre-token), so the text gets its own input.
            b.flush()
        b.text(body)
        b.text(turn_end)
    if add_generation_prompt:
        b.text(f"{role_start}assistant{role_end}")
    b.flush()
    return b.plan


def _plan_image(b: _PlanBuilder, processor: MegrezProcessor, image, index: int, mk: dict[str, str]) -> None:
    cfg = processor.config.image
    decoded = load_image(image, cfg)
    source, slices, grid = processor.slice_image(decoded)
    b.plan.images.append({"width": decoded.width, "height": decoded.height, "source": list(source.size),
                          "grid": [grid.cols, grid.rows] if grid else None,
                          "slice": list(slices[0].size) if slices else None})

    def add(im, part: dict[str, Any]) -> None:
        b.media({"kind": "image", "image": index, **part, "width": im.width, "height": im.height,
                 "tokens": cfg.image_feature_size})
        b.plan.pixels.append(to_chw_uint8(im))

    if cfg.use_image_id:
        b.text(f"{mk['im_id_start']}{index}{mk['im_id_end']}")
    b.text(mk["im_start"])
    add(source, {"part": "source"})
    b.text(mk["im_end"])
    if grid is not None:
        for r in range(grid.rows):
            if r:
                b.text("\n")
            for c in range(grid.cols):
                b.text(mk["slice_start"])
                add(slices[r * grid.cols + c], {"part": "slice", "row": r, "col": c})
                b.text(mk["slice_end"])


def _plan_audio(b: _PlanBuilder, processor: MegrezProcessor, audio, index: int, mk: dict[str, str]) -> None:
    cfg = processor.config.audio
    wave = load_audio(audio, cfg)
    clips = split_clips(wave, cfg)
    entry = {"samples": int(wave.size), "clips": []}
    first = 0
    for k, clip in enumerate(clips):
        frames = encoder_mel_frames(clip.size, cfg.hop_length)
        tokens = audio_tokens_for_frames(frames)
        entry["clips"].append({"first_sample": first, "samples": int(clip.size), "mel_frames": frames,
                               "tokens": tokens})
        b.text(mk["audio_start"])
        b.media({"kind": "audio", "audio": index, "clip": k, "first_sample": first, "samples": int(clip.size),
                 "mel_frames": frames, "tokens": tokens})
        b.plan.clips.append(clip)
        b.text(mk["audio_end"])
        first += clip.size
    b.plan.audio.append(entry)


# ----------------------------------------------------------------------------------------------------------------
# The shared JSON format (Python and Kotlin print it byte for byte alike)
# ----------------------------------------------------------------------------------------------------------------


def canonical_json(obj: Any) -> str:
    """Sorted keys, one-space indent, ASCII only (\\uXXXX), integers and strings only: easy to print identically."""
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=True) + "\n"


def plan_to_json(plan: RunnerPlan) -> str:
    return canonical_json(plan.to_json_dict())


def plan_ids(plan: RunnerPlan, encode, placeholder_id: int) -> list[int]:
    """The prompt ids a runner holds after `plan`: each text piece through `encode` (the runner's tokenizer, which
    turns markers into special ids), each media input `tokens` placeholder ids, as in `MegrezInputs.input_ids`."""
    ids: list[int] = []
    for item in plan.inputs:
        if item["kind"] == "text":
            ids.extend(encode(item["text"]))
        else:
            ids.extend([placeholder_id] * item["tokens"])
    return ids


def request_messages(messages: Sequence[Mapping[str, Any]], base: Path) -> list[dict[str, Any]]:
    """Messages of a request JSON with their media paths made absolute (relative to the request's folder)."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, Mapping):
            content = {k: (str(base / v) if k in ("image", "audio") and isinstance(v, str) else v)
                       for k, v in content.items()}
        out.append({"role": m["role"], "content": content})
    return out
