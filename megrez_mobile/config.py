"""Typed configuration read from an official-layout checkpoint directory.

`config.json` holds the model dims under their Hugging Face names (the LLM at the top level,
`vision_config` and `audio_config` nested); `preprocessor_config.json` holds the image-slicing and
audio front-end parameters. Nothing here is hard-coded to the 3B dims: every size comes from the files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .untrusted import bounded, read_json, typed_fields

CONFIG_FILE = "config.json"
PREPROCESSOR_CONFIG_FILE = "preprocessor_config.json"


_REDOWNLOAD = "re-download it, or make a checkpoint with `megrez-mobile make-tiny`"
_FIX_CONFIG = "Fix that value (compare with the official config of Infinigence/Megrez-3B-Omni) or re-download the file"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing. A Megrez-3B-Omni checkpoint directory needs it; "
                              "download the whole repository or make one with `megrez-mobile make-tiny`.")
    return read_json(path, CheckpointError, _REDOWNLOAD)


def _pick(cls, raw: Any, where: str):
    """Build dataclass `cls` from the known keys of `raw`, each checked for type and bounds; unknown keys ignored."""
    kwargs = typed_fields(cls, raw, where, CheckpointError, fix=_FIX_CONFIG)
    try:
        return cls(**kwargs)
    except CheckpointError as e:  # a rule between fields (__post_init__): name the file it came from
        raise CheckpointError(f"{where}: {e}. {_FIX_CONFIG}") from None


# Bounds far beyond any real model, tight enough that nothing loops, divides or allocates by an absurd value
# before the checkpoint's own shapes are checked against the config.
def _width():
    return bounded(1, 1 << 17)


def _heads():
    return bounded(1, 1 << 10)


def _layers():
    return bounded(1, 1 << 10)


@dataclass(frozen=True)
class TextConfig:
    """The Llama decoder (Megrez-3B-Instruct backbone)."""

    hidden_size: int = _width()
    intermediate_size: int = _width()
    num_hidden_layers: int = _layers()
    num_attention_heads: int = _heads()
    num_key_value_heads: int = _heads()
    vocab_size: int = bounded(1, 1 << 22)
    rms_norm_eps: float = bounded(1e-12, 1.0, default=1e-5)
    rope_theta: float = bounded(1.0, 1e12, default=10000.0)
    # The KV cache and RoPE tables are sized from it: 1 M positions is far past any Megrez context.
    max_position_embeddings: int = bounded(1, 1 << 20, default=4096)
    tie_word_embeddings: bool = False
    head_dim: int | None = bounded(2, 1 << 12, default=None)
    hidden_act: str = "silu"
    attention_bias: bool = False
    mlp_bias: bool = False

    def __post_init__(self):
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if self.head_dim < 2 or self.head_dim % 2:
            raise CheckpointError(f"head_dim={self.head_dim} (hidden_size / num_attention_heads unless given) must be "
                                  "even and >= 2: RoPE rotates pairs of channels")
        if self.num_attention_heads % self.num_key_value_heads:
            raise CheckpointError(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                                  f"num_key_value_heads={self.num_key_value_heads}")
        if self.hidden_act != "silu" or self.attention_bias or self.mlp_bias:
            raise CheckpointError("only the Llama variant of Megrez (silu, no biases) is supported; config.json has "
                                  f"hidden_act={self.hidden_act!r} attention_bias={self.attention_bias} "
                                  f"mlp_bias={self.mlp_bias}")


@dataclass(frozen=True)
class VisionConfig:
    """SigLIP (NaViT variant) vision tower; defaults are SigLIP-SO400M's where the official dump is unreadable."""

    hidden_size: int = _width()
    intermediate_size: int = _width()
    num_attention_heads: int = _heads()
    num_hidden_layers: int = _layers()
    patch_size: int = bounded(1, 64, default=14)
    image_size: int = bounded(1, 1 << 13, default=980)
    num_channels: int = bounded(3, 3, default=3)
    layer_norm_eps: float = bounded(1e-12, 1.0, default=1e-6)
    hidden_act: str = "gelu_pytorch_tanh"

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads or self.image_size < self.patch_size:
            raise CheckpointError(f"vision_config: hidden_size={self.hidden_size} must be a multiple of "
                                  f"num_attention_heads={self.num_attention_heads}, and image_size={self.image_size} "
                                  f">= patch_size={self.patch_size}")

    @property
    def num_patches_per_side(self) -> int:
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class AudioConfig:
    """Whisper-large-v3 encoder as packaged by Qwen-Audio, plus the Megrez projector."""

    n_mels: int = bounded(1, 1024, default=128)
    n_ctx: int = bounded(1, 1 << 16, default=1500)
    n_state: int = bounded(1, 1 << 17, default=1280)
    n_head: int = bounded(1, 1 << 10, default=20)
    n_layer: int = bounded(1, 1 << 10, default=32)
    output_dim: int = bounded(1, 1 << 17, default=2560)
    avg_pool: bool = True
    add_audio_bos_eos_token: bool = True

    def __post_init__(self):
        if self.n_state % self.n_head:
            raise CheckpointError(f"audio_config: n_state={self.n_state} must be a multiple of n_head={self.n_head}")


@dataclass(frozen=True)
class MegrezConfig:
    text: TextConfig
    vision: VisionConfig
    audio: AudioConfig
    query_num: int = bounded(1, 1 << 12, default=64)
    drop_vision_last_layer: bool = False
    eos_token_id: int | list[int] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def resampler_heads(self) -> int:
        # Official rule (vLLM init_resampler): one head per 128 channels.
        return self.text.hidden_size // 128

    @property
    def vision_layers_used(self) -> int:
        return self.vision.num_hidden_layers - (1 if self.drop_vision_last_layer else 0)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = CONFIG_FILE) -> "MegrezConfig":
        if not isinstance(raw, dict) or "vision_config" not in raw or "audio_config" not in raw:
            raise CheckpointError(f"{where} has no vision_config/audio_config: it is not a Megrez-3B-Omni config")
        top = typed_fields(cls, raw, where, CheckpointError, fix=_FIX_CONFIG,
                           only=("query_num", "drop_vision_last_layer", "eos_token_id"))
        text = _pick(TextConfig, raw, where)
        vision = _pick(VisionConfig, raw["vision_config"], f"{where}: vision_config")
        audio = _pick(AudioConfig, raw["audio_config"], f"{where}: audio_config")
        if audio.output_dim != text.hidden_size:
            raise CheckpointError(f"{where}: audio_config.output_dim={audio.output_dim} must equal "
                                  f"hidden_size={text.hidden_size}")
        if text.hidden_size % 128:
            raise CheckpointError(f"{where}: hidden_size={text.hidden_size} must be a multiple of 128 "
                                  "(the resampler uses hidden_size/128 heads)")
        return cls(text=text, vision=vision, audio=audio, raw=raw, **top)

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path) -> "MegrezConfig":
        path = Path(checkpoint_dir) / CONFIG_FILE
        return cls.from_dict(_read_json(path), str(path))


@dataclass(frozen=True)
class ImageProcessingConfig:
    """MiniCPM-V 2.6 style slicing (preprocessor_config.json) plus our decoding limits."""

    scale_resolution: int = bounded(1, 1 << 12, default=448)
    max_slice_nums: int = bounded(1, 64, default=9)
    patch_size: int = bounded(1, 64, default=14)
    slice_mode: bool = True
    use_image_id: bool = True
    image_feature_size: int = bounded(1, 1 << 12, default=64)
    # Refuse images larger than this before decoding them (decompression bombs); 64 MP covers any phone camera.
    max_pixels: int = bounded(1, 1 << 30, default=64_000_000)
    # Longest side of any slice, in pixels (a multiple of patch_size). The exported vision program is sized for
    # it (its patch tensors by processing.image.max_slice_patches, the area bound). Only images more elongated than
    # 16:1 reach it (448·√16 = 1792); they are scaled down to fit, where the official processor would not.
    max_slice_side: int = bounded(1, 1 << 14, default=1792)


@dataclass(frozen=True)
class AudioProcessingConfig:
    """Whisper log-mel front end (preprocessor_config.json) plus our clip policy."""

    sampling_rate: int = bounded(1000, 384_000, default=16000)
    feature_size: int = bounded(1, 1024, default=128)
    n_fft: int = bounded(2, 1 << 14, default=400)
    hop_length: int = bounded(1, 1 << 14, default=160)
    # One encoder clip is at most this long (the positional table holds 30 s); longer audio is split into clips.
    chunk_length: int = bounded(1, 600, default=30)
    # Longer audio is refused before it is decoded in full: it could never fit into a 4K context anyway.
    max_audio_seconds: float = bounded(0.01, 3600.0, default=300.0)
    # Shorter clips would produce no audio token at all.
    min_audio_seconds: float = bounded(0.0, 10.0, default=0.04)

    @property
    def samples_per_clip(self) -> int:
        return self.chunk_length * self.sampling_rate

    @property
    def max_frames(self) -> int:
        return self.samples_per_clip // self.hop_length


@dataclass(frozen=True)
class MarkerTokens:
    """The strings of the special tokens that frame images and audio (looked up in the tokenizer by string)."""

    im_start: str = "<|image_start|>"
    im_end: str = "<|image_end|>"
    im_id_start: str = "<|image_id_start|>"
    im_id_end: str = "<|image_id_end|>"
    slice_start: str = "<|slice_start|>"
    slice_end: str = "<|slice_end|>"
    unk: str = "<|unk|>"
    # [inferred] the audio marker strings are not in any readable official file; the keys are honoured if present.
    audio_start: str = "<|audio_start|>"
    audio_end: str = "<|audio_end|>"


@dataclass(frozen=True)
class PreprocessorConfig:
    image: ImageProcessingConfig = field(default_factory=ImageProcessingConfig)
    audio: AudioProcessingConfig = field(default_factory=AudioProcessingConfig)
    markers: MarkerTokens = field(default_factory=MarkerTokens)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = PREPROCESSOR_CONFIG_FILE) -> "PreprocessorConfig":
        image = _pick(ImageProcessingConfig, raw, where)
        audio = _pick(AudioProcessingConfig, raw, where)
        markers = _pick(MarkerTokens, raw, where)
        if image.max_slice_side % image.patch_size or image.max_slice_side < image.scale_resolution:
            raise CheckpointError(f"{where}: max_slice_side={image.max_slice_side} must be a "
                                  f"multiple of patch_size={image.patch_size} and >= scale_resolution")
        if image.scale_resolution % image.patch_size:
            raise CheckpointError(f"{where}: scale_resolution={image.scale_resolution} must be a "
                                  f"multiple of patch_size={image.patch_size}")
        if audio.hop_length > audio.n_fft or audio.samples_per_clip < audio.hop_length:
            raise CheckpointError(f"{where}: need hop_length ({audio.hop_length}) <= n_fft ({audio.n_fft}) and at "
                                  f"least one hop per clip (chunk_length {audio.chunk_length} s)")
        if audio.min_audio_seconds >= audio.chunk_length:
            raise CheckpointError(f"{where}: min_audio_seconds ({audio.min_audio_seconds}) must be shorter than "
                                  f"chunk_length ({audio.chunk_length})")
        if empty := [f.name for f in dataclasses.fields(markers) if not getattr(markers, f.name)]:
            raise CheckpointError(f"{where}: marker string(s) {empty} are empty; name the tokenizer's special tokens")
        return cls(image=image, audio=audio, markers=markers)

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path) -> "PreprocessorConfig":
        path = Path(checkpoint_dir) / PREPROCESSOR_CONFIG_FILE
        return cls.from_dict(_read_json(path), str(path))

    def to_dict(self) -> dict[str, Any]:
        """The official preprocessor_config.json layout (flat keys)."""
        out: dict[str, Any] = {
            "image_processor_type": "MegrezOImageProcessor",
            "processor_class": "MegrezOProcessor",
            "audio_feature_extractor_type": "WhisperFeatureExtractor",
            "norm_mean": [0.5, 0.5, 0.5],
            "norm_std": [0.5, 0.5, 0.5],
            "pad_token": "<|pad|>",
        }
        for part in (self.image, self.audio, self.markers):
            out.update(dataclasses.asdict(part))
        return out


def audio_tokens_for_frames(mel_frames: int) -> int:
    """LLM positions one clip of `mel_frames` log-mel frames occupies, including the learned BOS/EOS (spec §5.2)."""
    after_cnn = (mel_frames - 1) // 2 + 1
    return (after_cnn - 2) // 2 + 1 + 2


def encoder_mel_frames(num_samples: int, hop_length: int = 160) -> int:
    """Mel frames the official encoder reads for a clip: valid frames rounded up to even (it crops to after_cnn*2)."""
    # Integer-only, so torch.export can evaluate it on a symbolic length.
    return (num_samples // hop_length + 1) // 2 * 2
