"""The llama.cpp Q4_0 anchor of the same-run benchmark: a random-weight GGUF with the Megrez-3B decoder's exact dims,
and llama.cpp's prefill and decode speed on it, measured in a fresh process.

    python -m benchmarks.anchors.llama_cpp --cache DIR --json OUT            # full size (writes ~1.7 GB once)
    python -m benchmarks.anchors.llama_cpp --cache DIR --json OUT --tiny     # 2 layers of hidden 64: seconds

Needs llama-cpp-python (built from source here, -march=native) and gguf; `install_command()` says how, and
`--install` runs it. Nothing here depends on the megrez_mobile package or on torch.

The GGUF is what `llama-quantize ... Q4_0` makes of a Llama model with these dims: every block linear and
token_embd in Q4_0, output (lm_head) in Q6_K (Q8_0 when its rows are not a multiple of 256, llama-quantize's own
rule), norms in F32. With the ggml quantizer (the default while llama-cpp-python is installed) the bytes come from
ggml's own `ggml_quantize_chunk`, the function llama-quantize calls; the numpy fallback (gguf.quants) has no Q6_K, so
there output is Q8_0 (8.5 instead of 6.5625 bits per weight: 76 MB more read per token at full size).
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

# ---------------------------------------------------------------------------------------------------------------------
# Install
# ---------------------------------------------------------------------------------------------------------------------

LLAMA_CPP_PYTHON_VERSION = "0.3.36"  # vendors ggml-org/llama.cpp@0c1e57098, the build perf_anchors.md measured
GGUF_VERSION = "0.19.0"  # the gguf-py of that llama.cpp tree
# -march=native, nothing but the shared libraries the bindings load: no mtmd (LLAVA_BUILD), tools, tests, examples or
# server. The system cmake (>= 3.21) and ninja are used when present; otherwise scikit-build-core fetches both from
# PyPI by itself.
CMAKE_ARGS = ("-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF "
              "-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF")
# ...but without AMX, which -march=native turns on on Sapphire Rapids and later: this llama.cpp's AMX matmul
# (ggml_backend_amx_mul_mat) segfaults on the first batch of more than one token (seen here on an AMX Xeon VM, 1 and
# 2 threads; upstream ggml-org/llama.cpp#20824, fix proposed in #26954). Explicit -mno-* flags win over -march=native
# in GCC and clang whatever their order; on CPUs without AMX they change nothing. The Q4_0 matmuls then take ggml's
# CPU_REPACK (AVX-512) path, as on AMD.
NO_AMX_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


class MissingDependency(RuntimeError):
    """llama-cpp-python or gguf is not importable by the given interpreter; the message has the install command."""


def install_command(python: str | os.PathLike[str] = sys.executable, jobs: int = 2, reinstall: bool = False) -> str:
    """The shell command that builds llama-cpp-python from source into `python`'s environment (about 9 min on 2
    loaded cores). --no-cache-dir: pip would otherwise reuse a wheel it built earlier, whatever CMAKE_ARGS says now.
    reinstall: replace an installed build (--force-reinstall --no-deps)."""
    return (f'CMAKE_ARGS="{CMAKE_ARGS}" CFLAGS="{NO_AMX_FLAGS}" CXXFLAGS="{NO_AMX_FLAGS}" '
            f"CMAKE_BUILD_PARALLEL_LEVEL={jobs} {shlex.quote(str(python))} -m pip install --no-cache-dir "
            + ("--force-reinstall --no-deps " if reinstall else "")
            + f"--no-binary llama-cpp-python llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} gguf=={GGUF_VERSION}")


def installed_versions(python: str | os.PathLike[str] = sys.executable) -> dict[str, str] | None:
    """{"llama_cpp": ..., "gguf": ...} as importable by `python`, or None when either import fails."""
    # amx_build: the CPU library has ggml's AMX code (its "not ready" message is compiled only with it).
    code = ("import json, pathlib, importlib.metadata as m, llama_cpp, gguf; "
            "lib = pathlib.Path(llama_cpp.__file__).parent / 'lib'; "
            "amx = any(b'AMX is not ready to be used' in p.read_bytes() for p in lib.glob('libggml-cpu*.so*')); "
            "print(json.dumps({'llama_cpp': llama_cpp.__version__, 'gguf': m.version('gguf'), 'amx_build': amx}))")
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_has_amx() -> bool:
    try:
        return " amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def ensure_installed(python: str | os.PathLike[str] = sys.executable, install: bool = False) -> str:
    """'llama-cpp-python X, gguf Y' when both import in `python`'s environment (and the build is not one whose AMX
    path would crash on this CPU). When not: with install=True build and install them (minutes), else raise
    MissingDependency whose message is the exact command to run."""
    found = installed_versions(python)
    broken = found is not None and found.get("amx_build") and _cpu_has_amx()
    if (found is None or broken) and install:
        cmd = install_command(python, reinstall=bool(broken))
        print(f"installing: {cmd}", file=sys.stderr, flush=True)
        subprocess.run(cmd, shell=True, check=True)
        found = installed_versions(python)
        broken = found is not None and found.get("amx_build") and _cpu_has_amx()
    if found is None:
        raise MissingDependency(f"llama-cpp-python and gguf are not importable by {python}; install them with:\n"
                                f"  {install_command(python)}")
    if broken:
        raise MissingDependency(f"the llama-cpp-python in {python} was built with AMX, whose matmul crashes on this CPU "
                                f"(see NO_AMX_FLAGS); rebuild it with:\n  {install_command(python, reinstall=True)}")
    return f"llama-cpp-python {found['llama_cpp']}, gguf {found['gguf']}"


# ---------------------------------------------------------------------------------------------------------------------
# The random-weight GGUF
# ---------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Dims:
    """The decoder's dims (megrez_spec.md §1; defaults are the real model's) and the seed of the random weights."""
    vocab: int = 122880
    hidden: int = 2560
    intermediate: int = 7168
    layers: int = 32
    heads: int = 40
    kv_heads: int = 10
    rms_eps: float = 1e-5
    rope_theta: float = 5e6
    context: int = 4096
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


FULL = Dims()
# 4 query heads per KV head like the real 40/10; every row length a multiple of 32 (Q4_0's block).
TINY = Dims(vocab=1024, hidden=64, intermediate=128, layers=2, heads=4, kv_heads=1)

WEIGHT_STD = 0.02
CHUNK_ELEMENTS = 1 << 24  # 16 Mi weights (64 MB of float32) generated and quantized at a time
QK_K = 256


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # numpy order: (rows, row length); GGUF's ne is the reverse
    qtype: str  # a gguf.GGMLQuantizationType name
    kind: str  # "block_linear" | "output" | "token_embd" | "norm"


def _output_qtype(dims: Dims, quantizer: str) -> str:
    # llama_tensor_get_type (src/llama-quant.cpp) for LLAMA_FTYPE_MOSTLY_Q4_0: output -> Q6_K, or Q8_0 when the row
    # length is not a multiple of QK_K. gguf.quants cannot make Q6_K.
    return "Q6_K" if quantizer == "ggml" and dims.hidden % QK_K == 0 else "Q8_0"


def tensor_specs(dims: Dims, quantizer: str = "ggml") -> list[TensorSpec]:
    """Every tensor of the GGUF in file order, with llama.cpp's names and the types llama-quantize Q4_0 gives them."""
    h, i, kv = dims.hidden, dims.intermediate, dims.kv_dim
    specs = [TensorSpec("token_embd.weight", (dims.vocab, h), "Q4_0", "token_embd")]
    for n in range(dims.layers):
        b = f"blk.{n}."
        specs += [
            TensorSpec(b + "attn_norm.weight", (h,), "F32", "norm"),
            TensorSpec(b + "attn_q.weight", (h, h), "Q4_0", "block_linear"),
            TensorSpec(b + "attn_k.weight", (kv, h), "Q4_0", "block_linear"),
            TensorSpec(b + "attn_v.weight", (kv, h), "Q4_0", "block_linear"),
            TensorSpec(b + "attn_output.weight", (h, h), "Q4_0", "block_linear"),
            TensorSpec(b + "ffn_norm.weight", (h,), "F32", "norm"),
            TensorSpec(b + "ffn_gate.weight", (i, h), "Q4_0", "block_linear"),
            TensorSpec(b + "ffn_up.weight", (i, h), "Q4_0", "block_linear"),
            TensorSpec(b + "ffn_down.weight", (h, i), "Q4_0", "block_linear"),
        ]
    specs += [TensorSpec("output_norm.weight", (h,), "F32", "norm"),
              TensorSpec("output.weight", (dims.vocab, h), _output_qtype(dims, quantizer), "output")]
    return specs


def _nbytes(shape: Sequence[int], qtype_name: str) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype_name]]
    n = 1
    for d in shape:
        n *= d
    assert shape[-1] % block == 0, (shape, qtype_name)
    return n // block * size


class _GgmlQuantizer:
    """ggml_quantize_chunk from the libggml-base that llama-cpp-python ships: byte for byte what llama-quantize writes
    (no importance matrix), and far faster than numpy."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or spec.origin is None:
            raise MissingDependency("llama_cpp is not importable: " + install_command())
        libdir = Path(spec.origin).parent / "lib"
        cands = sorted(libdir.glob("libggml-base.*"))
        if not cands:
            raise MissingDependency(f"no libggml-base in {libdir}")
        self.lib = ctypes.CDLL(str(cands[0]))
        f = self.lib.ggml_quantize_chunk
        f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                      ctypes.c_void_p]
        f.restype = ctypes.c_size_t
        self.fn = f

    def __call__(self, rows, qtype_name: str):
        import gguf
        import numpy as np

        rows = np.ascontiguousarray(rows, dtype=np.float32)
        n, k = rows.shape
        out = np.empty(_nbytes(rows.shape, qtype_name), dtype=np.uint8)
        written = self.fn(int(gguf.GGMLQuantizationType[qtype_name]), rows.ctypes.data, out.ctypes.data, 0, n, k, None)
        assert written == out.nbytes, (written, out.nbytes)
        return out


def _numpy_quantize(rows, qtype_name: str):
    import gguf

    return gguf.quants.quantize(rows, gguf.GGMLQuantizationType[qtype_name]).reshape(-1)


def default_quantizer() -> str:
    return "ggml" if importlib.util.find_spec("llama_cpp") is not None else "numpy"


def write_gguf(path: str | os.PathLike[str], dims: Dims, quantizer: str | None = None) -> dict[str, Any]:
    """Write the random-weight GGUF to `path`, one chunk of rows at a time (memory stays near CHUNK_ELEMENTS floats,
    whatever the model size). Returns timing and memory figures of the write."""
    import gguf
    import numpy as np

    quantizer = quantizer or default_quantizer()
    quant = _GgmlQuantizer() if quantizer == "ggml" else _numpy_quantize
    specs = tensor_specs(dims, quantizer)
    t0 = time.perf_counter()
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("megrez-3b-decoder-random")
    w.add_context_length(dims.context)
    w.add_embedding_length(dims.hidden)
    w.add_block_count(dims.layers)
    w.add_feed_forward_length(dims.intermediate)
    w.add_head_count(dims.heads)
    w.add_head_count_kv(dims.kv_heads)
    w.add_layer_norm_rms_eps(dims.rms_eps)
    w.add_rope_freq_base(dims.rope_theta)
    w.add_rope_dimension_count(dims.head_dim)
    w.add_vocab_size(dims.vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # No tokenizer: llama.cpp's vocab type NONE, with `llama.vocab_size` dummy tokens; we feed token ids.
    w.add_tokenizer_model("none")
    for s in specs:
        w.add_tensor_info(s.name, s.shape, np.dtype(np.float32), _nbytes(s.shape, s.qtype),
                          raw_dtype=gguf.GGMLQuantizationType[s.qtype])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None and len(w.fout) == 1
    fout = w.fout[0]
    w.write_padding(fout, fout.tell())
    t_gen = t_quant = t_io = 0.0
    for idx, s in enumerate(specs):
        start = fout.tell()
        if s.kind == "norm":
            fout.write(np.ones(s.shape, dtype=np.float32).tobytes())  # RMSNorm's own init; 0.02*randn would zero the net
        else:
            rng = np.random.default_rng([dims.seed, idx])
            rows_total, k = s.shape
            step = max(1, CHUNK_ELEMENTS // k)
            for r0 in range(0, rows_total, step):
                t = time.perf_counter()
                chunk = rng.standard_normal((min(step, rows_total - r0), k), dtype=np.float32)
                chunk *= WEIGHT_STD
                t_gen += time.perf_counter() - t
                t = time.perf_counter()
                q = quant(chunk, s.qtype)
                t_quant += time.perf_counter() - t
                t = time.perf_counter()
                fout.write(memoryview(q))
                t_io += time.perf_counter() - t
                del chunk, q
        assert fout.tell() - start == _nbytes(s.shape, s.qtype), s
        w.write_padding(fout, fout.tell() - start)
    fout.flush()
    os.fsync(fout.fileno())
    w.close()
    import resource

    return {"quantizer": quantizer, "seconds": round(time.perf_counter() - t0, 3), "random_s": round(t_gen, 3),
            "quantize_s": round(t_quant, 3), "write_s": round(t_io, 3),
            "weights": sum(_numel(s.shape) for s in specs),
            "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _cache_key(dims: Dims, quantizer: str) -> dict[str, Any]:
    return {"format": 1, "dims": dataclasses.asdict(dims), "weight_std": WEIGHT_STD, "quantizer": quantizer,
            "gguf": importlib.metadata.version("gguf"),
            "llama_cpp": (importlib.metadata.version("llama_cpp_python") if quantizer == "ggml" else None),
            "types": {s.kind: s.qtype for s in tensor_specs(dims, quantizer)}}


def prepare_gguf(cache_dir: str | os.PathLike[str], dims: Dims = FULL, quantizer: str | None = None) -> Path:
    """The GGUF for `dims` in cache_dir: reused when its JSON beside it matches (dims, seed, quantizer, gguf and
    llama-cpp-python versions) and the file has the size recorded, else written to a temp file and renamed."""
    quantizer = quantizer or default_quantizer()
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    key = _cache_key(dims, quantizer)
    tag = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = cache / f"megrez-decoder-random-q4_0-L{dims.layers}-h{dims.hidden}-{tag}.gguf"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("key") == key and meta.get("size") == path.stat().st_size:
                return path
        except (ValueError, OSError):
            pass
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        stats = write_gguf(tmp, dims, quantizer)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    meta = {"key": key, "size": path.stat().st_size, "written": time.strftime("%Y-%m-%dT%H:%M:%S"), "write": stats}
    tmp_meta = meta_path.with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_meta, meta_path)
    return path


def gguf_summary(gguf_path: str | os.PathLike[str]) -> dict[str, Any]:
    """From the file's tensor info: its size, the types of its tensors, and the bytes each decoded token reads
    (every block linear + output; token_embd is a one-row gather, norms are negligible)."""
    import gguf

    r = gguf.GGUFReader(str(gguf_path))
    by_kind: dict[str, int] = {"block_linear": 0, "output": 0, "token_embd": 0, "norm": 0, "other": 0}
    types: dict[str, str] = {}
    for t in r.tensors:
        types[t.name] = t.tensor_type.name
        by_kind[_kind(t.name)] += int(t.n_bytes)
    fields = {k: r.fields[k].contents() for k in r.fields if not k.startswith("GGUF.")}
    del r
    return {"file_bytes": os.path.getsize(gguf_path), "tensor_types": types,
            "type_counts": {ty: list(types.values()).count(ty) for ty in sorted(set(types.values()))},
            "bytes_by_kind": by_kind, "bytes_per_token": by_kind["block_linear"] + by_kind["output"],
            "metadata": fields}


_BLOCK_LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def _kind(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name == "token_embd.weight":
        return "token_embd"
    if name.endswith("norm.weight"):
        return "norm"
    if name.startswith("blk.") and name.split(".")[2] in _BLOCK_LINEARS:
        return "block_linear"
    return "other"


# ---------------------------------------------------------------------------------------------------------------------
# Measurement (in a fresh process)
# ---------------------------------------------------------------------------------------------------------------------

_ROOT = Path(__file__).resolve().parents[2]


def _run_worker(job: dict[str, Any], python: str | os.PathLike[str], timeout: float | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llama-anchor-") as td:
        job_path, out_path, log_path = Path(td) / "job.json", Path(td) / "out.json", Path(td) / "stderr.log"
        job = dict(job, out=str(out_path))
        job_path.write_text(json.dumps(job))
        code = (f"import sys; sys.path.insert(0, {str(_ROOT)!r}); "
                "from benchmarks.anchors.llama_cpp import _worker_main; _worker_main(sys.argv[1])")
        t0 = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.run([str(python), "-c", code, str(job_path)], stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout, cwd=td, env={**os.environ, "PYTHONHASHSEED": "0"})
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not out_path.exists():
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"llama.cpp worker failed (exit {proc.returncode}):\n{tail}")
        res = json.loads(out_path.read_text())
        res["process_wall_s"] = round(wall, 3)
        res["llama_log"] = _parse_log(log_path.read_text(errors="replace"))
        return res


def _parse_log(text: str) -> dict[str, Any]:
    """The buffers llama.cpp reported while loading (MiB): where the weights went (CPU_Mapped = the mmapped file,
    CPU_REPACK = repacked copies, AMX = AMX copies), the KV cache and the compute buffer; and flash attention's state."""
    import re

    out: dict[str, Any] = {}
    for m in re.finditer(r"load_tensors:\s+(\S+) model buffer size =\s+([\d.]+) MiB", text):
        out.setdefault("model_buffers_MiB", {})[m.group(1)] = float(m.group(2))
    for key, pat in (("kv_cache_MiB", r"(\S+) KV buffer size =\s+([\d.]+) MiB"),
                     ("compute_buffer_MiB", r"(\S+) compute buffer size =\s+([\d.]+) MiB"),
                     ("output_buffer_MiB", r"(\S+)\s+output buffer size =\s+([\d.]+) MiB")):
        for m in re.finditer(pat, text):
            out.setdefault(key, {})[m.group(1)] = float(m.group(2))
    fa = re.search(r"Flash Attention (?:was auto, set to )?(enabled|disabled)", text)
    if fa:
        out["flash_attn"] = fa.group(1)
    return out


def measure(gguf_path: str | os.PathLike[str], threads: int = 2, prefill_lengths: Sequence[int] = (128, 512),
            decode_tokens: int = 64, decode_contexts: Sequence[int] = (128, 2048), reps: int = 5, warmup: int = 1,
            *, n_ctx: int = 4096, n_batch: int = 512, seed: int = 0, python: str | os.PathLike[str] = sys.executable,
            timeout: float | None = 3600) -> dict[str, Any]:
    """llama.cpp's prefill and decode speed on `gguf_path`, measured in a fresh `python` process (so its peak RSS is
    the run's own).

    prefill_<N>: N random ids decoded from an empty KV cache in n_batch chunks, tok/s = N / wall.
    decode_at_<C>: C random ids prefilled once (untimed; `fill_s`), then per run decode_tokens single-token decodes,
    each fed the greedy argmax of the previous logits (the argmax, ~50 us at vocab 122880, is inside the timed loop);
    tok/s over those. Before each run the KV cache is cut back to the C filled positions (llama_memory_seq_rm), the
    state a clear + refill would give.
    Each figure: `warmup` untimed runs, then `reps` timed ones; prefill runs start from a cleared KV cache. Alongside the
    Python-side tok/s, llama.cpp's own counters (llama_perf_context: t_p_eval_ms/n_p_eval for prompt batches,
    t_eval_ms/n_eval for single tokens) give `perf_tok_s` per sample. Per sample too, what else ran meanwhile
    (`others_cpu_s`, `nice_ticks`, `steal_ticks`: see _Contention): only samples with others_cpu_s near 0 are clean.
    """
    job = {"mode": "measure", "gguf": str(gguf_path), "threads": threads, "prefill_lengths": list(prefill_lengths),
           "decode_tokens": decode_tokens, "decode_contexts": list(decode_contexts), "reps": reps, "warmup": warmup,
           "n_ctx": n_ctx, "n_batch": n_batch, "seed": seed}
    for c in decode_contexts:
        if c + decode_tokens > n_ctx:
            raise ValueError(f"context {c} + {decode_tokens} decoded tokens > n_ctx {n_ctx}")
    if max(prefill_lengths, default=0) > n_ctx:
        raise ValueError(f"prefill longer than n_ctx {n_ctx}")
    res = _run_worker(job, python, timeout)
    summ = gguf_summary(gguf_path)
    res["gguf"] = {k: summ[k] for k in ("file_bytes", "type_counts", "bytes_by_kind", "bytes_per_token")}
    res["gguf"]["path"] = str(gguf_path)
    res["file_bytes"], res["bytes_per_token"] = summ["file_bytes"], summ["bytes_per_token"]
    metrics: dict[str, Any] = {}
    for name, fig in res["figures"].items():
        if name.startswith("decode"):
            fig["effective_GBps_at_median"] = round(fig["median"] * summ["bytes_per_token"] / 1e9, 2)
            key, tokens = f"ctx{fig['context']}", fig["tokens"]
        else:
            key, tokens = str(fig["tokens"]), fig["tokens"]
        kind = name.split("_")[0]
        metrics[f"{kind}_tok_s@{key}"] = {**_stats(fig["samples"]), "unit": "tok/s"}
        metrics[f"{kind}_wall_s@{key}"] = {**_stats([tokens / x for x in fig["samples"]]), "unit": "s"}
    # the same figures under the names benchmarks/same_run.py merges across runtimes
    res["metrics"] = metrics
    res["peak_rss_bytes"] = res["memory"]["ru_maxrss_bytes"]
    res["peak_rss_mib"] = res["peak_rss_bytes"] / (1 << 20)
    return res


def probe_logits(gguf_path: str | os.PathLike[str], ids: Sequence[int], threads: int = 2,
                 python: str | os.PathLike[str] = sys.executable):
    """The logits (float32, one row per id) of `ids` decoded in one batch from an empty cache, in a fresh process."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="llama-logits-") as td:
        npy = Path(td) / "logits.npy"
        _run_worker({"mode": "logits", "gguf": str(gguf_path), "threads": threads, "ids": list(map(int, ids)),
                     "npy": str(npy)}, python, 600)
        return np.load(npy)


class _Contention:
    """What else ran on the machine during a sample, from /proc/stat: `nice` ticks (niced processes, e.g. the co-tenant
    of perf_anchors.md), `steal` ticks (the hypervisor), and `others_cpu_s`: CPU seconds that all other processes used
    (busy time of the whole machine minus this process's own user+system time). On 2 cores a 2-thread llama.cpp run
    stalls at every barrier whenever another process holds a core, so a sample with others_cpu_s well above 0 is slow
    for that reason, not for llama.cpp's."""

    HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self) -> None:
        self.t0 = self._snap()

    @classmethod
    def _snap(cls) -> tuple[float, int, int, float]:
        import resource

        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            v = [0] * 8
        v += [0] * (8 - len(v))
        busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / cls.HZ  # user nice system irq softirq
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return busy, v[1], v[7], ru.ru_utime + ru.ru_stime

    def delta(self) -> dict[str, float]:
        b, n, st, own = self._snap()
        b0, n0, st0, own0 = self.t0
        others = max(0.0, (b - b0) - (own - own0))  # clamped: ticks are 10 ms, rusage is finer
        return {"nice_ticks": n - n0, "steal_ticks": st - st0, "others_cpu_s": round(others, 2)}


def _proc_status() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    out[k + "_bytes"] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def _contention_lists(cont: list[dict[str, float]]) -> dict[str, list[float]]:
    return {k: [c[k] for c in cont] for k in ("others_cpu_s", "nice_ticks", "steal_ticks")}


def _stats(samples: list[float]) -> dict[str, Any]:
    return {"samples": [round(x, 3) for x in samples], "median": round(statistics.median(samples), 3),
            "min": round(min(samples), 3), "max": round(max(samples), 3)}


def _worker_main(job_path: str) -> None:
    import resource

    import numpy as np

    job = json.loads(Path(job_path).read_text())
    import llama_cpp as L

    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.use_mmap = True
    mp.n_gpu_layers = 0
    rss_before_load = _proc_status().get("VmRSS_bytes", 0)  # Python + numpy + llama_cpp imported
    t = time.perf_counter()
    model = L.llama_model_load_from_file(job["gguf"].encode(), mp)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {job['gguf']}")
    cp = L.llama_context_default_params()
    cp.n_ctx = job.get("n_ctx", 4096)
    cp.n_batch = cp.n_ubatch = job.get("n_batch", 512)
    cp.n_threads = cp.n_threads_batch = job["threads"]
    cp.no_perf = False
    if job["mode"] == "logits":
        cp.n_outputs_max_per_seq = 0  # default 1: a batch asking for more outputs crashes llama_decode
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise RuntimeError("llama_init_from_model failed")
    load_s = time.perf_counter() - t
    mem = L.llama_get_memory(ctx)
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    n_batch = cp.n_batch

    def decode(ids) -> None:
        for i in range(0, len(ids), n_batch):
            part = ids[i:i + n_batch]
            arr = (L.llama_token * len(part))(*map(int, part))
            rc = L.llama_decode(ctx, L.llama_batch_get_one(arr, len(part)))
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
        L.llama_synchronize(ctx)

    def last_logits():
        return np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))

    if job["mode"] == "logits":
        ids = job["ids"]
        batch = L.llama_batch_init(len(ids), 0, 1)
        batch.n_tokens = len(ids)
        for i, tok in enumerate(ids):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1
        L.llama_memory_clear(mem, True)
        rc = L.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        L.llama_synchronize(ctx)
        out = np.stack([np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,)).copy()
                        for i in range(len(ids))])
        L.llama_batch_free(batch)
        np.save(job["npy"], out)
        Path(job["out"]).write_text(json.dumps({"n_vocab": n_vocab}))
        return

    rng = np.random.default_rng(job["seed"])
    figures: dict[str, Any] = {}
    reps, warmup = job["reps"], job["warmup"]

    for n in job["prefill_lengths"]:
        ids = rng.integers(0, n_vocab, n).tolist()
        py, perf, cont = [], [], []
        for r in range(warmup + reps):
            L.llama_memory_clear(mem, True)
            L.llama_perf_context_reset(ctx)
            c0 = _Contention()
            t = time.perf_counter()
            decode(ids)
            dt = time.perf_counter() - t
            p = L.llama_perf_context(ctx)
            if r >= warmup:
                py.append(n / dt)
                perf.append(p.n_p_eval / (p.t_p_eval_ms / 1e3) if p.t_p_eval_ms > 0 else float("nan"))
                cont.append(c0.delta())
        figures[f"prefill_{n}"] = {**_stats(py), "unit": "tok/s", "tokens": n, "perf_tok_s": _stats(perf),
                                   **_contention_lists(cont)}

    nd = job["decode_tokens"]
    for c in job["decode_contexts"]:
        ids = rng.integers(0, n_vocab, c).tolist()
        L.llama_memory_clear(mem, True)
        t = time.perf_counter()
        decode(ids)
        fill_s = time.perf_counter() - t
        first = int(np.argmax(last_logits()))
        py, perf, cont = [], [], []
        for r in range(warmup + reps):
            # Back to exactly the C filled positions: what a clear + refill gives, without redoing the fill (34 s
            # per rep at C=2048 on the full-size model at 2 threads).
            if not L.llama_memory_seq_rm(mem, 0, c, -1) or L.llama_memory_seq_pos_max(mem, 0) != c - 1:
                raise RuntimeError("could not trim the KV cache back to the filled context")
            tok = first
            L.llama_perf_context_reset(ctx)
            one = (L.llama_token * 1)()
            c0 = _Contention()
            t = time.perf_counter()
            for _ in range(nd):
                one[0] = tok
                rc = L.llama_decode(ctx, L.llama_batch_get_one(one, 1))
                if rc != 0:
                    raise RuntimeError(f"llama_decode returned {rc}")
                tok = int(np.argmax(last_logits()))
            dt = time.perf_counter() - t
            p = L.llama_perf_context(ctx)
            if r >= warmup:
                py.append(nd / dt)
                perf.append(p.n_eval / (p.t_eval_ms / 1e3) if p.t_eval_ms > 0 else float("nan"))
                cont.append(c0.delta())
        figures[f"decode_at_{c}"] = {**_stats(py), "unit": "tok/s", "context": c, "tokens": nd,
                                     "next_token": "greedy argmax", "perf_tok_s": _stats(perf),
                                     **_contention_lists(cont), "fill_s": round(fill_s, 3)}

    status = _proc_status()
    result = {
        "runtime": "llama.cpp",
        "llama_cpp_python": L.__version__,
        "system_info": L.llama_print_system_info().decode(errors="replace").strip(),
        "config": {"threads": job["threads"], "n_ctx": cp.n_ctx, "n_batch": cp.n_batch, "n_ubatch": cp.n_ubatch,
                   "mmap": True, "flash_attn_type": int(getattr(cp, "flash_attn_type", -99)),
                   "type_k": int(cp.type_k), "type_v": int(cp.type_v), "reps": reps, "warmup": warmup,
                   "n_vocab": n_vocab},
        "load_s": round(load_s, 3),
        "figures": figures,
        "memory": {"ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, **status,
                   "rss_before_load_bytes": rss_before_load},
        "loadavg": os.getloadavg(),
    }
    L.llama_free(ctx)
    L.llama_model_free(model)
    Path(job["out"]).write_text(json.dumps(result, indent=1))


# ---------------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------------


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.anchors.llama_cpp", description=__doc__.split("\n")[0])
    ap.add_argument("--cache", required=True, help="folder for the GGUF (reused when its dims and versions match)")
    ap.add_argument("--json", required=True, help="where to write the result")
    ap.add_argument("--tiny", action="store_true", help="2 layers of hidden 64: a smoke run in seconds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill", type=_ints, default=[128, 512], help="comma-separated prompt lengths")
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--contexts", type=_ints, default=[128, 2048], help="comma-separated decode contexts")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quantizer", choices=["ggml", "numpy"], default=None,
                    help="ggml (default when llama-cpp-python is installed): output Q6_K like llama-quantize; "
                         "numpy (gguf.quants): output Q8_0")
    ap.add_argument("--install", action="store_true", help="build and install llama-cpp-python + gguf if missing")
    a = ap.parse_args(argv)
    versions = ensure_installed(sys.executable, install=a.install)
    dims = TINY if a.tiny else FULL
    t = time.perf_counter()
    path = prepare_gguf(a.cache, dims, a.quantizer)
    prep_s = time.perf_counter() - t
    print(f"{versions}; GGUF {path} ({path.stat().st_size:,} B, {prep_s:.1f} s)", flush=True)
    res = measure(path, threads=a.threads, prefill_lengths=a.prefill, decode_tokens=a.decode_tokens,
                  decode_contexts=a.contexts, reps=a.reps, warmup=a.warmup)
    res["dims"] = dataclasses.asdict(dims)
    res["versions"] = versions
    res["prepare_s"] = round(prep_s, 3)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=1))
    print(f"bytes/token {res['bytes_per_token']:,}; peak RSS {res['memory']['ru_maxrss_bytes'] / 2**30:.2f} GiB")
    for name, fig in res["figures"].items():
        print(f"  {name:16s} {fig['median']:10.2f} tok/s [{fig['min']:.2f}-{fig['max']:.2f}]  "
              f"llama.cpp perf {fig['perf_tok_s']['median']:.2f}  others' CPU s {fig['others_cpu_s']}")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
