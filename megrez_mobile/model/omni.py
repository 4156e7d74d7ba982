"""MegrezOmni: the whole model, loaded from the official checkpoint, with the model card's `chat`.

Module names mirror the checkpoint (`llm.*`, `vision.vpm.*`, `vision.resampler.*`, `audio.audio.*`), so
`state_dict()` keys are the official keys. The component methods below are the units the exporter
turns into ExecuTorch methods and the harness compares against.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..checkpoint.safetensors_io import CheckpointIndex, ProgressFn, load_into
from ..config import MegrezConfig, audio_tokens_for_frames
from ..errors import AudioError, CheckpointError, ContextOverflowError, InputError
from ..processing.processor import Message, MegrezInputs, MegrezProcessor
from .audio import AudioModel
from .decoder import MegrezLLM
from .generation import GenerationResult, SamplingConfig, StreamFn, check_max_new_tokens, generate
from .vision import VisionModel, check_slice_shape


class MegrezOmni(nn.Module):
    def __init__(self, config: MegrezConfig):
        super().__init__()
        self.config = config
        self.llm = MegrezLLM(config.text)
        self.vision = VisionModel(config)
        self.audio = AudioModel(config.audio)
        if config.text.tie_word_embeddings:
            self.llm.lm_head.weight = self.llm.model.embed_tokens.weight
        self.processor: MegrezProcessor | None = None

    # --- loading --------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path, dtype: torch.dtype = torch.float32,
                        load_processor: bool = True, progress: ProgressFn | None = None) -> "MegrezOmni":
        """Load an official-layout checkpoint (config.json + sharded safetensors) unchanged.

        The checkpoint is validated against the config before any weight is read; weights are then copied
        tensor by tensor from memory-mapped shards into storage allocated once, so peak memory stays near
        one copy of the model in `dtype`.
        """
        checkpoint_dir = Path(checkpoint_dir)
        config = MegrezConfig.from_pretrained(checkpoint_dir)
        index = CheckpointIndex.read(checkpoint_dir)
        with torch.device("meta"):
            model = cls(config).to(dtype)
        expected = model.checkpoint_shapes()
        index.check_against(expected)
        model = model.to_empty(device="cpu")
        load_into(model, index, expected, progress)
        model.eval().requires_grad_(False)
        if load_processor:
            model.processor = MegrezProcessor.from_pretrained(checkpoint_dir)
            check_tokenizer_fits(model.processor, config, checkpoint_dir)
        return model

    def checkpoint_shapes(self) -> dict[str, tuple[int, ...]]:
        """Key -> shape of every tensor the official checkpoint must hold for this config."""
        shapes = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        if self.config.text.tie_word_embeddings:
            shapes.pop("llm.lm_head.weight", None)
        return shapes

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.lm_head.weight.dtype

    # --- components (the units the exporter and the harness use) --------------------------------------------
    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[1, S] int64 -> [1, S, D]."""
        return self.llm.model.embed_tokens(input_ids)

    def logits_from_embeddings(self, embeds: torch.Tensor) -> torch.Tensor:
        """[1, S, D] -> logits at every position [1, S, V] (causal, no cache)."""
        return self.llm(embeds, torch.arange(embeds.shape[1]), use_cache=False)

    def text_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[1, S] int64 -> [1, S, V]."""
        return self.logits_from_embeddings(self.embed_tokens(input_ids))

    def encode_image_slice(self, slice_chw: torch.Tensor) -> torch.Tensor:
        """One uint8 slice [3, H, W] (sides multiples of 14) -> [64, D]."""
        check_slice_shape(slice_chw, self.config.vision.patch_size)
        return self.vision(slice_chw)

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """One clip's log-mel [1, n_mels, F] (or [n_mels, F]) -> [F/4 + 2, D] including the audio BOS/EOS."""
        mel = mel.reshape(1, *mel.shape[-2:]) if mel.dim() in (2, 3) else mel
        n_mels, frames = self.config.audio.n_mels, mel.shape[-1]
        if mel.dim() != 3 or mel.shape[1] != n_mels or not 4 <= frames <= 2 * self.config.audio.n_ctx:
            raise AudioError(f"encode_audio takes one clip's log-mel [1, {n_mels}, F] with 4 <= F <= "
                             f"{2 * self.config.audio.n_ctx}; got {list(mel.shape)}. Split long audio into 30 s clips.")
        return self.audio(mel)[0]

    def compose_embeddings(self, inputs: MegrezInputs) -> torch.Tensor:
        """Token embeddings with every image slice and audio clip written over its placeholder run."""
        embeds = self.embed_tokens(inputs.input_ids).clone()
        for (start, end), slice_chw in zip(inputs.image_bounds.tolist(), inputs.image_slices):
            embeds[0, start:end] = self.encode_image_slice(slice_chw).to(embeds.dtype)
        for (start, end), mel in zip(inputs.audio_bounds.tolist(), inputs.audio_mels):
            feats = self.encode_audio(mel)
            if feats.shape[0] != end - start - 1:
                raise AudioError(f"audio clip gives {feats.shape[0]} embeddings but its placeholder holds "
                                 f"{end - start - 1} (expected {audio_tokens_for_frames(mel.shape[-1])}); "
                                 "build inputs with MegrezProcessor.build_inputs")
            embeds[0, start + 1:end] = feats.to(embeds.dtype)
        return embeds

    # --- chat -----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, messages: Sequence[Message], max_new_tokens: int = 100,
                 sampling: SamplingConfig = SamplingConfig(), stream: StreamFn | None = None) -> GenerationResult:
        """Run one assistant turn for `messages` and return the text with token ids and timings."""
        if self.processor is None:
            raise InputError("this model was loaded without its processor; use MegrezOmni.from_pretrained(dir)")
        return self.generate_from_inputs(self.processor.build_inputs(messages), max_new_tokens, sampling, stream)

    @torch.inference_mode()
    def generate_from_inputs(self, inputs: MegrezInputs, max_new_tokens: int = 100,
                             sampling: SamplingConfig = SamplingConfig(),
                             stream: StreamFn | None = None) -> GenerationResult:
        """`generate` for a prompt already built by `MegrezProcessor.build_inputs`."""
        check_max_new_tokens(max_new_tokens)
        context = self.config.text.max_position_embeddings
        if inputs.num_tokens >= context:
            raise ContextOverflowError(
                f"the prompt is {inputs.describe()}, but the context holds {context} positions and at least one "
                "must stay free for the answer. Shorten the text, use fewer/shorter audio clips or fewer images, "
                "or drop earlier turns.")
        if self.llm.max_context != context:
            self.llm.setup_kv_cache(context)
        llm = self.llm

        def prefill() -> torch.Tensor:
            embeds = self.compose_embeddings(inputs)
            return llm.last_logits(embeds, torch.arange(inputs.num_tokens))[0]

        def decode_step(token_id: int, position: int) -> torch.Tensor:
            embeds = self.embed_tokens(torch.tensor([[token_id]]))
            return llm.last_logits(embeds, torch.tensor([position]))[0]

        return generate(prefill, decode_step, inputs.input_ids[0].tolist(), self.processor.tokenizer,
                        self.processor.stop_ids, context, sampling, max_new_tokens, stream)

    def chat(self, messages: Sequence[Message], sampling: bool = False, max_new_tokens: int = 100,
             temperature: float = 0.7, top_p: float = 0.8, top_k: int = 100, repetition_penalty: float = 1.0,
             stream: StreamFn | None = None, seed: int | None = None) -> str:
        """The model card's contract: one assistant answer for `messages`, stopping at <|turn_end|> / <|eos|>.

        `messages = [{"role": "user", "content": {"text": ..., "image": ..., "audio": ...}}]`, multi-turn
        (earlier assistant answers included), optional leading system message. `stream(piece)` receives the
        answer as it is generated, never split inside a UTF-8 character.
        """
        cfg = SamplingConfig(sampling=sampling, temperature=temperature, top_p=top_p, top_k=top_k,
                             repetition_penalty=repetition_penalty, seed=seed)
        return self.generate(messages, max_new_tokens, cfg, stream).text


def check_tokenizer_fits(processor: MegrezProcessor, config: MegrezConfig, checkpoint_dir: Path) -> None:
    """Runners sample over the tokenizer's ids: more ids than logits would read past the logits row."""
    n_ids = processor.tokenizer.vocab_size
    if n_ids > config.text.vocab_size:
        raise CheckpointError(f"{checkpoint_dir}/tokenizer.json has {n_ids} ids but config.json's vocab_size "
                              f"is {config.text.vocab_size}: the tokenizer belongs to another model")
