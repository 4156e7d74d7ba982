"""make-tiny writes the official layout; from_pretrained reads it back exactly and rejects broken ones clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from megrez_mobile import CheckpointError, MegrezConfig, MegrezOmni
from megrez_mobile.checkpoint.safetensors_io import INDEX_FILE
from megrez_mobile.checkpoint.synthetic import FULL_SIZE, model_config, random_tensor_fn


def test_layout_is_the_official_one(tiny_checkpoint):
    names = sorted(p.name for p in tiny_checkpoint.iterdir())
    assert names == ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                     "model-00002-of-00002.safetensors", "model.safetensors.index.json",
                     "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"]
    index = json.loads((tiny_checkpoint / INDEX_FILE).read_text())
    assert set(index["weight_map"].values()) == {"model-00001-of-00002.safetensors",
                                                 "model-00002-of-00002.safetensors"}
    # Official key names (spec §2), stored in bf16.
    for key in ["llm.model.embed_tokens.weight", "llm.lm_head.weight", "llm.model.layers.1.self_attn.k_proj.weight",
                "vision.vpm.embeddings.position_embedding.weight", "vision.vpm.encoder.layers.0.mlp.fc1.bias",
                "vision.resampler.attn.in_proj_weight", "vision.resampler.proj", "audio.audio.positional_embedding",
                "audio.audio.blocks.1.attn.query.bias", "audio.audio.audio_bos_eos_token.weight"]:
        assert key in index["weight_map"], key
    assert "audio.audio.blocks.0.attn.key.bias" not in index["weight_map"]  # Whisper's key has no bias
    with safe_open(str(tiny_checkpoint / index["weight_map"]["llm.lm_head.weight"]), "pt") as f:
        assert f.get_slice("llm.lm_head.weight").get_dtype() == "BF16"
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["architectures"] == ["MegrezO"] and config["model_type"] == "megrezo"
    assert config["vision_config"]["image_size"] == 980 and config["audio_config"]["n_mels"] == 128
    assert (tiny_checkpoint / "config.json").stat().st_mode & 0o044  # readable by others, not mkdtemp's 0600


def test_round_trip_is_exact(tiny_checkpoint, tiny_model):
    """Every loaded parameter equals the bf16 tensor make-tiny generated for that key."""
    make = random_tensor_fn(seed=0, llm_layers=tiny_model.config.text.num_hidden_layers)
    state = tiny_model.state_dict()
    for key, shape in tiny_model.checkpoint_shapes().items():
        expected = make(key, shape).to(torch.bfloat16).float()
        assert torch.equal(state[key], expected), key
    assert len(state) == len(tiny_model.checkpoint_shapes())


def test_bf16_loading(tiny_checkpoint):
    model = MegrezOmni.from_pretrained(tiny_checkpoint, dtype=torch.bfloat16, load_processor=False)
    assert model.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_shard_is_named(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    (ckpt / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        MegrezOmni.from_pretrained(ckpt)


def test_truncated_shard_is_named(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    shard = ckpt / "model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="model-00001-of-00002.safetensors.*truncated"):
        MegrezOmni.from_pretrained(ckpt)


def test_wrong_dim_in_config_lists_misshaped_keys(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    config = json.loads((ckpt / "config.json").read_text())
    config["intermediate_size"] = 320
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as e:
        MegrezOmni.from_pretrained(ckpt)
    msg = str(e.value)
    assert "6 key(s) with the wrong shape" in msg  # gate/up/down of both layers
    assert "llm.model.layers.0.mlp.gate_proj.weight: checkpoint [256, 128], config expects [320, 128]" in msg


def test_missing_and_unexpected_keys_are_listed(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    index = json.loads((ckpt / INDEX_FILE).read_text())
    shard = ckpt / index["weight_map"]["llm.model.norm.weight"]
    with safe_open(str(shard), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    del tensors["llm.model.norm.weight"]
    tensors["llm.model.extra.weight"] = torch.zeros(3)
    tensors["llm.model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.zeros(3)  # tolerated, as upstream does
    save_file(tensors, str(shard))
    del index["weight_map"]["llm.model.norm.weight"]
    index["weight_map"]["llm.model.extra.weight"] = shard.name
    index["weight_map"]["llm.model.layers.0.self_attn.rotary_emb.inv_freq"] = shard.name
    (ckpt / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CheckpointError) as e:
        MegrezOmni.from_pretrained(ckpt)
    msg = str(e.value)
    assert "1 missing key(s):\n    llm.model.norm.weight" in msg
    assert "1 unexpected key(s):\n    llm.model.extra.weight" in msg
    assert "inv_freq" not in msg


def test_index_and_shard_disagree(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    index = json.loads((ckpt / INDEX_FILE).read_text())
    key = "llm.model.norm.weight"
    other = {"model-00001-of-00002.safetensors": "model-00002-of-00002.safetensors"}.get(
        index["weight_map"][key], "model-00001-of-00002.safetensors")
    index["weight_map"][key] = other
    (ckpt / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="not in the shard the index names.*llm.model.norm.weight"):
        MegrezOmni.from_pretrained(ckpt)


@pytest.mark.parametrize("damage, match", [
    (lambda c: (c / "config.json").unlink(), "config.json is missing"),
    (lambda c: (c / "config.json").write_text("{not json"), "config.json is not valid JSON"),
    (lambda c: (c / INDEX_FILE).write_text("[]"), "weight_map must be a non-empty mapping"),
    (lambda c: (c / "tokenizer.json").unlink(), "tokenizer.json is missing"),
    (lambda c: (c / "preprocessor_config.json").unlink(), "preprocessor_config.json is missing"),
])
def test_broken_files_are_named(tiny_checkpoint, tmp_path, damage, match):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    damage(ckpt)
    with pytest.raises(CheckpointError, match=match):
        MegrezOmni.from_pretrained(ckpt)


def test_make_tiny_refuses_to_clobber(tiny_checkpoint):
    from megrez_mobile.checkpoint.synthetic import make_checkpoint

    with pytest.raises(FileExistsError):
        make_checkpoint(tiny_checkpoint)


def test_interrupted_make_tiny_leaves_nothing(tmp_path, monkeypatch):
    from megrez_mobile.checkpoint import synthetic

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "write_sharded", boom)
    with pytest.raises(KeyboardInterrupt):
        synthetic.make_checkpoint(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


# --- the official dims (spec §3) -----------------------------------------------------------------------------------
def test_full_size_parameter_counts_match_the_spec():
    """Build the --full-size config on the meta device and count: every block reproduces spec §3."""
    config = MegrezConfig.from_dict(model_config(FULL_SIZE, FULL_SIZE.vocab_size))
    with torch.device("meta"):
        model = MegrezOmni(config)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(model.llm.model.layers[0]) == 71_439_360
    assert count(model.llm.model.layers) + count(model.llm.model.norm) == 2_286_062_080
    assert count(model.llm.model.embed_tokens) == 314_572_800
    assert count(model.llm.lm_head) == 314_572_800
    assert count(model.vision.vpm) == 417_792_240
    assert count(model.vision.vpm.encoder.layers[0]) == 15_239_504
    assert count(model.vision.resampler) == 35_906_560
    audio = model.audio.audio
    assert count(audio.blocks[0]) == 19_676_160
    assert count(audio) - count(audio.proj) - count(audio.audio_bos_eos_token) == 636_968_960
    assert count(audio.proj) + count(audio.audio_bos_eos_token) == 3_284_480
    assert count(model) == 4_009_159_920
    # Spec §1.4 / §5: heads derived from the dims.
    assert config.resampler_heads == 20 and model.vision.resampler.attn.num_heads == 20
    assert config.text.head_dim == 64 and config.vision.num_patches_per_side == 70


def test_tokenizer_larger_than_the_vocab_is_refused(tiny_checkpoint, tmp_path):
    from megrez_mobile.checkpoint.synthetic import train_tokenizer

    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    train_tokenizer(2000).save(str(ckpt / "tokenizer.json"))
    with pytest.raises(CheckpointError, match=r"tokenizer.json has \d+ ids but config.json's vocab_size is 1024"):
        MegrezOmni.from_pretrained(ckpt)
