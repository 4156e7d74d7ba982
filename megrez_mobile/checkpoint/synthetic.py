"""`make-tiny`: a complete Megrez-3B-Omni checkpoint in the official Hugging Face layout, random weights.

Tests, the demo and the benchmarks use it instead of downloading 8 GB; it goes through exactly the same
loading code as the real checkpoint. `tiny` keeps every structural feature of the real model (GQA,
64 queries per slice, 128 mel bins, the 70×70 position table, the 1500-frame audio table, the full
special-token set) at small widths; `full-size` has the official dims (spec §1) for benchmarks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tokenizers import Regex

from ..config import CONFIG_FILE, PREPROCESSOR_CONFIG_FILE, MegrezConfig, PreprocessorConfig
from .safetensors_io import ProgressFn, atomic_directory, write_sharded

CORPUS_FILE = Path(__file__).with_name("corpus.txt")

# Official special tokens in id order (spec §6.1), then the media markers (strings from
# preprocessor_config.json; audio markers inferred, see config.MarkerTokens).
SPECIAL_TOKENS = (
    "<|eos|>", "<|unk|>", "<|pad|>", "<|role_start|>", "<|role_end|>", "<|turn_end|>", "<|code_start|>",
    "<|code_end|>", "<|commit_start|>", "<|commit_end|>",
    "<|image_start|>", "<|image_end|>", "<|image_id_start|>", "<|image_id_end|>", "<|slice_start|>",
    "<|slice_end|>", "<|audio_start|>", "<|audio_end|>",
)
# Qwen2's pre-tokenizer split (llama.cpp maps the Megrez tokenizer hash to it).
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


@dataclass(frozen=True)
class CheckpointSpec:
    """What make-tiny writes: dims plus the BPE vocabulary size it trains."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int | None  # None: the trained tokenizer's size rounded up to 64
    vision: dict[str, Any]
    audio: dict[str, Any]
    bpe_vocab: int = 1000

    def with_dims(self, name: str | None = None, **dims: Any) -> "CheckpointSpec":
        """The spec with some dims replaced: `hidden_size=...` for the LLM, `vision_intermediate_size=...` /
        `audio_n_state=...` for a tower's field. Unknown names are an error (a typo would silently test nothing)."""
        top = {f.name for f in dataclasses.fields(self)} - {"name", "vision", "audio"}
        changes: dict[str, Any] = {}
        towers = {"vision": dict(self.vision), "audio": dict(self.audio)}
        for key, value in dims.items():
            tower, _, field = key.partition("_")
            if key in top:
                changes[key] = value
            elif tower in towers and field in towers[tower]:
                towers[tower][field] = value
            else:
                known = sorted(top) + [f"{t}_{f}" for t, d in towers.items() for f in d]
                raise ValueError(f"unknown checkpoint dim {key!r}; known: {', '.join(known)}")
        return dataclasses.replace(self, name=name or f"{self.name}-custom", **changes, **towers)


TINY = CheckpointSpec(
    name="tiny", hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, vocab_size=None,
    vision=dict(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_hidden_layers=2),
    audio=dict(n_state=64, n_head=4, n_layer=2),
)
FULL_SIZE = CheckpointSpec(
    name="full-size", hidden_size=2560, intermediate_size=7168, num_hidden_layers=32, num_attention_heads=40,
    num_key_value_heads=10, vocab_size=122880,
    vision=dict(hidden_size=1152, intermediate_size=4304, num_attention_heads=16, num_hidden_layers=27),
    audio=dict(n_state=1280, n_head=20, n_layer=32),
)


def train_tokenizer(bpe_vocab: int) -> Tokenizer:
    """Byte-level BPE trained on the bundled English + Chinese corpus, Megrez special tokens appended."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=bpe_vocab, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    lines = CORPUS_FILE.read_text(encoding="utf-8").splitlines(keepends=True)
    tok.train_from_iterator(lines, trainer=trainer)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok


def model_config(spec: CheckpointSpec, vocab_size: int) -> dict[str, Any]:
    """config.json with the official field names and values (spec §1)."""
    return {
        "architectures": ["MegrezO"],
        "model_type": "megrezo",
        "auto_map": {"AutoConfig": "configuration_megrezo.MegrezOConfig",
                     "AutoModel": "modeling_megrezo.MegrezO",
                     "AutoModelForCausalLM": "modeling_megrezo.MegrezO"},
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "rms_norm_eps": 1e-05,
        "rope_theta": 5000000.0,
        "rope_scaling": None,
        "max_position_embeddings": 4096,
        "max_sequence_length": 4096,
        "tie_word_embeddings": False,
        "vocab_size": vocab_size,
        "bos_token_id": None,
        "eos_token_id": None,  # filled from the tokenizer
        "pad_token_id": 0,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "torch_dtype": "bfloat16",
        "use_cache": False,
        "query_num": 64,
        "patch_size": 14,
        "drop_vision_last_layer": False,
        "vision_batch_size": 8,
        "vision_config": {"model_type": "siglip_vision_model", "patch_size": 14, "image_size": 980,
                          "num_channels": 3, "layer_norm_eps": 1e-06, "hidden_act": "gelu_pytorch_tanh",
                          **spec.vision},
        "audio_config": {"model_type": "megrezo", "n_mels": 128, "n_ctx": 1500, "output_dim": spec.hidden_size,
                         "avg_pool": True, "add_audio_bos_eos_token": True, **spec.audio},
    }


def tokenizer_config(tok: Tokenizer) -> dict[str, Any]:
    added = {str(i): {"content": t.content, "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False, "special": True}
             for i, t in sorted(tok.get_added_tokens_decoder().items())}
    return {"add_bos_token": False, "add_eos_token": False, "added_tokens_decoder": added, "bos_token": None,
            "eos_token": "<|turn_end|>", "pad_token": "<|pad|>", "unk_token": "<|unk|>",
            "clean_up_tokenization_spaces": False, "model_max_length": 4096,
            "tokenizer_class": "PreTrainedTokenizerFast"}


def random_tensor_fn(seed: int, llm_layers: int = 1) -> Callable[[str, tuple], torch.Tensor]:
    """Deterministic random weights with sane scales: norms near 1, matrices ~ 1/sqrt(fan_in)."""
    def make(name: str, shape: tuple) -> torch.Tensor:
        # A per-key seed keeps each tensor independent of write order and shard layout.
        g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "weight" and len(shape) == 1:  # every 1-D weight is a norm's scale
            return 1.0 + 0.1 * torch.randn(shape, generator=g)
        if len(shape) == 1:
            return 0.02 * torch.randn(shape, generator=g)
        if "embed" in name and len(shape) == 2 or leaf in ("query", "audio_bos_eos_token") or "bos_eos" in name:
            return torch.randn(shape, generator=g)
        if leaf == "positional_embedding":
            return 0.5 * torch.randn(shape, generator=g)
        if name == "llm.lm_head.weight":
            return _bigram_head(make("llm.model.embed_tokens.weight", shape), g)
        fan_in = shape[0] if leaf == "proj" else math.prod(shape[1:])  # resampler.proj is used as x @ proj
        scale = 1 / math.sqrt(fan_in)
        if name.startswith("llm.") and name.endswith(("o_proj.weight", "down_proj.weight")):
            # GPT-2/Megatron init: projections that write into the residual stream are scaled by 1/sqrt(2L), so each
            # block nudges the stream as in a trained model instead of replacing it (and quantization noise is
            # measured against a realistic signal).
            scale /= math.sqrt(2 * llm_layers)
        return torch.randn(shape, generator=g) * scale
    return make


def _bigram_head(embed: torch.Tensor, g: torch.Generator, margin: float = 8.0) -> torch.Tensor:
    """An lm_head that makes the random model behave like a trained bigram model.

    Row r is the embedding of the token that predicts r (a fixed permutation) plus noise, so the logit of
    the "next" token stands out (median top-1 gap ~2.4 logit std on tiny), as in a trained model.
    A purely random head gives nearly flat logits whose argmax is a coin toss between near-ties; then
    top-1 agreement measures ties, not quantization error.
    """
    vocab, hidden = embed.shape
    predicts = torch.randperm(vocab, generator=g)
    noise = torch.randn(embed.shape, generator=g)
    return (margin * embed[predicts] / math.sqrt(hidden) + noise) / math.sqrt(hidden)


def make_checkpoint(out_dir: str | Path, spec: CheckpointSpec = TINY, seed: int = 0, overwrite: bool = False,
                    progress: ProgressFn | None = None) -> Path:
    """Write a complete checkpoint directory atomically and return its path."""
    from ..model.omni import MegrezOmni  # the model defines which keys and shapes the checkpoint holds

    tok = train_tokenizer(spec.bpe_vocab)
    n_tokens = tok.get_vocab_size(with_added_tokens=True)
    vocab_size = spec.vocab_size or 64 * math.ceil(n_tokens / 64)
    if n_tokens > vocab_size:
        raise ValueError(f"tokenizer has {n_tokens} ids but the model vocab is {vocab_size}")
    raw_config = model_config(spec, vocab_size)
    raw_config["eos_token_id"] = tok.token_to_id("<|turn_end|>")
    with torch.device("meta"):
        shapes = MegrezOmni(MegrezConfig.from_dict(raw_config)).checkpoint_shapes()
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(raw_config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / PREPROCESSOR_CONFIG_FILE).write_text(
            json.dumps(PreprocessorConfig().to_dict(), indent=2) + "\n", encoding="utf-8")
        tok.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(
            json.dumps(tokenizer_config(tok), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "generation_config.json").write_text(json.dumps(
            {"eos_token_id": [raw_config["eos_token_id"], tok.token_to_id("<|eos|>")], "pad_token_id": 0}) + "\n")
        write_sharded(tmp, shapes, random_tensor_fn(seed, raw_config["num_hidden_layers"]), num_shards=2, dtype=torch.bfloat16, progress=progress)
    return Path(out_dir)
