"""Audio front end: decode any common file to 16 kHz mono, split it into encoder clips, compute the Whisper log-mel.

Product decision (long audio): the audio encoder's positional table holds one 30 s clip (`chunk_length`), so audio
longer than that is split into consecutive clips of exactly `chunk_length` seconds plus a remainder. Each clip is
encoded separately by the model and gets its own placeholder span in the prompt (30 s -> 752 LLM positions). Audio
longer than `max_audio_seconds` is refused before it is decoded in full: it could never fit a 4K context anyway.

`LogMelSpectrogram` is written export-first: it is `torch.export`ed as an ExecuTorch method with a dynamic waveform
length, so it uses plain tensor ops only (no torch.stft, no complex tensors, no data-dependent Python control flow).
"""

from __future__ import annotations

import functools
import io
import math
import os
import struct
from pathlib import Path
from typing import Union

import av
import librosa
import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from ..config import AudioProcessingConfig, encoder_mel_frames
from ..errors import AudioError

AudioInput = Union[str, os.PathLike, bytes, np.ndarray, tuple[np.ndarray, int]]

__all__ = ["AudioInput", "load_audio", "LogMelSpectrogram", "log_mel", "split_clips"]

_DEFAULT = AudioProcessingConfig()
# Sample rates outside this range are a corrupt or hostile header, not audio (and would blow up the memory bound).
_MIN_RATE, _MAX_RATE = 1000, 384_000
# A decoder stream shorter than this fraction of its declared length was cut off (truncated download, partial copy).
_TRUNCATED_FRACTION = 0.9
# libsndfile reports SF_COUNT_MAX when it cannot tell the length; treat anything this large as "unknown".
_UNKNOWN_FRAMES = 2**62
_BLOCK = 1 << 16
_HOW_TO_FIX = "Pass a wav, flac, ogg, mp3 or m4a file, its bytes, a 1-D float array at 16 kHz, or (array, sample_rate)."


# ----------------------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------------------


def load_audio(audio: AudioInput, config: AudioProcessingConfig = _DEFAULT) -> np.ndarray:
    """Decode/convert `audio` to a 1-D float32 mono waveform at `config.sampling_rate`.

    * path or bytes: wav/flac/ogg/mp3 via soundfile (libsndfile), everything else (m4a/aac/...) via PyAV (FFmpeg).
    * np.ndarray: already mono at `config.sampling_rate` (1-D float, or int16 scaled by 1/32768).
    * (array, sample_rate): resampled from `sample_rate`; 2-D arrays are (samples, channels) and get downmixed.

    Raises AudioError naming the input for missing/unreadable/truncated files, empty or non-finite audio, and audio
    shorter than `min_audio_seconds` or longer than `max_audio_seconds` (files are not decoded past that limit).
    """
    if isinstance(audio, (bytes, bytearray, memoryview)):
        name = "audio bytes"
        data = bytes(audio)
        if not data:
            raise AudioError(f"{name} are empty. {_HOW_TO_FIX}")
        wave, rate = _decode(lambda: io.BytesIO(data), name, config)
    elif isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        name = str(path)
        if not path.exists():
            raise AudioError(f"{name}: audio file not found. Check the path.")
        if not path.is_file():  # directories, FIFOs, devices: reading them could block forever
            raise AudioError(f"{name}: not a regular file. Pass the path of an audio file.")
        if path.stat().st_size == 0:
            raise AudioError(f"{name}: the file is empty (0 bytes). Re-export or re-download it.")
        wave, rate = _decode(lambda: open(path, "rb"), name, config)
    elif isinstance(audio, tuple):
        if len(audio) != 2:
            raise AudioError(f"audio tuple must be (array, sample_rate), got {len(audio)} items")
        array, rate = audio
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not _MIN_RATE <= rate <= _MAX_RATE:
            raise AudioError(f"audio array: sample_rate must be an int in [{_MIN_RATE}, {_MAX_RATE}] Hz, got {rate!r}")
        wave, rate = _array_samples(array, allow_channels=True), int(rate)
        name = "audio array"
    elif isinstance(audio, np.ndarray):
        wave, rate, name = _array_samples(audio, allow_channels=False), config.sampling_rate, "audio array"
    else:
        raise AudioError(f"unsupported audio input of type {type(audio).__name__}. {_HOW_TO_FIX}")
    return _finish(wave, rate, name, config)


def _array_samples(array: np.ndarray, allow_channels: bool) -> np.ndarray:
    """Validate a user array and return it as 1-D float32 (int16 PCM scaled to [-1, 1), channels averaged)."""
    if not isinstance(array, np.ndarray):
        raise AudioError(f"audio array must be a numpy array, got {type(array).__name__}. {_HOW_TO_FIX}")
    if array.dtype == np.int16:
        array = array.astype(np.float32) / 32768.0
    elif array.dtype.kind != "f":
        raise AudioError(f"audio array has dtype {array.dtype}; pass float samples in [-1, 1] or int16 PCM. "
                         f"{_HOW_TO_FIX}")
    if array.ndim == 2 and allow_channels:
        if array.shape[1] > array.shape[0]:  # (channels, samples) is the common mistake; refuse rather than guess
            raise AudioError(f"audio array of shape {array.shape} must be (samples, channels); pass array.T")
        array = array.mean(axis=1)
    elif array.ndim != 1:
        hint = ("pass a 1-D array" if allow_channels else
                "pass (array, sample_rate) with a (samples, channels) array, or a 1-D mono array at 16 kHz")
        raise AudioError(f"audio array has shape {array.shape}; {hint}")
    return np.asarray(array, dtype=np.float32)


def _decode(opener, name: str, config: AudioProcessingConfig) -> tuple[np.ndarray, int]:
    """soundfile first (fast, exact for wav/flac/ogg/mp3); anything libsndfile cannot open goes to PyAV."""
    with opener() as fh:
        decoded = _decode_soundfile(fh, name, config)
    if decoded is not None:
        return decoded
    with opener() as fh:
        return _decode_pyav(fh, name, config)


def _check_wav_complete(fh, name: str) -> None:
    """A RIFF/WAVE file whose data chunk promises more bytes than the file holds was cut off. libsndfile silently
    clamps the length to what is there, so without this check a truncated recording reads as a shorter clip."""
    start = fh.tell()
    header = fh.read(12)
    try:
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        file_size = fh.seek(0, io.SEEK_END)
        offset = 12
        while offset + 8 <= file_size:
            fh.seek(start + offset)
            chunk = fh.read(8)
            size = struct.unpack("<I", chunk[4:8])[0]
            if chunk[:4] == b"data":
                if size in (0, 0xFFFFFFFF):  # streaming writers leave the size open: the length is unknown
                    return
                available = file_size - (offset + 8)
                if size > available:
                    raise AudioError(f"{name}: the WAV file is truncated: its header promises {size:,} bytes of "
                                     f"audio but only {available:,} are there. Re-export or re-download it.")
                return
            offset += 8 + size + (size & 1)  # chunks are word-aligned
    finally:
        fh.seek(start)


def _decode_soundfile(fh, name: str, config: AudioProcessingConfig) -> tuple[np.ndarray, int] | None:
    _check_wav_complete(fh, name)
    try:
        f = sf.SoundFile(fh)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError):
        return None  # not a format libsndfile knows (m4a, aac, ...): let FFmpeg try
    with f:
        rate, declared = f.samplerate, f.frames
        _check_rate(rate, name)
        limit = config.max_audio_seconds * rate
        known = 0 < declared < _UNKNOWN_FRAMES
        if known and declared > limit:  # refuse before decoding anything
            raise _too_long(name, declared / rate, config)
        blocks, total = [], 0
        try:
            while True:
                block = f.read(_BLOCK, dtype="float32", always_2d=True)
                if not len(block):
                    break
                total += len(block)
                if total > limit:  # the header may lie: stop as soon as the limit is passed
                    raise _too_long(name, total / rate, config, decoded=True)
                blocks.append(block.mean(axis=1))  # downmix per block so memory stays mono-sized
        except (sf.SoundFileError, RuntimeError) as e:
            raise AudioError(f"{name}: the audio data is corrupt or truncated ({e}). Re-export or re-download it.") \
                from e
    if known and total < _TRUNCATED_FRACTION * declared:
        raise _truncated(name, total / rate, declared / rate)
    return _concat(blocks), rate


def _decode_pyav(fh, name: str, config: AudioProcessingConfig) -> tuple[np.ndarray, int]:
    try:
        # A file object (not a path string) keeps FFmpeg from reading the name as a URL/protocol; the empty protocol
        # whitelist stops playlist/concat demuxers (HLS, ffconcat) from opening other local files or the network.
        container = av.open(fh, mode="r", metadata_errors="ignore", container_options={"protocol_whitelist": "none"})
    except (av.FFmpegError, OSError, ValueError, RuntimeError, EOFError) as e:
        raise AudioError(f"{name}: not a readable audio file ({e}). {_HOW_TO_FIX}") from e
    with container:
        if not container.streams.audio:
            raise AudioError(f"{name}: the file contains no audio stream. {_HOW_TO_FIX}")
        stream = container.streams.audio[0]
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > config.max_audio_seconds:
            raise _too_long(name, declared, config)
        # Only converts the sample format to planar float32; layout and rate stay (the first frame's if they change).
        to_float = av.AudioResampler(format="fltp")
        blocks, total, rate = [], 0, 0
        try:
            for frame in container.decode(stream):
                for out in to_float.resample(frame):
                    rate = out.sample_rate
                    _check_rate(rate, name)
                    samples = out.to_ndarray()  # (channels, samples)
                    total += samples.shape[1]
                    if total > config.max_audio_seconds * rate:
                        raise _too_long(name, total / rate, config, decoded=True)
                    blocks.append(samples.mean(axis=0))
            for out in to_float.resample(None):  # flush
                total += out.samples
                blocks.append(out.to_ndarray().mean(axis=0))
        except AudioError:  # AudioError is a ValueError: do not re-wrap our own "too long" as "corrupt"
            raise
        except (av.FFmpegError, OSError, ValueError, RuntimeError, EOFError) as e:
            raise AudioError(f"{name}: the audio data is corrupt or truncated ({e}). Re-export or re-download it.") \
                from e
    if rate and declared and total / rate < _TRUNCATED_FRACTION * declared:
        raise _truncated(name, total / rate, declared)
    return _concat(blocks), rate or config.sampling_rate


def _declared_seconds(container, stream) -> float | None:
    """Duration from the headers, or None (raw ADTS/streams often have none; the decode loop still enforces it)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _finish(wave: np.ndarray, rate: int, name: str, config: AudioProcessingConfig) -> np.ndarray:
    """Common checks, then resample to the model rate (one resampler for every decoder)."""
    if wave.size == 0:
        raise AudioError(f"{name}: the audio contains no samples. Pass a non-empty recording.")
    if not np.isfinite(wave).all():
        raise AudioError(f"{name}: the audio contains NaN or infinite samples. Fix the source signal.")
    if wave.size / rate > config.max_audio_seconds:
        raise _too_long(name, wave.size / rate, config)
    if rate != config.sampling_rate:
        wave = librosa.resample(wave, orig_sr=rate, target_sr=config.sampling_rate, res_type="soxr_hq")
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if wave.size < _min_samples(config):
        raise AudioError(f"{name}: {wave.size / config.sampling_rate:.3f} s of audio is shorter than the "
                         f"{config.min_audio_seconds} s minimum (it would give no audio token). Pass a longer clip.")
    return wave


def _check_rate(rate: int, name: str) -> None:
    if not _MIN_RATE <= rate <= _MAX_RATE:
        raise AudioError(f"{name}: sample rate {rate} Hz is outside [{_MIN_RATE}, {_MAX_RATE}]; the file is corrupt "
                         "or not audio.")


def _too_long(name: str, seconds: float, config: AudioProcessingConfig, decoded: bool = False) -> AudioError:
    what = "decodes to more than" if decoded else "is"
    return AudioError(f"{name}: the audio {what} {seconds:.1f} s, longer than the {config.max_audio_seconds:g} s "
                      "limit. Trim it or split the recording.")


def _truncated(name: str, got: float, declared: float) -> AudioError:
    return AudioError(f"{name}: the file is truncated or corrupt (decoded {got:.2f} s of a declared {declared:.2f} s). "
                      "Re-export or re-download it.")


def _concat(blocks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(blocks).astype(np.float32, copy=False) if blocks else np.zeros(0, np.float32)


def _min_samples(config: AudioProcessingConfig) -> int:
    return math.ceil(config.min_audio_seconds * config.sampling_rate - 1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Clips
# ----------------------------------------------------------------------------------------------------------------------


def split_clips(waveform: np.ndarray, config: AudioProcessingConfig = _DEFAULT) -> list[np.ndarray]:
    """Split a 16 kHz mono waveform into consecutive clips of exactly `chunk_length` seconds plus the remainder.

    Each clip is encoded separately and gets its own placeholder span. A remainder shorter than
    `min_audio_seconds` would yield no audio token, so it is dropped -- but only when at least one full clip precedes
    it (a lone short clip is returned as is; `load_audio` already refuses it). Clips are views into `waveform`.
    """
    if not isinstance(waveform, np.ndarray) or waveform.ndim != 1:
        raise AudioError("audio array: split_clips needs a 1-D waveform (use load_audio first)")
    if waveform.size == 0:
        raise AudioError("audio array: the audio contains no samples")
    step = config.samples_per_clip
    clips = [waveform[i:i + step] for i in range(0, waveform.size, step)]
    if len(clips) > 1 and clips[-1].size < _min_samples(config):
        clips.pop()
    return clips


# ----------------------------------------------------------------------------------------------------------------------
# Log-mel
# ----------------------------------------------------------------------------------------------------------------------


class LogMelSpectrogram(torch.nn.Module):
    """Whisper log-mel of one clip (== WhisperFeatureExtractor for <= chunk_length s), export-first.

    forward: float32 waveform [N] (N <= chunk_length * sr) -> [1, n_mels, F], F = encoder_mel_frames(N): the valid
    frames rounded up to even, which is what the official encoder reads (it crops to after_cnn * 2).
    The whole padded 30 s clip is always computed: Whisper's max - 8 floor is taken over all of it, and fixed shapes
    after the zero-padding keep the exported graph static except for the final crop.
    """

    def __init__(self, config: AudioProcessingConfig = _DEFAULT):
        super().__init__()
        self.n_fft, self.hop_length = config.n_fft, config.hop_length
        self.n_samples = config.samples_per_clip
        self.n_freq = config.n_fft // 2 + 1
        self.max_frames = config.max_frames
        n = np.arange(config.n_fft)
        k = np.arange(self.n_freq)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / config.n_fft)  # periodic Hann (torch.hann_window's default)
        phase = 2 * np.pi * ((k[:, None] * n[None, :]) % config.n_fft) / config.n_fft  # mod keeps float64 exact
        basis = np.concatenate([np.cos(phase) * window, np.sin(phase) * window])  # real DFT rows: [2*n_freq, n_fft]
        self.register_buffer("dft_basis", torch.from_numpy(basis).float().unsqueeze(1))  # conv1d weight [out, 1, k]
        mel = librosa.filters.mel(sr=config.sampling_rate, n_fft=config.n_fft, n_mels=config.feature_size)
        self.register_buffer("mel_filters", torch.from_numpy(mel).float())  # Slaney scale + norm, [n_mels, n_freq]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        num_samples = waveform.shape[0]
        x = F.pad(waveform, (0, self.n_samples - num_samples))  # zero-pad to one clip
        half = self.n_fft // 2
        x = F.pad(x.view(1, 1, -1), (half, half), mode="reflect")  # center=True
        spec = F.conv1d(x, self.dft_basis, stride=self.hop_length)[0]  # framing + DFT in one op: [2*n_freq, 3001]
        re, im = spec[: self.n_freq], spec[self.n_freq:]
        mel = self.mel_filters @ (re * re + im * im)
        log_spec = torch.clamp(mel, min=1e-10).log10()
        # Whisper drops the last STFT frame: the floor's max is over the first max_frames frames only. The extra frame
        # stays in the tensor so the dynamic crop below is always a strict prefix (a crop that could equal the full
        # width makes torch.export guard on it and refuse the full 30 s length).
        peak = log_spec[:, : self.max_frames].max()
        log_spec = (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
        frames = encoder_mel_frames(num_samples, self.hop_length)  # from the shape only
        return log_spec[:, :frames].unsqueeze(0)


@functools.lru_cache(maxsize=4)
def _mel_module(config: AudioProcessingConfig) -> LogMelSpectrogram:
    return LogMelSpectrogram(config).eval()


def _check_clip_samples(num_samples: int, config: AudioProcessingConfig) -> None:
    """Python-level guard for LogMelSpectrogram (kept out of forward so it stays exportable)."""
    if num_samples > config.samples_per_clip:
        raise AudioError(f"audio array: {num_samples / config.sampling_rate:.2f} s is longer than one "
                         f"{config.chunk_length} s clip; call split_clips() and compute the log-mel of each clip")
    if num_samples < config.hop_length:
        raise AudioError(f"audio array: {num_samples} samples is shorter than one {config.hop_length}-sample hop; "
                         "it has no mel frame")


def log_mel(waveform: np.ndarray | torch.Tensor, config: AudioProcessingConfig = _DEFAULT) -> torch.Tensor:
    """Log-mel [n_mels, F] of one clip of 16 kHz mono audio (F = encoder_mel_frames(len(waveform)))."""
    if isinstance(waveform, torch.Tensor):
        wave = waveform.detach().to("cpu", torch.float32)
    else:
        wave = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    if wave.ndim != 1:
        raise AudioError(f"audio array: log_mel needs a 1-D waveform, got shape {tuple(wave.shape)}")
    _check_clip_samples(wave.shape[0], config)
    with torch.no_grad():
        return _mel_module(config)(wave)[0]
