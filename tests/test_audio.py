"""Audio front end: decoding, clip policy, and log-mel parity with transformers' WhisperFeatureExtractor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import WhisperFeatureExtractor
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from megrez_mobile.config import AudioProcessingConfig, audio_tokens_for_frames, encoder_mel_frames
from megrez_mobile.errors import AudioError
from megrez_mobile.processing import audio as audio_mod
from megrez_mobile.processing.audio import LogMelSpectrogram, load_audio, log_mel, split_clips

SR = 16000
# Measured max |ours - WhisperFeatureExtractor| over the clips below: 2.4e-5 (log-mel values span about [-1.5, 1.5]).
# float32 rounding in the 400-tap DFT sums is relative to the frame energy, so the log10 of the tiniest mel powers
# amplifies it; the max-8 floor bounds how tiny a power can be (1e-8 of the peak), which bounds the error. 1e-4 keeps
# ~4x margin; the transformers torch path itself is 1.7e-5 away from its own float64 numpy path.
MEL_TOL = 1e-4


@pytest.fixture(scope="module")
def extractor() -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor(feature_size=128, sampling_rate=SR, hop_length=160, chunk_length=30, n_fft=400)


@pytest.fixture(scope="module")
def mp3_wave(shared_data: Path) -> np.ndarray:
    return load_audio(shared_data / "sample_audio.mp3")


def _float64_reference(wave: np.ndarray, extractor: WhisperFeatureExtractor) -> np.ndarray:
    """Whisper log-mel in float64 numpy (transformers' public audio_utils), as an exact ground truth."""
    x = np.zeros(30 * SR)
    x[: len(wave)] = wave.astype(np.float32)
    spec = spectrogram(x, window_function(400, "hann"), frame_length=400, hop_length=160, power=2.0,
                       mel_filters=extractor.mel_filters, log_mel="log10")[:, :-1]
    spec = np.maximum(spec, spec.max() - 8.0)
    return (spec + 4.0) / 4.0


def _clips(mp3: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(12345) / SR  # odd length, not a multiple of the hop
    chirp = 0.5 * np.sin(2 * np.pi * (100 * t + 3000 * t**2)) + 0.01 * rng.standard_normal(t.size)
    full = np.tile(mp3, 30 * SR // mp3.size + 1)[: 30 * SR]  # exactly one clip: the right reflect pad sees signal
    short = 0.2 * np.sin(2 * np.pi * 440 * np.arange(int(0.05 * SR)) / SR)
    # Quiet 30 s with a loud burst in the last 10 ms: the peak sits in the frames Whisper drops / barely keeps, so this
    # checks that the max-8 floor uses exactly the kept 3000 frames.
    loud_end = 1e-3 * rng.standard_normal(30 * SR)
    loud_end[-160:] += 0.9 * np.sin(2 * np.pi * 2000 * np.arange(160) / SR)
    return {"mp3": mp3, "chirp": chirp.astype(np.float32), "30s": full, "0.05s": short.astype(np.float32),
            "30s loud end": loud_end.astype(np.float32)}


def test_log_mel_matches_whisper_feature_extractor(mp3_wave, extractor):
    for name, wave in _clips(mp3_wave).items():
        frames = encoder_mel_frames(wave.size)
        ours = log_mel(wave).numpy()
        assert ours.shape == (128, frames) and frames % 2 == 0, name
        assert ours.dtype == np.float32
        hf = extractor(wave, sampling_rate=SR, return_tensors="np")["input_features"][0][:, :frames]
        assert np.abs(ours - hf).max() <= MEL_TOL, name
        if wave.size < 30 * SR:  # the float64 reference loops over 3001 frames in Python: keep it to short clips
            assert np.abs(ours - _float64_reference(wave, extractor)[:, :frames]).max() <= MEL_TOL, name
    assert log_mel(_clips(mp3_wave)["30s"]).shape == (128, 3000)
    # torch input and float64 input give the same features
    chirp = _clips(mp3_wave)["chirp"]
    assert torch.equal(log_mel(torch.from_numpy(chirp)), log_mel(chirp.astype(np.float64)))


def test_mel_filterbank_equals_transformers():
    ours = LogMelSpectrogram().mel_filters.double().numpy()
    theirs = mel_filter_bank(num_frequency_bins=201, num_mel_filters=128, min_frequency=0.0, max_frequency=8000.0,
                             sampling_rate=SR, norm="slaney", mel_scale="slaney").T
    assert ours.shape == theirs.shape == (128, 201)
    assert np.abs(ours - theirs).max() <= 1e-6
    assert ours.max() > 1e-3  # not trivially zero


def test_log_mel_rejects_more_than_one_clip():
    with pytest.raises(AudioError, match="split_clips"):
        log_mel(np.zeros(30 * SR + 1, np.float32))
    with pytest.raises(AudioError, match="1-D"):
        log_mel(np.zeros((2, 1000), np.float32))


def test_mp3_and_m4a_agree(shared_data, mp3_wave):
    m4a = load_audio(shared_data / "sample_audio.m4a")
    for wave in (mp3_wave, m4a):
        assert wave.dtype == np.float32 and wave.ndim == 1
        assert abs(wave.size / SR - 1.5) < 0.05  # 1.5 s of speech (both codecs pad to whole frames: 1.536 s)
    assert abs(mp3_wave.size - m4a.size) <= 160  # within one mel hop (measured: equal, both trim encoder delay)
    n = min(mp3_wave.size, m4a.size)
    assert np.corrcoef(mp3_wave[:n], m4a[:n])[0, 1] > 0.98  # measured 0.995: aligned, no priming offset
    a, b = log_mel(mp3_wave[:n]).numpy(), log_mel(m4a[:n]).numpy()
    # Two different lossy codecs: measured mean |diff| 0.032 (max 0.69, in near-silent bins the codecs quantise away)
    # and correlation 0.9915. Thresholds keep ~1.5x margin on the mean and still fail for a misaligned decode:
    # delaying the m4a by only 5 ms (half a hop) measured mean 0.061 and correlation 0.975.
    assert np.abs(a - b).mean() < 0.05
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_soundfile_formats_resample_and_downmix(tmp_path, fmt):
    rate, freq = 44100, 1000.0
    t = np.arange(rate) / rate  # 1 s
    left = 0.5 * np.sin(2 * np.pi * freq * t)
    stereo = np.stack([left, 0.5 * left], axis=1)  # the average is 0.375 * sin
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, stereo, rate)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - SR) <= 2
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    peak_hz = spectrum.argmax() * SR / wave.size
    assert abs(peak_hz - freq) <= 3
    mid = wave[2000:-2000]
    assert abs(np.sqrt(np.mean(mid**2)) - 0.375 / np.sqrt(2)) < 0.02  # channels averaged, not summed or dropped


def test_bytes_tuple_and_int16_inputs(shared_data, mp3_wave):
    for name in ("sample_audio.mp3", "sample_audio.m4a"):
        path = shared_data / name
        assert np.array_equal(load_audio(path.read_bytes()), load_audio(path))
        assert np.array_equal(load_audio(str(path)), load_audio(path))
    assert np.array_equal(load_audio(np.asarray(mp3_wave, np.float64)), mp3_wave)

    t = np.arange(48000) / 48000
    sine = (0.25 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    resampled = load_audio((sine, 48000))
    assert resampled.size == SR
    peak_hz = np.abs(np.fft.rfft(resampled)).argmax() * SR / resampled.size
    assert abs(peak_hz - 440) <= 2
    stereo = load_audio((np.stack([sine, sine], axis=1), 48000))
    np.testing.assert_allclose(stereo, resampled, atol=1e-6)

    pcm = np.array([0, 16384, -32768, 32767] * 1000, dtype=np.int16)
    scaled = load_audio(pcm)
    np.testing.assert_array_equal(scaled[:4], np.array([0.0, 0.5, -1.0, 32767 / 32768], np.float32))


def _expect_error(audio, *needles, config=AudioProcessingConfig()):
    with pytest.raises(AudioError) as info:
        load_audio(audio, config)
    for needle in needles:
        assert needle in str(info.value)
    return str(info.value)


def test_bad_files(tmp_path, shared_data):
    _expect_error(tmp_path / "missing.wav", "missing.wav", "not found")

    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio\n" * 100)
    _expect_error(text, "notes.mp3", "not a readable audio file")

    for name in ("sample_audio.mp3", "sample_audio.m4a"):
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes((shared_data / name).read_bytes()[:3000])
        _expect_error(cut, cut.name)

    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), SR)
    _expect_error(empty, "empty.wav", "no samples")

    zero = tmp_path / "zero.ogg"
    zero.write_bytes(b"")
    _expect_error(zero, "zero.ogg", "empty")
    _expect_error(b"", "audio bytes")
    _expect_error(np.random.default_rng(0).bytes(4000), "audio bytes")
    _expect_error(tmp_path, str(tmp_path), "not a regular file")


def test_playlists_cannot_pull_in_other_files(tmp_path, shared_data):
    # FFmpeg's HLS demuxer would happily open and decode any local file a playlist names (verified: without the
    # empty protocol whitelist this playlist decodes sample_audio.mp3). A user file must never read other files.
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.5,\n{shared_data / 'sample_audio.mp3'}\n"
                        "#EXT-X-ENDLIST\n")
    _expect_error(playlist, "list.m3u8")


def test_bad_arrays():
    rng = np.random.default_rng(0)
    noisy = rng.standard_normal(SR).astype(np.float32)
    noisy[100] = np.nan
    _expect_error(noisy, "audio array", "NaN")
    _expect_error((np.full(SR, np.inf, np.float32), 48000), "audio array", "NaN or infinite")
    _expect_error(np.zeros(0, np.float32), "audio array", "no samples")
    _expect_error(np.zeros(300, np.float32), "audio array", "shorter than")  # 0.019 s < 0.04 s
    _expect_error(np.zeros((SR, 2), np.float32), "audio array", "(array, sample_rate)")
    _expect_error(np.zeros(SR, np.int32), "audio array", "dtype int32")
    _expect_error((np.zeros((2, SR), np.float32), SR), "audio array", "array.T")
    _expect_error((np.zeros(SR, np.float32), 0), "sample_rate")
    _expect_error(np.zeros(3 * SR, np.float32), "audio array", "longer than", config=AudioProcessingConfig(
        max_audio_seconds=2))
    assert load_audio(np.zeros(640, np.float32)).size == 640  # exactly min_audio_seconds is accepted


def test_too_long_files_are_refused_without_full_decode(tmp_path, shared_data, monkeypatch):
    limit = AudioProcessingConfig(max_audio_seconds=2)
    long_wav = tmp_path / "long.wav"
    sf.write(long_wav, np.zeros(3 * 44100), 44100)
    _expect_error(long_wav, "long.wav", "3.0 s, longer than the 2 s limit", config=limit)

    one_s = AudioProcessingConfig(max_audio_seconds=1)  # the samples are 1.536 s
    _expect_error(shared_data / "sample_audio.mp3", "sample_audio.mp3", "is 1.5 s", config=one_s)  # declared
    _expect_error(shared_data / "sample_audio.m4a", "sample_audio.m4a", "is 1.5 s", config=one_s)  # declared
    # A header that lies (or declares nothing) is caught by the decode loop, which stops right past the limit.
    monkeypatch.setattr(audio_mod, "_declared_seconds", lambda container, stream: None)
    msg = _expect_error(shared_data / "sample_audio.m4a", "sample_audio.m4a", "decodes to more than", config=one_s)
    assert "1.0 s" in msg  # stopped within one AAC frame (21 ms) of the limit, not at the full 1.5 s


def test_split_clips_and_token_counts():
    def lengths(seconds: float) -> list[int]:
        return [c.size for c in split_clips(np.zeros(round(seconds * SR), np.float32))]

    assert lengths(65) == [30 * SR, 30 * SR, 5 * SR]
    assert lengths(60.01) == [30 * SR, 30 * SR]  # 10 ms remainder < min_audio_seconds after full clips: dropped
    assert lengths(60) == [30 * SR, 30 * SR]
    assert lengths(30.04) == [30 * SR, 640]  # exactly the minimum is kept
    assert lengths(12) == [12 * SR]
    assert lengths(0.01) == [160]  # a lone short clip is not dropped (load_audio refuses it earlier)
    wave = np.arange(65 * SR, dtype=np.float32)
    assert np.array_equal(np.concatenate(split_clips(wave)), wave)  # consecutive, nothing lost or reordered
    with pytest.raises(AudioError):
        split_clips(np.zeros(0, np.float32))
    assert encoder_mel_frames(30 * SR) == 3000
    assert audio_tokens_for_frames(encoder_mel_frames(30 * SR)) == 752
    assert audio_tokens_for_frames(encoder_mel_frames(SR)) == 27


def test_log_mel_module_exports_with_dynamic_length():
    from torch.export import Dim, export

    module = LogMelSpectrogram().eval()
    n = Dim("num_samples", min=1600, max=30 * SR)
    program = export(module, (torch.zeros(SR),), dynamic_shapes={"waveform": {0: n}})
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any("stft" in op or "fft" in op or "complex" in op for op in ops), ops
    exported = program.module()
    rng = np.random.default_rng(1)
    for length in (12345, 30 * SR):
        wave = torch.from_numpy((0.1 * rng.standard_normal(length)).astype(np.float32))
        with torch.no_grad():
            want, got = module(wave), exported(wave)
        assert got.shape == (1, 128, encoder_mel_frames(length))
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
