"""What this machine can do at most, measured in the same run as the runtimes it bounds.

- streaming read bandwidth: a compiled AVX-512/AVX2 kernel (not numpy), one stream per thread over a buffer far
  larger than the caches -> the decode floor of a runtime = bytes it reads per token / bandwidth;
- GEMM ceilings: one large linear through the very XNNPACK path our programs take (the recipe's quantizer and
  partitioners), as dynamically quantized 8-bit activations x 8-bit per-channel weights (the encoders and lm_head),
  x 4-bit group-32 weights (the decoder), and in fp32 -> the ceilings for prefill and for the encoders;
- the co-tenant check: CPU time other processes got during a measurement (niced and stolen ticks from /proc/stat,
  and busy time not spent by the measured process and its children). On 2 vCPUs a co-tenant halves every
  2-thread figure, so each measurement carries its check.

    python -m benchmarks.anchors.machine --threads 2 --json machine.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

BANDWIDTH_KERNEL = r"""
// Sum a large float buffer, one contiguous stream per thread; prints GB/s of each repetition.
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

int main(int argc, char **argv) {
    size_t bytes = (size_t)atoll(argv[1]);
    int reps = atoi(argv[2]);
    size_t n = bytes / sizeof(float);
    float *a = aligned_alloc(64, (bytes + 63) / 64 * 64);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7);   // first touch by the thread that reads it
    volatile float sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        float total = 0;
        #pragma omp parallel reduction(+:total)
        {
            int t = omp_get_thread_num(), k = omp_get_num_threads();
            size_t lo = n / k * t, hi = t == k - 1 ? n : n / k * (t + 1);
#if defined(__AVX512F__)
            __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
            size_t i = lo;
            for (; i + 64 <= hi; i += 64) {
                s0 = _mm512_add_ps(s0, _mm512_load_ps(a + i));
                s1 = _mm512_add_ps(s1, _mm512_load_ps(a + i + 16));
                s2 = _mm512_add_ps(s2, _mm512_load_ps(a + i + 32));
                s3 = _mm512_add_ps(s3, _mm512_load_ps(a + i + 48));
            }
            float part = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
#else
            __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
            size_t i = lo;
            for (; i + 32 <= hi; i += 32) {
                s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i));
                s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + 8));
                s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + 16));
                s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + 24));
            }
            float lanes[8], part = 0;
            _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
            for (int j = 0; j < 8; j++) part += lanes[j];
#endif
            for (; i < hi; i++) part += a[i];
            total += part;
        }
        double dt = now() - t0;
        sink += total;
        printf("%.3f\n", bytes / dt / 1e9);
    }
    free(a);
    return sink == 12345.f;
}
"""


@dataclass(frozen=True)
class CpuTicks:
    """One /proc/stat 'cpu' line: what every CPU of this guest spent its time on since boot."""

    user: int
    nice: int
    system: int
    idle: int
    steal: int

    @classmethod
    def now(cls) -> "CpuTicks":
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, idle = fields[:4]
        steal = fields[7] if len(fields) > 7 else 0
        return cls(user, nice, system, idle, steal)


def _own_cpu_s() -> float:
    """CPU seconds of this process and of the children it has waited for (subprocess.run waits)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def cotenant_check(before: CpuTicks, after: CpuTicks, own_cpu_s: float = 0.0) -> dict[str, Any]:
    """CPU other processes used during a measurement: niced and stolen ticks (a co-tenant's guest or niced jobs,
    hidden from ps) and busy time not accounted for by the measured process and its children."""
    hz = os.sysconf("SC_CLK_TCK")
    busy = (after.user - before.user) + (after.system - before.system)
    nice, steal = after.nice - before.nice, after.steal - before.steal
    total = busy + nice + steal + (after.idle - before.idle)
    others_s = max(0.0, (busy + nice) / hz - own_cpu_s)
    wall_cpu_s = total / hz  # CPU seconds the machine had (all CPUs) during the measurement
    return {"nice_ticks": nice, "steal_ticks": steal, "busy_ticks": busy, "total_ticks": total,
            "others_cpu_s": round(others_s, 2), "machine_cpu_s": round(wall_cpu_s, 2),
            # 2 % of the machine's CPU time is the noise of an idle system (kernel threads, this script).
            "quiet": steal <= max(1, total // 100) and others_s <= 0.02 * wall_cpu_s}


def checked(fn: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run `fn`, returning its result with the co-tenant check of its duration."""
    before, own = CpuTicks.now(), _own_cpu_s()
    result = fn()
    return result, cotenant_check(before, CpuTicks.now(), _own_cpu_s() - own)


def summary(samples: list[float], unit: str) -> dict[str, Any]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples),
            "unit": unit, "samples": samples}


def build_bandwidth_kernel(cache_dir: Path) -> Path:
    """Compile the kernel once per cache (it is 60 lines of C; gcc or clang with OpenMP)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    source, binary = cache_dir / "bandwidth.c", cache_dir / "bandwidth"
    if not (binary.exists() and source.exists() and source.read_text() == BANDWIDTH_KERNEL):
        source.write_text(BANDWIDTH_KERNEL)
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-O3", "-march=native", "-fopenmp", str(source), "-o", str(binary)], check=True)
    return binary


def read_bandwidth(threads: int, cache_dir: Path, gib: float = 2.0, reps: int = 7) -> dict[str, Any]:
    """Streaming read GB/s (1e9 B/s) with `threads` streams; the first pass is a warm-up and dropped."""
    binary = build_bandwidth_kernel(cache_dir)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_PROC_BIND": "spread"}
    out, check = checked(lambda: subprocess.run([str(binary), str(int(gib * (1 << 30))), str(reps + 1)], env=env,
                                                check=True, capture_output=True, text=True).stdout)
    samples = [float(x) for x in out.split()][1:]
    return {**summary(samples, "GB/s"), "threads": threads, "buffer_gib": gib, "cotenant": check}


# --- GEMM ceilings -----------------------------------------------------------------------------------------

# (rows, in_features, out_features): the decoder's MLP up-projection at a 512-token prefill chunk. The encoders'
# linears are of the same size class (vision 1152 -> 4304 over ~1000 patches, audio 1280 -> 5120 over 1500 frames).
GEMM_SHAPE = (512, 2560, 7168)
# Which recipe rule each ceiling borrows its scheme from (prefixes the xnnpack-8da4w rules match), and the method
# whose partitioners lower it.
GEMM_KINDS = {
    "int8_8da8w": ("vision.encoder.layers.0.mlp.fc1", "vision_encoder", "xnnpack-8da4w"),
    "int4_8da4w": ("llm.model.layers.0.mlp.up_proj", "text_decoder", "xnnpack-8da4w"),
    "fp32": ("llm.model.layers.0.mlp.up_proj", "text_decoder", "xnnpack-fp32"),
}


def packed_weight_bytes(in_features: int, out_features: int, bits: int) -> float:
    """Bytes XNNPACK reads for one linear's packed weights: 4-bit in groups of 32 with a bf16 scale each (4.5 bits a
    weight), 8-bit per output channel with a float32 scale per row."""
    if bits == 4:
        return in_features * out_features * 4.5 / 8
    return in_features * out_features + 4 * out_features


def write_program(lowered, path: Path) -> Path:
    """One lowered method as the `forward` of a .pte at `path`."""
    from megrez_mobile.export.lowering import to_executorch

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        to_executorch({"forward": lowered}, {}).write_to_file(f)
    return path


def export_once(path: Path, export: Callable[[Path], Any]) -> Path:
    """`export(path)` unless `path` already exists (a cache keyed by its name)."""
    if not path.exists():
        with warnings.catch_warnings():  # torchao's deprecation chatter, once per quantized tensor
            warnings.simplefilter("ignore")
            export(path)
    return path


def load_forward(path: Path, threads: int):
    """The `forward` method of a .pte, with our runtime kernels registered and `threads` threads."""
    from megrez_mobile.runtime.session import load_runtime_kernels

    load_runtime_kernels()
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from executorch.runtime import Runtime

    _unsafe_reset_threadpool(threads)
    return Runtime.get().load_program(path).load_method("forward")


def time_calls(method, inputs: list, reps: int) -> tuple[list[float], dict[str, Any]]:
    """Seconds of each of `reps` calls after one warm-up call (XNNPACK packs on the first), with the co-tenant
    check over them."""
    method.execute(inputs)

    def run() -> list[float]:
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            method.execute(inputs)
            times.append(time.perf_counter() - start)
        return times

    return checked(run)


def export_linear(kind: str, shape: tuple[int, int, int], path: Path) -> Path:
    """One nn.Linear quantized by the named recipe's rule and lowered by our own partitioners into a .pte."""
    import torch
    from torch import nn

    from megrez_mobile.export.lowering import lower_method
    from megrez_mobile.export.quantize import quantize_modules
    from megrez_mobile.export.recipe import Recipe

    name, method, recipe_name = GEMM_KINDS[kind]
    rows, k, n = shape
    torch.manual_seed(0)
    linear = nn.Linear(k, n, bias=False)
    with torch.no_grad():
        linear.weight.normal_(0, 0.02)
    recipe = Recipe.load(recipe_name)
    quantize_modules(recipe, linear, prefix=name)
    with torch.no_grad():
        program = torch.export.export(linear.eval(), (torch.randn(rows, k),), strict=False)
    lowered, _ = lower_method(recipe, method, program)
    return write_program(lowered, path)


def gemm_ceiling(kind: str, threads: int, cache_dir: Path, shape: tuple[int, int, int] = GEMM_SHAPE,
                 reps: int = 7) -> dict[str, Any]:
    """GOP/s (2 * rows * in * out per call) of one linear of `kind`, median over `reps` after a warm-up."""
    import torch

    rows, k, n = shape
    path = export_once(cache_dir / f"gemm-{kind}-{rows}x{k}x{n}.pte", lambda p: export_linear(kind, shape, p))
    times, check = time_calls(load_forward(path, threads), [torch.randn(rows, k)], reps)
    ops = 2.0 * rows * k * n
    return {**summary([ops / t / 1e9 for t in times], "GOP/s"), "kind": kind, "shape": list(shape),
            "threads": threads, "cotenant": check}


def measure(threads: int, cache_dir: Path) -> dict[str, Any]:
    """Everything above for `threads` (and 1 thread for the bandwidth, to show how it scales)."""
    result: dict[str, Any] = {"bandwidth": {str(t): read_bandwidth(t, cache_dir) for t in sorted({1, threads})}}
    result["gemm"] = {kind: gemm_ceiling(kind, threads, cache_dir) for kind in GEMM_KINDS}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "megrez-bench-machine")
    parser.add_argument("--json", type=Path, required=True)
    ns = parser.parse_args()
    from megrez_mobile.logs import quiet_library_logs

    quiet_library_logs()
    ns.json.write_text(json.dumps(measure(ns.threads, ns.cache), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
