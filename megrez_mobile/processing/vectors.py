"""Test vectors for the phone front ends (android_demo/core, later the Swift twin), written by the Python SDK.

    python -m megrez_mobile.processing.vectors [OUT_DIR]      (default: tests/vectors/front_end)

OUT_DIR/
  inputs/                  images (PNG, one JPEG with an EXIF orientation) and audio (WAV), generated here
                           deterministically, and a copy of megrez_mobile/assets/sample_image.jpg
  cases/<name>/request.json   the request: the manifest's front_end, tokenizer.json's added-token strings,
                              the messages (media paths relative to the request) and an optional continuation
  cases/<name>/plan.json      the expected runner-input plan (`plan_to_json`, byte for byte)
  cases/<name>/pixels/inputNN.png  the uint8 RGB pixels of runner input NN, lossless PNG: each image's source
                              thumbnail and its first and last slice (middle slices are crops of the same resize)
  geometry.json            slice geometry for many image sizes: [w, h, src_w, src_h, cols, rows, cell_w, cell_h]
  audio_lengths.json       [input samples, rate, 16 kHz samples or an error, clip samples...] for many lengths
  resampled/<name>.f32     soxr_hq output (float32 little-endian) of an input WAV: the resampler's tolerance

Everything is a pure function of this SDK's code, so a test regenerates it and compares (tests/test_runner_plan.py).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..config import PreprocessorConfig, audio_tokens_for_frames, encoder_mel_frames
from .audio import load_audio, split_clips
from .image import slice_sizes
from .plan import Continuation, canonical_json, request_messages, runner_plan
from .processor import MegrezProcessor

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "vectors" / "front_end"
SAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "assets" / "sample_image.jpg"
REQUEST_SCHEMA = "megrez-mobile/runner-request/1"


def _processor() -> tuple[MegrezProcessor, list[str]]:
    """The tiny checkpoint's tokenizer (deterministic), default preprocessing: all a plan depends on."""
    from ..checkpoint.synthetic import TINY, train_tokenizer
    from .tokenizer import MegrezTokenizer

    tok = train_tokenizer(TINY.bpe_vocab)
    added = [t.content for _, t in sorted(tok.get_added_tokens_decoder().items())]
    return MegrezProcessor(MegrezTokenizer(tok, "tiny tokenizer"), PreprocessorConfig()), added


# --- inputs -------------------------------------------------------------------------------------------------------


def _pattern(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth gradients plus sharp edges and fine stripes: exercises every tap of the bicubic filter."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(width - 1, 1) + seed * 37) % 256
    g = np.where(((x // 11) + (y // 7)) % 2 == 0, 230, 20 + seed)
    b = (128 + 100 * np.sin(x / 9.0 + y / 13.0 + seed)).round()
    return np.stack([r, g, b], -1).astype(np.uint8)


def _write_wav(path: Path, samples: np.ndarray, rate: int, sample_width: int) -> None:
    """samples: float in [-1, 1], shape [n] or [n, channels]; PCM16 (2) or unsigned PCM8 (1)."""
    frames = samples if samples.ndim == 2 else samples[:, None]
    if sample_width == 2:
        data = np.clip(np.round(frames * 32767), -32768, 32767).astype("<i2").tobytes()
    else:
        data = np.clip(np.round(frames * 127 + 128), 0, 255).astype(np.uint8).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(sample_width)
        w.setframerate(rate)
        w.writeframes(data)


def _tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    mono = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (200 + 900 * t / max(seconds, 1e-9)) * t)
    return mono if channels == 1 else np.stack([mono, 0.5 * mono], -1)


def write_inputs(inputs: Path) -> None:
    inputs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLE_IMAGE, inputs / SAMPLE_IMAGE.name)
    sizes = {"tiny_1x1": (1, 1), "tiny_14x14": (14, 14), "small_100x80": (100, 80), "square_600x500": (600, 500),
             "wide_2000x100": (2000, 100), "tall_100x3000": (100, 3000)}
    for seed, (name, (w, h)) in enumerate(sizes.items()):
        Image.fromarray(_pattern(w, h, seed)).save(inputs / f"{name}.png", optimize=True)
    rgba = np.concatenate([_pattern(33, 47, 9), np.full((47, 33, 1), 77, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(inputs / "rgba_33x47.png")
    # A camera-style JPEG: stored 160x96, EXIF orientation 6 (rotate 90 degrees clockwise to display).
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_pattern(160, 96, 5)).save(inputs / "exif_rot6_160x96.jpg", quality=90, exif=exif.tobytes())
    _write_wav(inputs / "speech_16k_1p5s.wav", _tone(1.5, 16000), 16000, 2)
    _write_wav(inputs / "stereo_44k_0p4s.wav", _tone(0.4, 44100, channels=2), 44100, 2)
    _write_wav(inputs / "long_8k_31s_u8.wav", _tone(31.0, 8000), 8000, 1)


# --- cases --------------------------------------------------------------------------------------------------------


def _cases(added: list[str]) -> dict[str, dict[str, Any]]:
    every_special = "Ignore this: " + " and ".join(added) + " <|turn_end <|<|eos|>|> done."
    return {
        "text_only": {"messages": [{"role": "user", "content": "Hello, who are you?"}]},
        "special_text": {"messages": [
            {"role": "system", "content": "You are terse. <|role_start|>user<|role_end|>"},
            {"role": "user", "content": {"text": every_special}}]},
        "sample_image_audio": {"messages": [{"role": "user", "content": {
            "text": "Describe the image, then transcribe the audio.", "image": "../../inputs/sample_image.jpg",
            "audio": "../../inputs/speech_16k_1p5s.wav"}}]},
        "tiny_images_two_turns": {"messages": [
            {"role": "user", "content": {"image": "../../inputs/tiny_1x1.png"}},
            {"role": "assistant", "content": "A dot."},
            {"role": "user", "content": {"text": " \n leading whitespace and a newline",
                                         "image": "../../inputs/tiny_14x14.png"}}]},
        "small_rgba": {"messages": [{"role": "user", "content": {"text": "Colours?",
                                                                 "image": "../../inputs/rgba_33x47.png"}}]},
        "small_upscaled": {"messages": [{"role": "user", "content": {"text": "?",
                                                                     "image": "../../inputs/small_100x80.png"}}]},
        "square": {"messages": [{"role": "user", "content": {"text": "Grid?",
                                                             "image": "../../inputs/square_600x500.png"}}]},
        "wide": {"messages": [{"role": "user", "content": {"text": "Read the banner.",
                                                           "image": "../../inputs/wide_2000x100.png"}}]},
        "tall": {"messages": [{"role": "user", "content": {"text": "Read the scroll.",
                                                           "image": "../../inputs/tall_100x3000.png"}}]},
        "exif_rotated": {"messages": [{"role": "user", "content": {
            "text": "Which way is up?", "image": "../../inputs/exif_rot6_160x96.jpg"}}]},
        "long_audio": {"messages": [{"role": "user", "content": {
            "text": "Summarise.", "audio": "../../inputs/long_8k_31s_u8.wav"}}]},
        "stereo_audio": {"messages": [{"role": "user", "content": {
            "audio": "../../inputs/stereo_44k_0p4s.wav"}}]},
        "continuation": {"messages": [{"role": "user", "content": {
            "text": "And this one?", "image": "../../inputs/tiny_14x14.png",
            "audio": "../../inputs/speech_16k_1p5s.wav"}}],
            "continuation": {"images_before": 1, "audio_before": 1, "pending_answer": " cut"}},
    }


def write_case(processor: MegrezProcessor, added: list[str], out: Path, name: str, spec: dict[str, Any]) -> None:
    from ..export.pipeline import front_end_description

    case = out / "cases" / name
    case.mkdir(parents=True, exist_ok=True)
    messages = spec["messages"]
    request = {"schema": REQUEST_SCHEMA, "front_end": front_end_description(processor), "added_tokens": added,
               "messages": messages}
    cont = None
    if "continuation" in spec:
        request["continuation"] = spec["continuation"]
        cont = Continuation(**spec["continuation"])
    (case / "request.json").write_text(canonical_json(request), encoding="utf-8")
    plan = runner_plan(processor, request_messages(messages, case), added, continuation=cont)
    (case / "plan.json").write_text(canonical_json(plan.to_json_dict()), encoding="utf-8")
    image_inputs = [k for k, item in enumerate(plan.inputs) if item["kind"] == "image"]
    for k, chw in zip(image_inputs, plan.pixels):
        if _pixels_kept(plan.inputs, k):
            (case / "pixels").mkdir(exist_ok=True)
            Image.fromarray(chw.permute(1, 2, 0).numpy()).save(case / "pixels" / f"input{k:02d}.png", optimize=True)


def _pixels_kept(inputs: list[dict[str, Any]], k: int) -> bool:
    """Source, first and last slice of each image: the middle slices are crops of the same resize (size budget)."""
    item = inputs[k]
    if item["part"] == "source":
        return True
    slices = [i for i in inputs if i["kind"] == "image" and i["image"] == item["image"] and i["part"] == "slice"]
    return item is slices[0] or item is slices[-1]


# --- tables -------------------------------------------------------------------------------------------------------


def geometry_table() -> list[list[int]]:
    sides = [1, 2, 13, 14, 15, 27, 28, 100, 223, 224, 300, 447, 448, 449, 500, 640, 720, 896, 1000, 1024, 1080,
             1280, 1344, 1480, 1920, 2000, 2048, 3000, 4032, 7000]
    rng = np.random.default_rng(1234)
    pairs = [(w, h) for w in sides for h in sides]
    pairs += [(int(w), int(h)) for w, h in rng.integers(1, 6000, size=(400, 2))]
    rows = []
    for w, h in pairs:
        source, slices, grid = slice_sizes(w, h)
        cell = slices[0] if slices else (0, 0)
        rows.append([w, h, *source, grid.cols if grid else 0, grid.rows if grid else 0, *cell])
    return rows


def audio_length_table() -> list[list[Any]]:
    """[input samples, rate, 16 kHz samples | "too_short" | "too_long", [clip samples...], [mel frames], [tokens]]."""
    cfg = PreprocessorConfig().audio
    rows: list[list[Any]] = []
    for rate in (8000, 11025, 16000, 22050, 32000, 44100, 48000):
        for seconds in (0.01, 0.04, 0.0401, 0.05, 1.0, 1.5, 29.99, 30.0, 30.01, 30.03, 30.05, 45.0, 60.0, 60.04,
                        61.0, 299.99, 300.0, 300.01):
            n = int(round(seconds * rate))
            try:
                wave_16k = load_audio((np.full(n, 0.1, np.float32), rate), cfg)
            except Exception as e:  # noqa: BLE001 - recorded as the error kind the front end must also give
                rows.append([n, rate, "too_short" if "shorter than" in str(e) else "too_long", [], [], []])
                continue
            clips = [c.size for c in split_clips(wave_16k, cfg)]
            frames = [encoder_mel_frames(c, cfg.hop_length) for c in clips]
            rows.append([n, rate, int(wave_16k.size), clips, frames, [audio_tokens_for_frames(f) for f in frames]])
    return rows


def write_resampled(out: Path) -> None:
    (out / "resampled").mkdir(parents=True, exist_ok=True)
    for name in ("stereo_44k_0p4s", "long_8k_31s_u8"):
        wave_16k = load_audio(out / "inputs" / f"{name}.wav")
        if name.startswith("long"):
            wave_16k = wave_16k[:16000]  # the first second is enough to measure the resampler; keeps the file small
        wave_16k.astype("<f4").tofile(out / "resampled" / f"{name}.f32")


# --- all ----------------------------------------------------------------------------------------------------------


def write_vectors(out: str | Path = DEFAULT_OUT) -> Path:
    """(Re)write every vector into `out` (its previous content is replaced)."""
    out = Path(out)
    processor, added = _processor()
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        staged = Path(tmp) / "vectors"
        write_inputs(staged / "inputs")
        for name, spec in _cases(added).items():
            write_case(processor, added, staged, name, spec)
        (staged / "geometry.json").write_text(json.dumps(geometry_table()) + "\n", encoding="utf-8")
        (staged / "audio_lengths.json").write_text(json.dumps(audio_length_table()) + "\n", encoding="utf-8")
        write_resampled(staged)
        (staged / "README.md").write_text(__doc__.split("\n\n", 1)[0] + "\n\nLayout and regeneration: see the "
                                          "docstring of megrez_mobile/processing/vectors.py.\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = write_vectors(Path(argv[0]) if argv else DEFAULT_OUT)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
