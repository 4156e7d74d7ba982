"""What `megrez-mobile profile` measures on one device, with llama-bench semantics.

Runs inside the agent process on the device (`python -m megrez_mobile.harness.agent`), so load time and peak
RSS are those of a fresh process holding one bundle. Every timing is repeated after warm-up runs and reported
as median with min/max (the spread); `--compare` calls a change a regression only when it exceeds the spread.

- prefill tok/s at 128 and 512 tokens: token_embedding + one text_decoder call over the run, from position 0;
- decode tok/s over 128 tokens: one token at a time (embedding, decoder, argmax), as the runner generates, from
  position 0 and again after a prefilled context of 128 and of 2,048 tokens;
- time to first token for three prompts, preprocessing included (image slicing, log-mel): text only, the
  sample image (448 image tokens) + text, 30 s of audio + text;
- vision milliseconds per slice, audio-encoder milliseconds per second of audio;
- the per-operator breakdown from an ETDump of one run of each method, read with ExecuTorch's Inspector.
"""

from __future__ import annotations

import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .validate import sample_media, sample_speech

SCHEMA = "megrez-mobile/profile/1"
LogFn = Callable[[str], None]


@dataclass(frozen=True)
class ProfileOptions:
    reps: int = 5
    warmup: int = 1
    threads: int | None = None         # None: ExecuTorch's default (one per performance core)
    prefill_lengths: tuple[int, ...] = (128, 512)
    decode_tokens: int = 128
    # Decode measured again after a prefilled context of each length (attention reads grow with the context).
    decode_contexts: tuple[int, ...] = (128, 2048)
    audio_seconds: float = 30.0
    per_op: bool = True
    top_ops: int = 15

    @classmethod
    def quick(cls, **overrides: Any) -> "ProfileOptions":
        """Small sizes for tests and a first look: the same measurements, seconds instead of minutes."""
        return cls(**{"reps": 2, "warmup": 1, "prefill_lengths": (16, 64), "decode_tokens": 16, "decode_contexts": (),
                      "audio_seconds": 5.0, **overrides})


@dataclass(frozen=True)
class Stat:
    """Repeated measurements of one quantity."""

    unit: str
    better: str  # "higher" | "lower"
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))

    @property
    def spread(self) -> float:
        return float(max(self.samples) - min(self.samples))

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": min(self.samples), "max": max(self.samples), "spread": self.spread,
                "n": len(self.samples), "unit": self.unit, "better": self.better, "samples": list(self.samples)}


def repeat(fn: Callable[[], float], options: ProfileOptions) -> list[float]:
    """Warm-up runs (discarded), then `reps` measured ones; `fn` returns what it measured."""
    for _ in range(options.warmup):
        fn()
    return [fn() for _ in range(max(1, options.reps))]


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux (bytes on macOS); devices are Linux/Android.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def profile_bundle(bundle_dir: str | Path, options: ProfileOptions = ProfileOptions(),
                   log: LogFn = lambda _: None) -> dict[str, Any]:
    """Measure one bundle in this process; returns the versioned result (see SCHEMA)."""
    from ..bundle import read_manifest, verify_files
    from ..runtime.session import Bundle, load_runtime_kernels

    bundle_dir = Path(bundle_dir)
    load_runtime_kernels()
    rss_before_load = _peak_rss_mb()
    log("verifying the bundle's checksums, then loading the program")
    verify_s = _timed(lambda: verify_files(bundle_dir, read_manifest(bundle_dir), checksums=True))
    bundle: Bundle | None = None

    def load() -> None:
        nonlocal bundle
        bundle = Bundle.load(bundle_dir, verify_checksums=False, threads=options.threads)
        # Loading a method is part of load time (XNNPACK packs its weights then).
        for name in bundle.method_names:
            bundle.method(name)

    load_s = [_timed(load)]
    assert bundle is not None
    processor = bundle.processor
    metrics: dict[str, Stat] = {"load_s": Stat("s", "lower", tuple(load_s))}
    image, audio_path = sample_media()
    vocab = int(bundle.manifest.program.constants["get_vocab_size"])
    generator = torch.Generator().manual_seed(0)

    # Prefill: random ordinary ids (what they are does not change the cost).
    for n in options.prefill_lengths:
        ids = torch.randint(0, vocab, (n,), generator=generator).tolist()
        log(f"prefill {n} tokens x {options.reps}")

        def prefill(ids=ids) -> float:
            return len(ids) / _timed(lambda: bundle.decode(bundle.embed_tokens(ids), 0))

        metrics[f"prefill_tok_s@{n}"] = Stat("tok/s", "higher", tuple(repeat(prefill, options)))

    log(f"decode {options.decode_tokens} tokens x {options.reps}")

    def decode() -> float:
        logits = bundle.decode(bundle.embed_tokens([1]), 0)
        start = time.perf_counter()
        for pos in range(1, options.decode_tokens + 1):
            logits = bundle.decode(bundle.embed_tokens([int(logits.argmax())]), pos)
        return options.decode_tokens / (time.perf_counter() - start)

    metrics[f"decode_tok_s@{options.decode_tokens}"] = Stat("tok/s", "higher", tuple(repeat(decode, options)))

    for context in options.decode_contexts:
        if context + options.decode_tokens > bundle.max_context:
            log(f"skipping decode at a {context}-token context: it does not fit the bundle's {bundle.max_context}")
            continue
        log(f"decode {options.decode_tokens} tokens after a {context}-token context x {options.reps}")
        ids = torch.randint(0, vocab, (context,), generator=generator).tolist()
        for i in range(0, context, bundle.max_seq_len):  # the context is filled once; each rep decodes after it
            bundle.decode(bundle.embed_tokens(ids[i:i + bundle.max_seq_len]), i)

        def decode_after(context=context) -> float:
            token, start = ids[-1], time.perf_counter()
            for pos in range(context, context + options.decode_tokens):
                token = int(bundle.decode(bundle.embed_tokens([token]), pos).argmax())
            return options.decode_tokens / (time.perf_counter() - start)

        metrics[f"decode_tok_s@ctx{context}"] = Stat("tok/s", "higher", tuple(repeat(decode_after, options)))

    # Time to first token, preprocessing included, from an empty cache.
    clip = sample_speech(options.audio_seconds, processor.config.audio)
    prompts = {
        "text": {"text": "Write a short poem about the sea, then explain it in one sentence."},
        "image": {"image": image, "text": "Describe this image in detail."},
        "audio": {"audio": clip, "text": "Transcribe the audio, then summarise it."},
    }
    prompt_info = {}
    for kind, content in prompts.items():
        messages = [{"role": "user", "content": content}]
        built = processor.build_inputs(messages)
        prompt_info[kind] = {"tokens": built.num_tokens,
                             "image_tokens": sum(e - s for s, e in built.image_bounds.tolist()),
                             "audio_seconds": options.audio_seconds if kind == "audio" else 0.0}
        log(f"time to first token, {kind} prompt ({built.num_tokens} tokens) x {options.reps}")

        def ttft(messages=messages) -> float:
            bundle.reset()
            start = time.perf_counter()
            bundle.generate(messages, max_new_tokens=1)
            return time.perf_counter() - start

        metrics[f"ttft_s.{kind}"] = Stat("s", "lower", tuple(repeat(ttft, options)))

    # Encoders on their own.
    image_inputs = processor.build_inputs([{"role": "user", "content": prompts["image"]}])
    slices = image_inputs.image_slices
    log(f"vision encoder: {len(slices)} slices x {options.reps}")
    metrics["vision_ms_per_slice"] = Stat("ms", "lower", tuple(repeat(
        lambda: 1000 * _timed(lambda: [bundle.encode_image_slice(s) for s in slices]) / len(slices), options)))
    mel = processor.log_mel(torch.from_numpy(clip))
    log(f"audio encoder: {options.audio_seconds:g} s of audio x {options.reps}")
    metrics["audio_ms_per_audio_s"] = Stat("ms", "lower", tuple(repeat(
        lambda: 1000 * _timed(lambda: bundle.encode_audio(mel)) / options.audio_seconds, options)))
    metrics["peak_rss_mb"] = Stat("MB", "lower", (_peak_rss_mb(),))

    result: dict[str, Any] = {
        "schema": SCHEMA,
        "bundle": _bundle_info(bundle),
        "host": _host_info(),
        "options": asdict(options),
        "prompts": prompt_info,
        "verify_s": verify_s,
        "rss_before_load_mb": rss_before_load,
        "slice_shapes": [list(s.shape[1:]) for s in slices],
        "metrics": {k: v.to_dict() for k, v in metrics.items()},
        "operators": [],
    }
    del bundle
    if options.per_op:
        log("per-operator breakdown (ETDump + Inspector)")
        result["operators"] = operator_breakdown(bundle_dir, slices[0], mel, options)
    return result


def _bundle_info(bundle) -> dict[str, Any]:
    m = bundle.manifest
    return {"name": bundle.directory.name, "recipe": m.recipe.get("name"), "backend": m.program.backend,
            "pte_bytes": m.program.file.bytes,
            "n_layers": m.program.constants.get("get_n_layers"), "vocab": m.program.constants.get("get_vocab_size"),
            "max_context": m.context.get("max_context"), "checkpoint_digest": m.checkpoint.get("digest", "")[:12],
            "methods": {e.name: {"backend": e.backend, "coverage_percent": e.coverage_percent}
                        for e in m.program.methods}}


def _host_info() -> dict[str, Any]:
    import os

    from .. import __version__

    from importlib.metadata import PackageNotFoundError, version

    try:
        et_version = version("executorch")
    except PackageNotFoundError:  # pragma: no cover - the agent always has it
        et_version = ""
    return {"hostname": platform.node(), "machine": platform.machine(), "system": platform.system(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "executorch": et_version, "megrez_mobile": __version__,
            "cpu_model": _cpu_model()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def operator_breakdown(bundle_dir: Path, slice_chw: torch.Tensor, mel: torch.Tensor,
                       options: ProfileOptions) -> list[dict[str, Any]]:
    """One run of each heavy method with ETDump on, read back with the Inspector: where the time goes.

    Each run gets a fresh program instance (ETDump blocks are not named after methods). Delegated work appears
    as the delegate's own kernels (XNNPACK names them, e.g. "Fully Connected (NC, QDU8, F32, QB4W) GEMM").
    """
    from executorch.extension.pybindings.portable_lib import _load_for_executorch

    from ..bundle import read_manifest

    manifest = read_manifest(bundle_dir)
    program_path = str(manifest.path_of(bundle_dir, manifest.program.file))
    n = options.prefill_lengths[0]

    def load():
        return _load_for_executorch(program_path, enable_etdump=True, debug_buffer_size=0)

    probe = load()
    embeds = probe.run_method("token_embedding", (torch.zeros(1, n, dtype=torch.long),))[0]
    del probe
    runs = {
        f"text_decoder (prefill {n})": lambda m: m.run_method("text_decoder", (embeds, torch.tensor([0]))),
        "text_decoder (decode 1)": lambda m: (m.run_method("text_decoder", (embeds, torch.tensor([0]))),
                                              _reset_etdump(m),
                                              m.run_method("text_decoder", (embeds[:, :1].contiguous(),
                                                                            torch.tensor([n])))),
        "vision_encoder (1 slice)": lambda m: m.run_method("vision_encoder", (slice_chw.unsqueeze(0).contiguous(),)),
        f"audio_encoder ({options.audio_seconds:g} s)": lambda m: m.run_method(
            "audio_encoder", (mel.unsqueeze(0).float().contiguous(),)),
    }
    rows: list[dict[str, Any]] = []
    for label, run in runs.items():
        module = load()
        run(module)
        rows += _read_etdump(module, label, options.top_ops)
        del module
    return rows


def _reset_etdump(module) -> None:
    """Drop what ETDump recorded so far (the decode run profiles its single step, not the prefill before it)."""
    with tempfile.TemporaryDirectory() as tmp:
        module.write_etdump_result_to_file(str(Path(tmp) / "discard.etdump"))


def _read_etdump(module, label: str, top: int) -> list[dict[str, Any]]:
    from executorch.devtools import Inspector

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.etdump"
        module.write_etdump_result_to_file(str(path))
        frame = Inspector(etdump_path=str(path)).to_dataframe()
    return summarize_operators(frame, label, top)


# Wrapper events that contain other events (counting them would count the same time twice).
_WRAPPERS = {"DELEGATE_CALL", "OPERATOR_CALL", "Method::init", "Program::load_method", "Method::execute"}


def summarize_operators(frame, label: str, top: int) -> list[dict[str, Any]]:
    """Total time per operator kind for one run, largest first; delegated kernels merged across instances."""
    import re

    rows: dict[str, dict[str, Any]] = {}
    for _, event in frame.iterrows():
        name = str(event["event_name"])
        raw = event["raw"]
        if name in _WRAPPERS or not isinstance(raw, (list, tuple)) or not raw:
            continue
        delegated = bool(event["is_delegated_op"])
        kind = re.sub(r" #\d+$", "", name)  # XNNPACK numbers each instance of a kernel
        row = rows.setdefault(kind, {"run": label, "operator": kind, "delegated": delegated, "calls": 0,
                                     "total_ms": 0.0})
        row["calls"] += len(raw)
        row["total_ms"] += float(sum(raw))
    total = sum(r["total_ms"] for r in rows.values()) or 1.0
    ranked = sorted(rows.values(), key=lambda r: -r["total_ms"])
    for r in ranked:
        r["share"] = r["total_ms"] / total
    return ranked[:top]
