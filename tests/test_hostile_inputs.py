"""Bundles, checkpoints, recipes, devices files and user input from a hostile stranger.

One case per class of bad input. Each case asserts the typed MegrezError (naming the file and the field), that no
file outside the directory was opened (a canary beside it, watched by a Python audit hook, its bytes unchanged),
and that nothing was left behind (no partial bundle, the input directory unchanged).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from megrez_mobile.bundle import read_manifest
from megrez_mobile.cli import cli
from megrez_mobile.config import MegrezConfig, PreprocessorConfig
from megrez_mobile.errors import (AudioError, BundleError, ChatFormatError, CheckpointError, DeviceError, ImageError,
                                  InputError, MegrezError, NumericalError, OutputPathError, RecipeError)

CANARY_TEXT = b"canary: nothing may open this file\n"

# --- the watch: a canary beside the directory, and every Python-level open recorded ---------------------------------
_opened: list[str] | None = None


def _audit(event: str, args) -> None:
    if _opened is not None and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.path.realpath(os.fsdecode(args[0])))


sys.addaudithook(_audit)


class Watch:
    def __init__(self, root: Path):
        self.root = root
        self.canary = root / "canary.txt"
        self.canary.write_bytes(CANARY_TEXT)
        self.opened: list[str] = []

    def __enter__(self):
        global _opened
        _opened = self.opened
        return self

    def __exit__(self, *exc):
        global _opened
        _opened = None

    def assert_untouched(self) -> None:
        assert os.path.realpath(self.canary) not in self.opened, "a file outside the directory was opened"
        assert self.canary.read_bytes() == CANARY_TEXT

    def assert_no_partials(self) -> None:
        leftovers = [p.name for p in self.root.rglob("*.partial*")]
        assert not leftovers, f"half-written files survived: {leftovers}"


@pytest.fixture
def watch(tmp_path) -> Watch:
    return Watch(tmp_path)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# ------------------------------------------------------------------------------------------------------------------
# Bundles: file names, verification, values
# ------------------------------------------------------------------------------------------------------------------

@pytest.fixture
def bundle_copy(bundle_8da4w, tmp_path) -> Path:
    return Path(shutil.copytree(bundle_8da4w, tmp_path / "bundle"))


def _set(path: list, value):
    def edit(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _load(bundle: Path):
    from megrez_mobile import Bundle

    return Bundle.load(bundle)


def _inspect(bundle: Path):
    result = CliRunner().invoke(cli, ["inspect", str(bundle)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "files verified" not in result.output
    raise BundleError(result.output)  # the CLI printed the typed error; re-raise it for the common assertion


def _profile_copy_plan(bundle: Path):
    from megrez_mobile.harness.remote import bundle_files

    return bundle_files(bundle, read_manifest(bundle))


def _validate_cli(bundle: Path):
    result = CliRunner().invoke(cli, ["validate", str(bundle), "--reference", str(bundle)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    raise BundleError(result.output)


READERS = {"Bundle.load": _load, "inspect": _inspect, "profile ssh/adb copy plan": _profile_copy_plan,
           "validate": _validate_cli}

ESCAPES = {
    "parent path": (["program", "file", "file"], "../canary.txt"),
    "nested parent path": (["tokenizer", "file"], "sub/../../canary.txt"),
    "absolute path": (["program", "file", "file"], "CANARY"),  # replaced by the canary's absolute path
    "backslash path": (["tokenizer", "file"], "..\\canary.txt"),
}


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("escape", list(ESCAPES))
def test_manifest_file_names_never_leave_the_bundle(bundle_copy, watch, reader, escape):
    field, name = ESCAPES[escape]
    name = str(watch.canary) if name == "CANARY" else name
    _edit_json(bundle_copy / "manifest.json", _set(field, name))
    before = _snapshot(bundle_copy)
    with watch, pytest.raises(BundleError, match="not a plain file name"):
        READERS[reader](bundle_copy)
    watch.assert_untouched()
    assert _snapshot(bundle_copy) == before


def test_a_symlink_out_of_the_bundle_is_refused(bundle_copy, watch):
    (bundle_copy / "tokenizer.json").unlink()
    (bundle_copy / "tokenizer.json").symlink_to(watch.canary)
    with watch, pytest.raises(BundleError, match="symbolic link"):
        _load(bundle_copy)
    watch.assert_untouched()


def test_verification_and_loading_use_the_same_files(bundle_copy, tmp_path, watch):
    """A tampered model.pte cannot hide behind a manifest that points verification at a pristine copy."""
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    shutil.copy(bundle_copy / "model.pte", pristine / "model.pte")
    with open(bundle_copy / "model.pte", "r+b") as f:  # tamper with the program that would be loaded
        f.seek(-64, os.SEEK_END)
        f.write(b"\0" * 64)
    _edit_json(bundle_copy / "manifest.json", _set(["program", "file", "file"], "../pristine/model.pte"))
    with watch, pytest.raises(BundleError, match="not a plain file name"):
        _load(bundle_copy)
    assert str((pristine / "model.pte").resolve()) not in watch.opened
    # Put the name back: the tampered file itself is what is verified, and it fails.
    _edit_json(bundle_copy / "manifest.json", _set(["program", "file", "file"], "model.pte"))
    with pytest.raises(BundleError, match="model.pte: sha256 differs"):
        _load(bundle_copy)


BAD_MANIFEST_VALUES = {
    "max_context as a string": (["context", "max_context"], "4096", "context: max_context must be an integer"),
    "negative file size": (["program", "file", "bytes"], -1, "program.file: bytes is -1"),
    "sha256 not hex": (["tokenizer", "sha256"], "zz" * 32, "tokenizer: sha256 must be 64"),
    "methods not a list": (["program", "methods"], {"a": 1}, "program.methods must be a non-empty list"),
    "stop ids as strings": (["front_end", "stop_ids"], ["<|eos|>"], "front_end: stop_ids\\[0\\] must be an integer"),
    "no stop ids": (["front_end", "stop_ids"], [], "stop_ids is empty"),
    "patch size zero": (["front_end", "preprocessor_config", "patch_size"], 0, "patch_size is 0"),
    "sampling rate absurd": (["front_end", "preprocessor_config", "sampling_rate"], 10**12, "sampling_rate"),
    "hop length zero": (["front_end", "preprocessor_config", "hop_length"], 0, "hop_length is 0"),
    "recipe backend unknown": (["recipe", "backend"], "tpu", "recipe: backend is 'tpu'"),
    "recipe rules garbage": (["recipe", "rules"], [1, 2], "rules\\[0\\] must be a mapping"),
    "surrogate in system prompt": (["front_end", "default_system_prompt"], "\udcff", "not valid Unicode"),
    "schema version": (["schema_version"], 99, "schema_version 99"),
    "segment bound over context": (["context", "max_seq_len"], 10**9, "max_seq_len is 1000000000, outside"),
}


@pytest.mark.parametrize("case", list(BAD_MANIFEST_VALUES))
def test_malformed_manifest_values_are_named(bundle_copy, watch, case):
    field, value, match = BAD_MANIFEST_VALUES[case]
    _edit_json(bundle_copy / "manifest.json", _set(field, value))
    with watch, pytest.raises(BundleError, match=match) as caught:
        read_manifest(bundle_copy)
    assert "manifest.json" in str(caught.value)
    watch.assert_untouched()


@pytest.mark.parametrize("content, match", [
    (_nested(100_000).encode(), "nested too deeply"),
    (_nested(40).encode(), "nested more than 32 levels"),
    (b'{"schema_version": NaN}', "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"schema_version": 1, "context": ' + b"9" * 5000 + b"}", "not valid JSON"),
])
def test_malformed_manifest_documents(bundle_copy, content, match):
    (bundle_copy / "manifest.json").write_bytes(content)
    with pytest.raises(BundleError, match=match):
        read_manifest(bundle_copy)


def test_a_context_the_program_was_not_built_for_is_refused_at_load(bundle_copy):
    def edit(data):  # consistent inside the manifest, but not what the program holds
        data["context"]["max_context"] = 8192
        data["program"]["constants"]["get_max_context_len"] = 8192
    _edit_json(bundle_copy / "manifest.json", edit)
    with pytest.raises(BundleError, match="context.max_context is 8192 but .*model.pte was built for 4096"):
        _load(bundle_copy)


# ------------------------------------------------------------------------------------------------------------------
# Checkpoints: the index, config.json, preprocessor_config.json
# ------------------------------------------------------------------------------------------------------------------

@pytest.fixture
def checkpoint_copy(tiny_checkpoint, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


def _from_pretrained(checkpoint: Path):
    from megrez_mobile import MegrezOmni

    return MegrezOmni.from_pretrained(checkpoint)


def _export(checkpoint: Path):
    from megrez_mobile import export_bundle

    return export_bundle(checkpoint, "xnnpack-8da4w", checkpoint.parent / "out")


@pytest.mark.parametrize("loader", [_from_pretrained, _export], ids=["from_pretrained", "export"])
@pytest.mark.parametrize("shard", ["../canary.txt", "ABSOLUTE", "sub/model.safetensors"])
def test_index_shard_names_never_leave_the_checkpoint(checkpoint_copy, watch, loader, shard):
    shard = str(watch.canary) if shard == "ABSOLUTE" else shard
    _edit_json(checkpoint_copy / "model.safetensors.index.json", _set(["weight_map", "llm.lm_head.weight"], shard))
    with watch, pytest.raises(CheckpointError, match="weight_map shard name is .*not a plain file name"):
        loader(checkpoint_copy)
    watch.assert_untouched()
    watch.assert_no_partials()
    assert not (checkpoint_copy.parent / "out").exists()


BAD_CONFIG_VALUES = {
    "layers 10^8": ({"num_hidden_layers": 10**8}, "num_hidden_layers is 100000000, outside"),
    "positions 10^12": ({"max_position_embeddings": 10**12}, "max_position_embeddings is 1000000000000"),
    "hidden size as text": ({"hidden_size": "2560"}, "hidden_size must be an integer"),
    "heads zero": ({"num_attention_heads": 0}, "num_attention_heads is 0"),
    "heads as bool": ({"num_key_value_heads": True}, "num_key_value_heads must be an integer"),
    "rope theta NaN-like": ({"rope_theta": -1.0}, "rope_theta is -1.0"),
    "vision config a list": ({"vision_config": [1]}, "vision_config must be a mapping"),
    "audio heads do not divide": ({"audio_config": {"n_state": 130, "n_head": 4}}, "n_state=130 must be a multiple"),
    "eos id text": ({"eos_token_id": "eos"}, "eos_token_id"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIG_VALUES))
def test_malformed_config_values_are_named_fast(checkpoint_copy, case):
    change, match = BAD_CONFIG_VALUES[case]

    def edit(data):
        for key, value in change.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key].update(value)
            else:
                data[key] = value
    _edit_json(checkpoint_copy / "config.json", edit)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=match) as caught:
        _from_pretrained(checkpoint_copy)
    assert time.perf_counter() - start < 5, "an absurd value must be refused before any work"
    assert "config.json" in str(caught.value)


@pytest.mark.parametrize("change, match", [
    ({"patch_size": 0}, "patch_size is 0"),
    ({"sampling_rate": 0}, "sampling_rate is 0"),
    ({"hop_length": "160"}, "hop_length must be an integer"),
    ({"chunk_length": -30}, "chunk_length is -30"),
    ({"max_slice_nums": 10**9}, "max_slice_nums is 1000000000"),
    ({"image_feature_size": 1.5}, "image_feature_size must be an integer"),
    ({"unk": ""}, "marker string"),
])
def test_malformed_preprocessor_config_values_are_named(checkpoint_copy, change, match):
    _edit_json(checkpoint_copy / "preprocessor_config.json", lambda data: data.update(change))
    with pytest.raises(CheckpointError, match=match) as caught:
        PreprocessorConfig.from_pretrained(checkpoint_copy)
    assert "preprocessor_config.json" in str(caught.value)


def test_deeply_nested_config_is_refused(checkpoint_copy):
    (checkpoint_copy / "config.json").write_text(_nested(200_000))
    with pytest.raises(CheckpointError, match="config.json is nested too deeply"):
        MegrezConfig.from_pretrained(checkpoint_copy)


# ------------------------------------------------------------------------------------------------------------------
# Recipes and devices files (YAML)
# ------------------------------------------------------------------------------------------------------------------

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9))


def _load_recipe(path: Path):
    from megrez_mobile.export.recipe import Recipe

    return Recipe.load(path)


def _load_devices(path: Path):
    from megrez_mobile.harness.devices import load_devices_file

    return load_devices_file(path)


YAML_READERS = {"recipe": (_load_recipe, RecipeError), "devices file": (_load_devices, DeviceError)}


@pytest.mark.parametrize("reader", list(YAML_READERS))
@pytest.mark.parametrize("content, match", [
    (ALIAS_BOMB.encode(), "anchors and aliases"),
    (_nested(100_000).encode(), "nested too deeply|not valid YAML"),
    (_nested(40).encode(), "nested more than 32 levels"),
    (b"backend: \xff\xfe\n", "not UTF-8"),
    (b"{unclosed: [", "not valid YAML"),
])
def test_hostile_yaml_is_refused_fast(tmp_path, reader, content, match):
    load, error = YAML_READERS[reader]
    path = tmp_path / "file.yaml"
    path.write_bytes(content)
    start = time.perf_counter()
    with pytest.raises(error, match=match):
        load(path)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("options, match", [
    ("rules: [{pattern: 'llm.*', scheme: 8da4w, group_size: '32'}]", "group_size must be an integer"),
    ("rules: [{pattern: 'llm.*', scheme: 8da4w, group_size: -32}]", "group_size is -32"),
    ("options: {max_context: 1000000000000}", "max_context is 1000000000000"),
    ("options: {max_seq_len: 0}", "max_seq_len is 0"),
    ("fidelity: {decoder_min_top1: .nan}", "decoder_min_top1 must be a finite number"),
    ("fidelity: 3", "fidelity must be a mapping"),
    ("rules: 7", "rules must be a list"),
    ("name: [1]", "name must be a string"),
])
def test_malformed_recipe_values_are_named(tmp_path, options, match):
    path = tmp_path / "r.yaml"
    path.write_text(f"backend: xnnpack\n{options}\n")
    with pytest.raises(RecipeError, match=match) as caught:
        _load_recipe(path)
    assert "r.yaml" in str(caught.value)


# ------------------------------------------------------------------------------------------------------------------
# Text, sampling, output paths (the CLI and the API)
# ------------------------------------------------------------------------------------------------------------------

def test_non_utf8_argv_is_a_typed_error(tiny_checkpoint):
    bad = os.fsdecode(b"caf\xe9 au lait")  # what a Latin-1 terminal hands Python
    result = CliRunner().invoke(cli, ["run", str(tiny_checkpoint), "-p", bad, "--max-new-tokens", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "ChatFormatError: messages[0]['content']['text'] is not valid Unicode" in result.output


def test_non_utf8_api_text_is_a_typed_error(tiny_model):
    with pytest.raises(ChatFormatError, match="not valid Unicode"):
        tiny_model.chat([{"role": "user", "content": "\udce9t\udce9"}], max_new_tokens=2)


def test_chat_reports_an_undecodable_line_and_carries_on(bundle_8da4w):
    script = b"caf\xe9\nhello\n/quit\n"
    proc = subprocess.run([str(Path(sys.executable).parent / "megrez-mobile"), "chat", str(bundle_8da4w),
                           "--max-new-tokens", "3"], input=script, capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"})
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"line 1 is not valid UTF-8" in proc.stderr
    assert proc.stdout.count(b"assistant> ") == 1  # the good line was answered
    assert b"[" in proc.stderr and b"new tokens" in proc.stderr


@pytest.mark.parametrize("settings", [{"temperature": float("nan")}, {"temperature": -1.0}, {"top_p": 0.0},
                                      {"top_k": 2.5}, {"repetition_penalty": float("inf")}])
def test_invalid_sampling_settings_are_typed(tiny_model, settings):
    with pytest.raises(InputError, match="invalid sampling settings"):
        tiny_model.chat([{"role": "user", "content": "hi"}], sampling=True, max_new_tokens=2, **settings)


@pytest.mark.parametrize("flag, value", [("--temperature", "nan"), ("--temperature", "-1"), ("--max-new-tokens", "0")])
def test_invalid_sampling_settings_on_the_command_line(tiny_checkpoint, flag, value):
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["run", str(tiny_checkpoint), "-p", "hi", "--sampling", flag, value])
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    assert flag.lstrip("-").split("-")[0] in result.output.lower()
    assert time.perf_counter() - start < 5  # refused before the model is loaded


@pytest.mark.parametrize("flag", ["--json", "--html"])
def test_profile_output_in_a_missing_folder_fails_before_profiling(bundle_8da4w, tmp_path, flag):
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["profile", str(bundle_8da4w), "--quick", flag,
                                      str(tmp_path / "no-such-folder" / "run.out")])
    assert result.exit_code == 1 and "OutputPathError" in result.output and "does not exist" in result.output
    assert time.perf_counter() - start < 5


def test_validate_output_in_a_missing_folder_fails_before_validating(bundle_8da4w, tiny_checkpoint, tmp_path):
    result = CliRunner().invoke(cli, ["validate", str(bundle_8da4w), "--reference", str(tiny_checkpoint),
                                      "--json", str(tmp_path / "missing" / "r.json")])
    assert result.exit_code == 1 and "OutputPathError" in result.output


def test_a_finished_result_is_never_lost(tmp_path, monkeypatch):
    from megrez_mobile.cli.common import save_output

    target = tmp_path / "out.json"
    real_replace = os.replace

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OutputPathError, match="saved to (\\S+) instead") as caught:
        save_output(target, '{"finished": true}', "the run JSON")
    monkeypatch.setattr(os, "replace", real_replace)
    rescue = Path(str(caught.value).split("saved to ")[1].split(" instead")[0])
    assert json.loads(rescue.read_text()) == {"finished": True}
    assert not list(tmp_path.glob(".*partial*"))
    rescue.unlink()


@pytest.mark.parametrize("under", ["file", "file/sub/dir"])
def test_export_under_a_regular_file_fails_before_any_work(tiny_checkpoint, tmp_path, under):
    (tmp_path / "file").write_text("not a folder")
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["export", str(tiny_checkpoint), "-o", str(tmp_path / under)])
    assert result.exit_code in (1, 2) and "Traceback" not in result.output  # 2: click's own check of -o
    assert "is a file" in result.output
    assert time.perf_counter() - start < 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# ------------------------------------------------------------------------------------------------------------------
# Media and numbers: no silent truncation, no silent garbage
# ------------------------------------------------------------------------------------------------------------------

def _wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, 0.1 * np.sin(np.arange(int(16000 * seconds)) / 7.0).astype(np.float32), 16000, format="WAV",
             subtype="PCM_16")
    return buf.getvalue()


@pytest.mark.parametrize("keep", [0.99, 0.5, 0.1])
def test_a_wav_shorter_than_its_header_is_an_error(tmp_path, keep):
    from megrez_mobile.processing.audio import load_audio

    data = _wav(2.0)
    cut = data[:int(len(data) * keep)]
    with pytest.raises(AudioError, match="WAV file is truncated"):
        load_audio(cut)
    (tmp_path / "cut.wav").write_bytes(cut)
    with pytest.raises(AudioError, match="cut.wav: the WAV file is truncated"):
        load_audio(tmp_path / "cut.wav")
    assert load_audio(data).shape == (32000,)  # the whole file still reads


def test_nan_weights_stop_generation_with_a_clear_error(checkpoint_copy):
    import torch
    from safetensors.torch import load_file, save_file

    index = json.loads((checkpoint_copy / "model.safetensors.index.json").read_text())
    shard = checkpoint_copy / index["weight_map"]["llm.lm_head.weight"]
    tensors = load_file(str(shard))
    tensors["llm.lm_head.weight"] = torch.full_like(tensors["llm.lm_head.weight"], math.nan)
    save_file(tensors, str(shard), metadata={"format": "pt"})
    model = _from_pretrained(checkpoint_copy)
    pieces = []
    with pytest.raises(NumericalError, match="NaN/infinite logit"):
        model.chat([{"role": "user", "content": "hello"}], max_new_tokens=8, stream=pieces.append)
    assert pieces == []  # nothing like "!!!!" was printed first


# ------------------------------------------------------------------------------------------------------------------
# Classes that already held: keep them holding
# ------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, error", [
    (lambda p: p.build_inputs([{"role": "user", "content": {"image": b"GIF89a not really"}}]), ImageError),
    (lambda p: p.build_inputs([{"role": "user", "content": {"audio": b"\0" * 100}}]), AudioError),
    (lambda p: p.build_inputs([{"role": "robot", "content": "hi"}]), ChatFormatError),
    (lambda p: p.build_inputs("hi"), ChatFormatError),
    (lambda p: p.build_inputs([{"role": "user", "content": {"text": "hi", "video": "x.mp4"}}]), ChatFormatError),
])
def test_bad_media_and_messages_stay_typed(tiny_model, make, error):
    with pytest.raises(error):
        make(tiny_model.processor)


@pytest.mark.parametrize("spec", ["ssh:", "ssh:user@host:99999", "adb:bad serial", "usb", 42])
def test_bad_device_strings_stay_typed(spec):
    from megrez_mobile.harness.devices import parse_device

    with pytest.raises(DeviceError):
        parse_device(spec)


def test_every_error_here_is_a_megrez_error():
    for error in (AudioError, BundleError, ChatFormatError, CheckpointError, DeviceError, ImageError, InputError,
                  NumericalError, OutputPathError, RecipeError):
        assert issubclass(error, MegrezError)
