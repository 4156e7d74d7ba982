"""MegrezProcessor: messages -> token ids with media placeholders, the media tensors, and their bounds.

The chat format is the Megrez template (spec §6.2) with multimodal user turns rendered as SWIFT does
(spec §6.2, §4.6, §5.4):

    <|role_start|>system<|role_end|>{system}<|turn_end|>
    <|role_start|>user<|role_end|>{image placeholder}\\nAudio 1: {audio placeholder}\\n{text}<|turn_end|>
    <|role_start|>assistant<|role_end|>

image placeholder = <|image_id_start|>{k}<|image_id_end|><|image_start|>{64×<|unk|>}<|image_end|>
                    + rows joined by "\\n" of cols × (<|slice_start|>{64×<|unk|>}<|slice_end|>)
audio placeholder = <|audio_start|>{span×<|unk|>}<|audio_end|> per 30 s clip (span includes BOS/EOS)

Template pieces are special-token ids; user text goes through `MegrezTokenizer.encode_text`, so it can
never produce a special token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import PIL.Image
import torch

from ..config import PreprocessorConfig, audio_tokens_for_frames
from ..errors import ChatFormatError, CheckpointError
from ..untrusted import is_unicode_text
from .audio import AudioInput, load_audio, log_mel, split_clips
from .image import ImageInput, SliceGrid, load_image, slice_image, to_chw_uint8
from .tokenizer import MegrezTokenizer

# Megrez-3B-Instruct's default system prompt; SWIFT registers the same template for megrez_omni.
DEFAULT_SYSTEM_PROMPT = "你是Megrez-3B-Instruct，将针对用户的问题给出详细的、积极的回答。"
ROLES = ("system", "user", "assistant")

Message = Mapping[str, Any]
Content = Union[str, Mapping[str, Any]]


@dataclass
class Segment:
    """A run of the prompt: plain token ids, or one encoder input whose outputs fill `length` positions."""

    kind: str  # "tokens" | "image" | "audio"
    token_ids: list[int] = field(default_factory=list)
    media: torch.Tensor | None = None  # uint8 [3, H, W] slice, or log-mel [n_mels, F]

    @property
    def length(self) -> int:
        return len(self.token_ids)


@dataclass
class MegrezInputs:
    """Everything the model needs for one prompt.

    `image_bounds[i] = (start, end)`: slice i's 64 embeddings overwrite positions [start, end).
    `audio_bounds[j] = (start, end)`: positions of clip j's markers; its embeddings overwrite [start + 1, end).
    (Both as in the official MegrezO code.) `segments` is the same prompt as the interleaved list a
    runner feeds segment by segment: token runs and encoder inputs in order.
    """

    input_ids: torch.Tensor
    image_bounds: torch.Tensor
    audio_bounds: torch.Tensor
    image_slices: list[torch.Tensor]
    audio_mels: list[torch.Tensor]
    segments: list[Segment]

    @property
    def num_tokens(self) -> int:
        return self.input_ids.shape[1]

    def describe(self) -> str:
        n_img = sum(s.length for s in self.segments if s.kind == "image")
        n_aud = sum(s.length for s in self.segments if s.kind == "audio")
        return f"{self.num_tokens} tokens ({n_img} image, {n_aud} audio, {self.num_tokens - n_img - n_aud} text)"


class _SequenceBuilder:
    def __init__(self):
        self.segments: list[Segment] = []

    def tokens(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        if self.segments and self.segments[-1].kind == "tokens":
            self.segments[-1].token_ids.extend(ids)
        else:
            self.segments.append(Segment("tokens", list(ids)))

    def media(self, kind: str, tensor: torch.Tensor, placeholder_id: int, length: int) -> None:
        self.segments.append(Segment(kind, [placeholder_id] * length, tensor))


class MegrezProcessor:
    def __init__(self, tokenizer: MegrezTokenizer, config: PreprocessorConfig = PreprocessorConfig(),
                 default_system_prompt: str | None = DEFAULT_SYSTEM_PROMPT):
        self.tokenizer = tokenizer
        self.config = config
        self.default_system_prompt = default_system_prompt
        m = config.markers
        tid = tokenizer.token_id
        # Resolve the (verified) image markers once: a tokenizer lacking one fails here, naming it, not mid-chat.
        self.ids = {name: tid(getattr(m, name)) for name in (
            "im_start", "im_end", "im_id_start", "im_id_end", "slice_start", "slice_end", "unk")}
        # The audio marker strings are inferred, not read from an official file: a tokenizer without them still
        # serves text and images, and audio fails with the fix spelled out (see `_audio_marker`).
        for name in ("audio_start", "audio_end"):
            if tokenizer.has_token(getattr(m, name)):
                self.ids[name] = tid(getattr(m, name))
        self.role_start = tid("<|role_start|>")
        self.role_end = tid("<|role_end|>")
        self.turn_end = tid("<|turn_end|>")
        # Generation stops at either (vLLM examples stop on both).
        self.stop_ids = tuple(dict.fromkeys(
            tid(t) for t in ("<|turn_end|>", "<|eos|>") if tokenizer.has_token(t)))

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path, **kwargs) -> "MegrezProcessor":
        return cls(MegrezTokenizer.from_pretrained(checkpoint_dir),
                   PreprocessorConfig.from_pretrained(checkpoint_dir), **kwargs)

    # --- the component calls --------------------------------------------------------------------------------
    def slice_image(self, image: PIL.Image.Image) -> tuple[PIL.Image.Image, list[PIL.Image.Image], SliceGrid | None]:
        return slice_image(image, self.config.image)

    def log_mel(self, waveform_16k: np.ndarray | torch.Tensor) -> torch.Tensor:
        return log_mel(waveform_16k, self.config.audio)

    # --- placeholders ---------------------------------------------------------------------------------------
    def _add_image(self, b: _SequenceBuilder, image: ImageInput, image_index: int) -> None:
        ids, n = self.ids, self.config.image.image_feature_size
        source, slices, grid = self.slice_image(load_image(image, self.config.image))
        if self.config.image.use_image_id:
            b.tokens([ids["im_id_start"], *self.tokenizer.encode_text(str(image_index)), ids["im_id_end"]])
        b.tokens([ids["im_start"]])
        b.media("image", to_chw_uint8(source), ids["unk"], n)
        b.tokens([ids["im_end"]])
        if grid is not None:
            newline = self.tokenizer.encode_text("\n")
            for r in range(grid.rows):
                if r:
                    b.tokens(newline)
                for c in range(grid.cols):
                    b.tokens([ids["slice_start"]])
                    b.media("image", to_chw_uint8(slices[r * grid.cols + c]), ids["unk"], n)
                    b.tokens([ids["slice_end"]])

    def _audio_marker(self, name: str) -> int:
        if name not in self.ids:
            marker = getattr(self.config.markers, name)
            raise CheckpointError(f"{self.tokenizer.source} has no special token {marker!r} to frame audio. Add the "
                                  f"key \"{name}\" to preprocessor_config.json with this tokenizer's audio marker string.")
        return self.ids[name]

    def _add_audio(self, b: _SequenceBuilder, audio: AudioInput) -> None:
        start, end = self._audio_marker("audio_start"), self._audio_marker("audio_end")
        for clip in split_clips(load_audio(audio, self.config.audio), self.config.audio):
            mel = self.log_mel(clip)
            b.tokens([start])
            b.media("audio", mel, self.ids["unk"], audio_tokens_for_frames(mel.shape[-1]))
            b.tokens([end])

    # --- chat template --------------------------------------------------------------------------------------
    def build_inputs(self, messages: Sequence[Message], add_generation_prompt: bool = True,
                     answer_token_ids: Mapping[str, Sequence[int]] | None = None) -> MegrezInputs:
        """Render `messages` with the chat template, load and slice/encode media, and compute the bounds.

        `answer_token_ids` maps an assistant answer's text to the ids the model generated for it; such answers are
        spliced in as those ids instead of being re-tokenized (which need not give the same ids), so a runtime
        that kept its KV cache can continue from exactly what it already computed.
        """
        messages = _validate(messages)
        answers = answer_token_ids or {}
        b = _SequenceBuilder()
        text = self.tokenizer.encode_text

        def turn(role: str, fill) -> None:
            b.tokens([self.role_start, *text(role), self.role_end])
            fill()
            b.tokens([self.turn_end])

        if messages[0]["role"] != "system" and self.default_system_prompt:
            turn("system", lambda: b.tokens(text(self.default_system_prompt)))
        image_index, audio_index = 0, 0
        for msg in messages:
            content = msg["content"]

            def fill(content=content):
                nonlocal image_index, audio_index
                if content.get("image") is not None:
                    self._add_image(b, content["image"], image_index)
                    image_index += 1
                    b.tokens(text("\n"))
                if content.get("audio") is not None:
                    audio_index += 1
                    b.tokens(text(f"Audio {audio_index}: "))
                    self._add_audio(b, content["audio"])
                    b.tokens(text("\n"))
                body = content.get("text") or ""
                known = answers.get(body) if msg["role"] == "assistant" else None
                b.tokens(list(known) if known is not None else text(body))

            turn(msg["role"], fill)
        if add_generation_prompt:
            b.tokens([self.role_start, *text("assistant"), self.role_end])
        return _assemble(b.segments)


def _validate(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Check the documented format; normalise string content to {"text": ...}. Errors name the message."""
    if isinstance(messages, Mapping) or not isinstance(messages, Sequence) or not messages:
        raise ChatFormatError('messages must be a non-empty list like [{"role": "user", "content": {"text": "hi"}}]')
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or "role" not in msg or "content" not in msg:
            raise ChatFormatError(f"messages[{i}] must be a dict with 'role' and 'content'; got {msg!r:.80}")
        role, content = msg["role"], msg["content"]
        if role not in ROLES:
            raise ChatFormatError(f"messages[{i}]['role'] is {role!r}; use one of {', '.join(ROLES)}")
        if role == "system" and i:
            raise ChatFormatError(f"messages[{i}] is a system message; only the first message may be one")
        if isinstance(content, str):
            content = {"text": content}
        if not isinstance(content, Mapping):
            raise ChatFormatError(f"messages[{i}]['content'] must be a str or a dict with text/image/audio")
        unknown = set(content) - {"text", "image", "audio"}
        if unknown:
            raise ChatFormatError(f"messages[{i}]['content'] has unknown key(s) {sorted(unknown)}; "
                                  "use 'text', 'image' and 'audio' (one image and one audio per message)")
        if not isinstance(content.get("text") or "", str):
            raise ChatFormatError(f"messages[{i}]['content']['text'] must be a string")
        if not is_unicode_text(content.get("text") or ""):
            raise ChatFormatError(f"messages[{i}]['content']['text'] is not valid Unicode: it holds undecodable bytes "
                                  "(an unpaired surrogate, e.g. text read from a non-UTF-8 terminal, file or argv). "
                                  "Decode the input as UTF-8 (or re-save the file as UTF-8) and try again")
        has_media = content.get("image") is not None or content.get("audio") is not None
        if role != "user" and has_media:
            raise ChatFormatError(f"messages[{i}] is a {role} message; images and audio go in user messages")
        if role == "user" and not (content.get("text") or has_media):
            raise ChatFormatError(f"messages[{i}] is empty: give it text, an image or audio")
        out.append({"role": role, "content": dict(content)})
    return out


def _assemble(segments: list[Segment]) -> MegrezInputs:
    ids: list[int] = []
    image_bounds, audio_bounds, slices, mels = [], [], [], []
    for seg in segments:
        start = len(ids)
        ids.extend(seg.token_ids)
        if seg.kind == "image":
            image_bounds.append((start, start + seg.length))
            slices.append(seg.media)
        elif seg.kind == "audio":
            # Official convention: (opening marker, closing marker); the embeddings fill the run between them.
            audio_bounds.append((start - 1, start + seg.length))
            mels.append(seg.media)
    as_bounds = lambda rows: torch.tensor(rows, dtype=torch.long).reshape(-1, 2)  # noqa: E731
    return MegrezInputs(torch.tensor([ids], dtype=torch.long), as_bounds(image_bounds), as_bounds(audio_bounds),
                        slices, mels, segments)
