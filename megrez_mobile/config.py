"""Typed configuration read from an official-layout checkpoint directory.

`config.json` holds the model dims under their Hugging Face names (the LLM at the top level,
`vision_config` and `audio_config` nested); `preprocessor_config.json` holds the image-slicing and
audio front-end parameters. Nothing here is hard-coded to the 3B dims: every size comes from the files.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError

CONFIG_FILE = "config.json"
PREPROCESSOR_CONFIG_FILE = "preprocessor_config.json"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing. A Megrez-3B-Omni checkpoint directory needs it; "
                              "download the whole repository or make one with `megrez-mobile make-tiny`.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}). Re-download it.") from e


def _pick(cls, raw: dict[str, Any], where: str):
    """Build dataclass `cls` from the known keys of `raw`; unknown keys are ignored, missing required ones reported."""
    kwargs, missing = {}, []
    for f in dataclasses.fields(cls):
        if f.name in raw and raw[f.name] is not None:
            kwargs[f.name] = raw[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            missing.append(f.name)
    if missing:
        raise CheckpointError(f"{where} lacks required field(s): {', '.join(missing)}")
    return cls(**kwargs)


@dataclass(frozen=True)
class TextConfig:
    """The Llama decoder (Megrez-3B-Instruct backbone)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    head_dim: int | None = None
    hidden_act: str = "silu"
    attention_bias: bool = False
    mlp_bias: bool = False

    def __post_init__(self):
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
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

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_hidden_layers: int
    patch_size: int = 14
    image_size: int = 980
    num_channels: int = 3
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"

    @property
    def num_patches_per_side(self) -> int:
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class AudioConfig:
    """Whisper-large-v3 encoder as packaged by Qwen-Audio, plus the Megrez projector."""

    n_mels: int = 128
    n_ctx: int = 1500
    n_state: int = 1280
    n_head: int = 20
    n_layer: int = 32
    output_dim: int = 2560
    avg_pool: bool = True
    add_audio_bos_eos_token: bool = True


@dataclass(frozen=True)
class MegrezConfig:
    text: TextConfig
    vision: VisionConfig
    audio: AudioConfig
    query_num: int = 64
    drop_vision_last_layer: bool = False
    eos_token_id: int | None = None
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
        if "vision_config" not in raw or "audio_config" not in raw:
            raise CheckpointError(f"{where} has no vision_config/audio_config: it is not a Megrez-3B-Omni config")
        text = _pick(TextConfig, raw, where)
        vision = _pick(VisionConfig, raw["vision_config"], f"{where}: vision_config")
        audio = _pick(AudioConfig, raw["audio_config"], f"{where}: audio_config")
        if audio.output_dim != text.hidden_size:
            raise CheckpointError(f"{where}: audio_config.output_dim={audio.output_dim} must equal "
                                  f"hidden_size={text.hidden_size}")
        if text.hidden_size % 128:
            raise CheckpointError(f"{where}: hidden_size={text.hidden_size} must be a multiple of 128 "
                                  "(the resampler uses hidden_size/128 heads)")
        return cls(text=text, vision=vision, audio=audio, query_num=raw.get("query_num", 64),
                   drop_vision_last_layer=bool(raw.get("drop_vision_last_layer", False)),
                   eos_token_id=raw.get("eos_token_id"), raw=raw)

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path) -> "MegrezConfig":
        path = Path(checkpoint_dir) / CONFIG_FILE
        return cls.from_dict(_read_json(path), str(path))


@dataclass(frozen=True)
class ImageProcessingConfig:
    """MiniCPM-V 2.6 style slicing (preprocessor_config.json) plus our decoding limits."""

    scale_resolution: int = 448
    max_slice_nums: int = 9
    patch_size: int = 14
    slice_mode: bool = True
    use_image_id: bool = True
    image_feature_size: int = 64
    # Refuse images larger than this before decoding them (decompression bombs); 64 MP covers any phone camera.
    max_pixels: int = 64_000_000
    # Longest side of any slice, in pixels (a multiple of patch_size). The exported vision program is sized for
    # it: what the delegate does not run is memory-planned at max_slice_side². Only images more elongated than
    # 16:1 reach it (448·√16 = 1792); they are scaled down to fit, where the official processor would not.
    max_slice_side: int = 1792


@dataclass(frozen=True)
class AudioProcessingConfig:
    """Whisper log-mel front end (preprocessor_config.json) plus our clip policy."""

    sampling_rate: int = 16000
    feature_size: int = 128
    n_fft: int = 400
    hop_length: int = 160
    # One encoder clip is at most this long (the positional table holds 30 s); longer audio is split into clips.
    chunk_length: int = 30
    # Longer audio is refused before it is decoded in full: it could never fit into a 4K context anyway.
    max_audio_seconds: float = 300.0
    # Shorter clips would produce no audio token at all.
    min_audio_seconds: float = 0.04

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
    def from_dict(cls, raw: dict[str, Any]) -> "PreprocessorConfig":
        image = _pick(ImageProcessingConfig, raw, PREPROCESSOR_CONFIG_FILE)
        audio = _pick(AudioProcessingConfig, raw, PREPROCESSOR_CONFIG_FILE)
        markers = _pick(MarkerTokens, raw, PREPROCESSOR_CONFIG_FILE)
        if image.max_slice_side % image.patch_size or image.max_slice_side < image.scale_resolution:
            raise CheckpointError(f"{PREPROCESSOR_CONFIG_FILE}: max_slice_side={image.max_slice_side} must be a "
                                  f"multiple of patch_size={image.patch_size} and >= scale_resolution")
        if image.scale_resolution % image.patch_size or image.max_slice_nums < 1:
            raise CheckpointError(f"{PREPROCESSOR_CONFIG_FILE}: scale_resolution={image.scale_resolution} must be a "
                                  f"multiple of patch_size={image.patch_size} and max_slice_nums >= 1")
        return cls(image=image, audio=audio, markers=markers)

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path) -> "PreprocessorConfig":
        return cls.from_dict(_read_json(Path(checkpoint_dir) / PREPROCESSOR_CONFIG_FILE))

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
