"""The same-run benchmark: our bundle, ExecuTorch's stock export, llama.cpp and this machine's ceilings, measured
one after the other on the same machine, interleaved round by round, so that every figure has its anchors beside
it (absolute speeds differ twofold between machines of the same kind; ratios measured together do not).

    python benchmarks/same_run.py --cache ~/.cache/megrez-bench --out bench-out/ [--threads 2] [--rounds 5]

What it does, reusing everything cached under --cache that is still valid:
 1. the full-size checkpoint (random weights, official dims: `megrez-mobile make-tiny --full-size`);
 2. our `xnnpack-8da4w` bundle (`megrez-mobile export`, under /usr/bin/time: wall time and peak RSS), cached by
    the checkpoint's index, the recipe file and the SDK version;
 3. ExecuTorch's stock `export_llm` of a Llama with our decoder's dims (benchmarks/anchors/executorch_stock.py);
 4. a Q4_0 GGUF of the same dims written with PyPI's gguf (benchmarks/anchors/llama_cpp.py);
 5. the machine: streaming read bandwidth and GEMM ceilings through our XNNPACK path (anchors/machine.py);
 6. --rounds rounds, each running once (after a warm-up) in a fresh process: `megrez-mobile profile`'s agent on
    our bundle, ExecuTorch's TextLLMRunner on the stock export, llama.cpp, and our bundle through the stock
    MultimodalRunner; every measurement carries the /proc/stat co-tenant check of its duration;
 7. peak memory of an image + audio + text chat through Bundle and through the stock runner (harness/memory.py).
Writes OUT/results.json (everything, every sample) and OUT/table.md (the tables for BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.anchors import executorch_stock, llama_cpp, machine, stock_multimodal  # noqa: E402
from benchmarks.anchors.machine import checked, packed_weight_bytes, summary  # noqa: E402

CLI = str(Path(sys.executable).with_name("megrez-mobile"))  # the SDK's CLI from the same environment
RECIPE = "xnnpack-8da4w"
PREFILL = (128, 512)
DECODE_TOKENS = 64
CONTEXTS = (128, 2048)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed_command(cmd: list[str], log_path: Path) -> dict[str, Any]:
    """Run `cmd` under /usr/bin/time -v; its wall time, peak RSS and CPU, with the co-tenant check."""
    with open(log_path, "w") as out:
        done, check = checked(lambda: subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=out,
                                                     stderr=subprocess.STDOUT))
    text = log_path.read_text(errors="replace")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}); see {log_path}:\n{text[-3000:]}")

    def field(name: str) -> str:
        m = re.search(rf"{re.escape(name)}[^:\n]*: (.+)", text)
        return m.group(1).strip() if m else ""

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    parts = [float(p) for p in wall.split(":")] if wall else [0.0]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return {"command": " ".join(cmd), "wall_s": seconds, "peak_rss_bytes": int(field("Maximum resident set size")
                                                                               or 0) * 1024,
            "user_s": float(field("User time (seconds)") or 0), "system_s": float(field("System time (seconds)") or 0),
            "cotenant": check}


# --- 1-2: checkpoint and our bundle ------------------------------------------------------------------------

def ensure_checkpoint(path: Path) -> Path:
    if (path / "model.safetensors.index.json").is_file() and (path / "config.json").is_file():
        log(f"checkpoint: {path} (cached)")
        return path
    log(f"checkpoint: writing the full-size random checkpoint to {path} (about 1 min, 8 GB)")
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([CLI, "make-tiny", str(tmp), "--full-size"], check=True)
    tmp.replace(path)
    return path


def bundle_key(checkpoint: Path, recipe: str) -> str:
    """The checkpoint's index and config, the recipe file and the SDK (its version and its source, which changes
    between commits of one version): what the export depends on."""
    import megrez_mobile
    from megrez_mobile.export.recipe import Recipe

    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors.index.json"):
        h.update((checkpoint / name).read_bytes())
    h.update(Path(Recipe.load(recipe).source).read_bytes())
    h.update(megrez_mobile.__version__.encode())
    package = Path(megrez_mobile.__file__).parent
    for source in sorted(package.rglob("*.py")):
        h.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes())
    return h.hexdigest()[:16]


def ensure_bundle(checkpoint: Path, cache: Path, recipe: str = RECIPE) -> tuple[Path, dict[str, Any]]:
    bundle = cache / f"megrez-full-{recipe}-{bundle_key(checkpoint, recipe)}"
    record = bundle.with_suffix(".export.json")
    if (bundle / "manifest.json").is_file() and record.is_file():
        log(f"our bundle: {bundle} (cached)")
        return bundle, {**json.loads(record.read_text()), "cached": True}
    log(f"our bundle: exporting {recipe} (about 30 min and 12-14 GiB on 2 cores)")
    shutil.rmtree(bundle, ignore_errors=True)
    export = timed_command([CLI, "export", str(checkpoint), "--recipe", recipe, "-o", str(bundle)],
                           cache / f"export-{recipe}.log")
    record.write_text(json.dumps(export, indent=1))
    return bundle, export


# --- 6: the rounds ----------------------------------------------------------------------------------------

def profile_ours(bundle: Path, threads: int, per_op: bool, out: Path) -> dict[str, Any]:
    """`megrez-mobile profile`'s agent, one repetition after one warm-up, in a fresh process."""
    from megrez_mobile.harness.agent import agent_args
    from megrez_mobile.harness.profile import ProfileOptions

    options = ProfileOptions(reps=1, warmup=1, threads=threads, prefill_lengths=PREFILL, decode_tokens=DECODE_TOKENS,
                             decode_contexts=CONTEXTS, per_op=per_op)
    cmd = [sys.executable, "-m", "megrez_mobile.harness.agent", "--bundle", str(bundle), "--out", str(out),
           *agent_args(options)]
    done, check = checked(lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                                 errors="replace"))
    if done.returncode != 0:
        raise RuntimeError(f"profile agent failed:\n{done.stderr[-3000:]}")
    return {**json.loads(out.read_text()), "cotenant": check}


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """{metric: summary} over every round's samples (each round contributes its repetitions)."""
    samples: dict[str, list[float]] = {}
    units: dict[str, str] = {}
    for metrics in rounds:
        for name, stat in metrics.items():
            samples.setdefault(name, []).extend(stat["samples"])
            units[name] = stat.get("unit", "")
    return {name: summary(values, units[name]) for name, values in samples.items()}


RUNTIMES = ("ours", "executorch_stock", "llama_cpp", "stock_multimodal")


def run_rounds(bundle: Path, stock_pte: Path, gguf: Path | None, threads: int, rounds: int, out: Path,
               skip: set[str], on_round: Callable[[dict[str, Any]], None] = lambda so_far: None) -> dict[str, Any]:
    """Every runtime once per round, interleaved; on_round gets the merged figures after each round (the same
    dict this returns at the end), so an interrupted run still leaves what it measured."""
    per_runtime: dict[str, list[dict[str, Any]]] = {r: [] for r in RUNTIMES}
    checks: dict[str, list[dict[str, Any]]] = {r: [] for r in RUNTIMES}
    extras: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def attempt(runtime: str, fn) -> dict[str, Any] | None:
        """One runtime's measurement; a failure is recorded and that runtime dropped from later rounds."""
        if runtime in skip or runtime in errors:
            return None
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - reported in results.json and the table, the run goes on
            errors[runtime] = f"{type(e).__name__}: {e}"[-4000:]
            log(f"  {runtime} failed: {errors[runtime][:300]}")
            return None

    so_far: dict[str, Any] = {}
    for i in range(rounds):
        log(f"round {i + 1}/{rounds}")
        log("  ours: megrez-mobile profile agent")
        result = attempt("ours", lambda: profile_ours(bundle, threads, per_op=i == 0,
                                                      out=out / f"profile-round{i + 1}.json"))
        if result:
            per_runtime["ours"].append(result["metrics"])
            checks["ours"].append(result["cotenant"])
            extras.setdefault("ours_profile", result)
        log("  ExecuTorch stock export: TextLLMRunner")
        result = attempt("executorch_stock", lambda: checked(lambda: executorch_stock.measure(
            stock_pte, threads=threads, prefill_lengths=PREFILL, decode_tokens=DECODE_TOKENS,
            decode_contexts=CONTEXTS, reps=1, warmup=1)))
        if result:
            per_runtime["executorch_stock"].append(result[0]["metrics"])
            checks["executorch_stock"].append(result[1])
            extras.setdefault("executorch_stock_run", result[0])
        log("  llama.cpp Q4_0")
        result = attempt("llama_cpp", lambda: checked(lambda: llama_cpp.measure(
            gguf, threads=threads, prefill_lengths=PREFILL, decode_tokens=DECODE_TOKENS, decode_contexts=CONTEXTS,
            reps=1, warmup=1)))
        if result:
            per_runtime["llama_cpp"].append(result[0]["metrics"])
            checks["llama_cpp"].append(result[1])
            extras.setdefault("llama_cpp_run", result[0])
        log("  our bundle through the stock MultimodalRunner")
        result = attempt("stock_multimodal", lambda: stock_multimodal.measure(
            bundle, threads=threads, prefill_lengths=PREFILL, decode_tokens=DECODE_TOKENS, decode_contexts=CONTEXTS,
            reps=1, warmup=1))
        if result:
            per_runtime["stock_multimodal"].append(result["metrics"])
            checks["stock_multimodal"].append(result["cotenant"])
            extras.setdefault("stock_multimodal_run", result)
        so_far = {"metrics": {r: merge_rounds(v) for r, v in per_runtime.items() if v}, "cotenant": checks,
                  "errors": errors, "rounds_done": i + 1, **extras}
        on_round(so_far)
    return so_far


# --- derived figures --------------------------------------------------------------------------------------

def our_bytes_per_token(config, contexts=CONTEXTS, kv_bytes_per_element: float = 4.0) -> dict[str, float]:
    """What one decoded token of our bundle reads: the block linears in XNNPACK's packed 4-bit layout (one bf16
    scale per 32 weights: 4.5 bits), lm_head 8-bit per channel (+ an fp32 scale per row), one embedding row,
    and the KV cache up to the context."""
    t = config.text
    kv = t.num_key_value_heads * (t.hidden_size // t.num_attention_heads)
    block = t.num_hidden_layers * (t.hidden_size * (t.hidden_size * 2 + kv * 2) + 3 * t.hidden_size *
                                   t.intermediate_size)
    # `block` counts all the layers' weights: as one [block x 1] 4-bit matrix it has the same bytes.
    weights = packed_weight_bytes(block, 1, 4) + packed_weight_bytes(t.hidden_size, t.vocab_size, 8) + t.hidden_size
    per_position = t.num_hidden_layers * 2 * kv * kv_bytes_per_element
    return {f"ctx{c}": weights + per_position * c for c in contexts} | {"weights": weights}


def work_flops(checkpoint: Path, slice_shapes: list[list[int]], audio_seconds: float) -> dict[str, float]:
    """FLOPs of the encoders on the profiled inputs, counted by torch's FlopCounterMode on the model at its real
    dims (meta tensors: no weights), and of the decoder per prefilled token."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from megrez_mobile.config import MegrezConfig
    from megrez_mobile.model.audio import AudioModel
    from megrez_mobile.model.vision import VisionModel

    cfg = MegrezConfig.from_pretrained(checkpoint)
    with torch.device("meta"):
        vision, audio = VisionModel(cfg).eval(), AudioModel(cfg.audio).eval()
    with FlopCounterMode(display=False) as counter:
        for h, w in slice_shapes:
            vision(torch.zeros(3, h, w, dtype=torch.uint8, device="meta"))
    vision_flops = counter.get_total_flops() / len(slice_shapes)
    frames = int(audio_seconds * 100)
    with FlopCounterMode(display=False) as counter:
        audio(torch.zeros(1, cfg.audio.n_mels, frames, device="meta"))
    t = cfg.text
    kv = t.num_key_value_heads * (t.hidden_size // t.num_attention_heads)
    linear = t.num_hidden_layers * (t.hidden_size * (t.hidden_size * 2 + kv * 2) + 3 * t.hidden_size *
                                    t.intermediate_size)
    return {"vision_per_slice": vision_flops, "audio_per_second": counter.get_total_flops() / audio_seconds,
            "decoder_per_token": 2.0 * linear, "config": cfg}


def host() -> dict[str, Any]:
    """The machine, in the terms that decide these figures: CPU model and matrix extensions, cores, memory."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*: (.+)", cpuinfo)
    found = re.search(r"flags\s*: (.+)", cpuinfo)
    flags = set(found.group(1).split()) if found else set()
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    return {"cpu": model.group(1) if model else "", "cpus": os.cpu_count(),
            "extensions": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16"}),
            "memory_gib": round(int(mem.group(1)) / (1 << 20), 1) if mem else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True, help="where exports, the GGUF and kernels are kept")
    parser.add_argument("--out", type=Path, required=True, help="results.json and table.md go here")
    parser.add_argument("--checkpoint", type=Path, help="default: CACHE/megrez-full (written if missing)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions of every runtime (>= 5)")
    parser.add_argument("--skip", action="append", default=[], choices=[*RUNTIMES, "memory", "machine"],
                        help="leave a part out (say why in BENCHMARKS.md)")
    ns = parser.parse_args()
    ns.cache.mkdir(parents=True, exist_ok=True)
    ns.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from megrez_mobile.logs import quiet_library_logs

    quiet_library_logs()
    skip = set(ns.skip)
    results: dict[str, Any] = {"command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "threads": ns.threads, "round_count": ns.rounds, "skipped": sorted(skip), "host": host()}

    def save() -> None:
        # Written every round: by rename, so a run stopped mid-write keeps the previous round's file whole.
        text = json.dumps(results, indent=1, default=str) + "\n"
        executorch_stock._write_atomic(ns.out / "results.json", text.encode())

    checkpoint = ensure_checkpoint(ns.checkpoint or ns.cache / "megrez-full")
    bundle, results["our_export"] = ensure_bundle(checkpoint, ns.cache)
    stock_pte = None
    if "executorch_stock" not in skip:
        log("ExecuTorch stock export (cached when unchanged; about 20 min and 14 GiB otherwise)")
        stock_pte = executorch_stock.prepare(ns.cache / "executorch-stock")
        results["executorch_stock_export"] = executorch_stock.read_record(stock_pte)
    gguf = None
    if "llama_cpp" not in skip:
        llama_cpp.ensure_installed()
        log("llama.cpp: Q4_0 GGUF of our decoder's dims (cached when unchanged)")
        gguf = llama_cpp.prepare_gguf(ns.cache / "llama-cpp")
    save()
    if "machine" not in skip:
        log("machine: read bandwidth (1 and 2 threads) and GEMM ceilings through our XNNPACK path")
        results["machine"] = machine.measure(ns.threads, ns.cache / "machine")
        save()

    def publish(rounds: dict[str, Any]) -> None:
        """results.json and table.md as measured so far: after every round, and again after the memory runs."""
        from benchmarks.same_run_table import render

        results["rounds"] = rounds
        results.update(derived_figures(checkpoint, rounds, results.get("executorch_stock_export")))
        results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        save()
        executorch_stock._write_atomic(ns.out / "table.md", render(results).encode())

    rounds = run_rounds(bundle, stock_pte, gguf, ns.threads, ns.rounds, ns.out, skip, on_round=publish)
    if "memory" not in skip:
        from megrez_mobile.harness.memory import measure_memory

        log("memory: an image + 30 s audio + text chat, then a text turn, through Bundle and the stock runner")
        results["memory"] = {runner: measure_memory(bundle, runner) for runner in ("bundle", "stock")}
    publish(rounds)
    log(f"done: {ns.out / 'results.json'}, {ns.out / 'table.md'}")
    return 0


def derived_figures(checkpoint: Path, rounds: dict[str, Any], stock_export: dict[str, Any] | None) -> dict[str, Any]:
    """The encoders' FLOPs on the profiled inputs and each runtime's bytes read per decoded token."""
    profile = rounds.get("ours_profile", {})
    work = work_flops(checkpoint, profile.get("slice_shapes", [[378, 518]]), profile.get("options", {})
                      .get("audio_seconds", 30.0))
    config = work.pop("config")
    per_token = {"ours": our_bytes_per_token(config)}
    if stock_export:
        per_ctx = stock_export["bytes_per_token"]["per_token_at_context"]
        per_token["executorch_stock"] = {f"ctx{c}": b for c, b in per_ctx.items()}
    if "llama_cpp_run" in rounds:
        t = config.text
        # llama.cpp's default KV cache is f16: 2 bytes per element.
        kv = t.num_hidden_layers * 2 * t.num_key_value_heads * (t.hidden_size // t.num_attention_heads) * 2
        weights = rounds["llama_cpp_run"]["bytes_per_token"]
        per_token["llama_cpp"] = {f"ctx{c}": weights + kv * c for c in CONTEXTS}
    return {"work": work, "bytes_per_token": per_token}


if __name__ == "__main__":
    raise SystemExit(main())
