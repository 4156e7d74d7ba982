"""Our bundle through ExecuTorch's stock MultimodalRunner: the C++ runner inside Android's LlmModule and iOS's
ExecuTorchLLM, i.e. what the apps get, measured from the runner's own stats.

    python -m benchmarks.anchors.stock_multimodal BUNDLE --json OUT [--threads 2 --reps 5]

Prompts are token ids (`make_token_input`), so every runtime in the same-run benchmark gets prompts of exactly
the same length. The stock runner prefills one input per decoder call and cannot split an input longer than the
program's max_seq_len, so a longer context is handed to it in max_seq_len pieces. Time to first token for the
sample image and for 30 s of speech uses the runner inputs an app sends (`processing.plan`), preprocessing
excluded (the phone does it in its own code), so that it adds up with the encoder and prefill figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .machine import checked, summary


def _measure_here(bundle_dir: Path, threads: int, prefill_lengths: tuple[int, ...], decode_tokens: int,
                  decode_contexts: tuple[int, ...], audio_seconds: float, reps: int, warmup: int) -> dict[str, Any]:
    import torch

    from megrez_mobile.bundle import read_manifest
    from megrez_mobile.harness.memory import ProcessMemory
    from megrez_mobile.harness.validate import sample_media, sample_speech
    from megrez_mobile.processing.plan import added_token_strings, runner_plan
    from megrez_mobile.runtime.session import bundle_processor, load_runtime_kernels, stock_inputs

    load_runtime_kernels()
    from executorch.extension.llm.runner import GenerationConfig, MultimodalRunner, make_token_input
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    _unsafe_reset_threadpool(threads)
    manifest = read_manifest(bundle_dir)
    processor = bundle_processor(bundle_dir, manifest)
    tokenizer = manifest.path_of(bundle_dir, manifest.tokenizer)
    max_seq_len, vocab = int(manifest.context["max_seq_len"]), int(manifest.program.constants["get_vocab_size"])
    start = time.perf_counter()
    runner = MultimodalRunner(str(manifest.path_of(bundle_dir, manifest.program.file)), str(tokenizer))
    generator = torch.Generator().manual_seed(0)
    stop_ids = set(processor.stop_ids)

    def random_ids(n: int) -> list[int]:
        ids = torch.randint(0, vocab, (n,), generator=generator).tolist()
        return [i if i not in stop_ids else 0 for i in ids]

    def pieces(ids: list[int]) -> list:
        return [make_token_input(ids[i:i + max_seq_len]) for i in range(0, len(ids), max_seq_len)]

    def generate(inputs: list, new_tokens: int) -> tuple[Any, float]:
        """The runner's stats of one call, and the call's wall time (the stats count whole milliseconds)."""
        seen = []
        begin = time.perf_counter()
        runner.generate(inputs, GenerationConfig(echo=False, max_new_tokens=new_tokens, temperature=0.0), None,
                        seen.append)
        return seen[-1], time.perf_counter() - begin

    generate([make_token_input(random_ids(8))], 1)  # loads every method (XNNPACK packs its weights)
    load_s = time.perf_counter() - start
    runner.reset()
    samples: dict[str, list[float]] = {}

    def repeat(name: str, fn) -> None:
        """`warmup` discarded calls, then `reps` kept ones, each from an empty cache."""
        for i in range(warmup + reps):
            runner.reset()
            value = fn()
            if i >= warmup:
                samples.setdefault(name, []).append(value)

    for n in prefill_lengths:
        def prefill(n=n) -> float:
            s, wall = generate([make_token_input(random_ids(n))], 1)  # prefill, then sample the first token
            return s.num_prompt_tokens / wall
        repeat(f"prefill_tok_s@{n}", prefill)

    for context in decode_contexts:
        def decode(context=context) -> float:
            ids = random_ids(context)
            runner.prefill(pieces(ids[:-1]))
            s, _ = generate([make_token_input(ids[-1:])], decode_tokens + 1)
            return (s.num_generated_tokens - 1) / (max(1, s.inference_end_ms - s.first_token_ms) / 1000)
        repeat(f"decode_tok_s@ctx{context}", decode)

    image, clip = sample_media()[0], sample_speech(audio_seconds, processor.config.audio)
    added = added_token_strings(tokenizer)
    prompts = {"image": {"image": image, "text": "Describe this image in detail."},
               "audio": {"audio": clip, "text": "Transcribe the audio, then summarise it."}}
    prompt_tokens = {}
    for kind, content in prompts.items():
        plan = runner_plan(processor, [{"role": "user", "content": content}], added)
        inputs = stock_inputs(plan, processor)

        def ttft(inputs=inputs) -> float:
            s, wall = generate(inputs, 1)
            prompt_tokens[kind] = s.num_prompt_tokens
            return wall
        repeat(f"ttft_s.{kind}", ttft)

    units = {"prefill": "tok/s", "decode": "tok/s", "ttft_s": "s"}
    return {"runtime": "ExecuTorch stock MultimodalRunner (our bundle)", "threads": threads,
            "load_s": load_s, "prompt_tokens": prompt_tokens, "pte_bytes": manifest.program.file.bytes,
            "metrics": {k: summary(v, next(u for p, u in units.items() if k.startswith(p))) for k, v in samples.items()},
            "peak_rss_mib": ProcessMemory.now().peak_rss / (1 << 20)}


def measure(bundle_dir: str | Path, threads: int = 2, prefill_lengths: tuple[int, ...] = (128, 512),
            decode_tokens: int = 64, decode_contexts: tuple[int, ...] = (128, 2048), audio_seconds: float = 30.0,
            reps: int = 5, warmup: int = 1, timeout_s: float = 3600) -> dict[str, Any]:
    """All of the above in a fresh process, with the co-tenant check of its duration."""
    with tempfile.TemporaryDirectory(prefix="megrez-stock-mm-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.anchors.stock_multimodal", str(bundle_dir), "--json", str(out),
               "--threads", str(threads), "--prefill", ",".join(map(str, prefill_lengths)),
               "--decode", str(decode_tokens), "--decode-contexts", ",".join(map(str, decode_contexts)),
               "--audio-seconds", f"{audio_seconds:g}", "--reps", str(reps), "--warmup", str(warmup)]
        # The runner prints every piece and its stats on stdout: discard them, keep stderr for errors.
        done, check = checked(lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                     text=True, errors="replace", timeout=timeout_s,
                                                     cwd=_repo_root()))
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return {**json.loads(out.read_text()), "cotenant": check}


def _repo_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _lengths(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prefill", default="128,512")
    parser.add_argument("--decode", type=int, default=64)
    parser.add_argument("--decode-contexts", default="128,2048")
    parser.add_argument("--audio-seconds", type=float, default=30.0)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    ns = parser.parse_args()
    from megrez_mobile.logs import quiet_library_logs

    quiet_library_logs()
    result = _measure_here(ns.bundle, ns.threads, _lengths(ns.prefill), ns.decode, _lengths(ns.decode_contexts),
                           ns.audio_seconds, ns.reps, ns.warmup)
    ns.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
