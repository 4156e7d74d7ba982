"""ExecuTorch's own LLM export of a Llama with our decoder's exact dims, as an anchor for the same-run benchmark.

prepare(): the stock hydra entry point `python -m executorch.extension.llm.export.export_llm --config cfg.yaml`
(examples.models.llama.export_llama_lib.export_llama) in a subprocess, fed a random bf16 checkpoint in ExecuTorch's
Meta-style FQN layout (built tensor by tensor with a seeded generator in another subprocess, deleted afterwards):
    base.model_class=llama3, params.json = the dims below,
    model.use_kv_cache + use_sdpa_with_kv_cache (custom SDPA), dtype_override=fp32, enable_dynamic_shape (default),
    quantization.qmode=8da4w, group_size=32, embedding_quantize='4,32' (use_hqq default: HQQ scale-only),
    backend.xnnpack.enabled + extended_ops, export.max_seq_length=1024, export.max_context_length=4096.
The .pte is cached under --cache and reused while the dims, the options and the executorch/torch/torchao versions
are unchanged (a JSON record beside it, written after the .pte, both by rename).

measure(): a fresh subprocess drives the pip wheel's executorch.extension.llm.runner.TextLLMRunner (after the
custom-op and quantized-kernel imports and _unsafe_reset_threadpool(threads)), with token_callback=None.
TextLLMRunner 1.5.1 only takes text, so the tokenizer written here is a byte-level BPE without merges (one token
per byte of ASCII text): a prompt of exactly N tokens is BOS + (N-1) times "a", and the runner's own
Stats.num_prompt_tokens and its logged position are checked against N for every sample. One generate() takes at
most 1023 tokens: the runner's TextPrefiller would chunk a longer prompt at max_seq_len (1024), but the export
bounds the dynamic token dim at max_seq_len - 1, so any prompt of 1024+ tokens fails ("Attempted to resize a bounded
tensor with a maximum capacity of 1023 elements to 1024"). A 2,048-token context is therefore built with the
runner's own prefill() in pieces of <= 1023 tokens, then a generate() of one token. The runner 1.5.1 has no
ignore_eos: the export's metadata sets get_eos_ids to [vocab_size], an id argmax can never return, so every decode
runs its full length (checked against Stats.num_generated_tokens).

    python -m benchmarks.anchors.executorch_stock --cache DIR [--tiny] --json OUT
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Megrez-3B-Omni's decoder (megrez_spec.md section 1.1): LLaMA-2 style, GQA 40/10, untied lm_head.
MEGREZ_DIMS: dict[str, Any] = dict(
    vocab_size=122880, dim=2560, hidden_dim=7168, n_layers=32, n_heads=40, n_kv_heads=10, head_dim=64,
    norm_eps=1e-5, rope_theta=5_000_000.0,
)
# Same structure at a size that exports in seconds: every linear's input is a multiple of the group size (32).
TINY_DIMS: dict[str, Any] = dict(
    vocab_size=4096, dim=64, hidden_dim=128, n_layers=2, n_heads=4, n_kv_heads=1, head_dim=16,
    norm_eps=1e-5, rope_theta=5_000_000.0,
)
OPTIONS: dict[str, Any] = dict(
    qmode="8da4w", group_size=32, embedding_quantize="4,32", use_hqq=True,
    use_kv_cache=True, use_sdpa_with_kv_cache=True, dtype_override="fp32", enable_dynamic_shape=True,
    xnnpack=True, xnnpack_extended_ops=True, max_seq_length=1024, max_context_length=4096,
    checkpoint_dtype="bfloat16", checkpoint_seed=0, checkpoint_std=0.02,
)
BOS_ID = 1
RECORD_VERSION = 1
_SELF = Path(__file__).resolve()


# ---------------------------------------------------------------------------------------------------- small helpers

def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("executorch", "torch", "torchao")}


def _key(dims: dict, options: dict) -> dict:
    return {"record_version": RECORD_VERSION, "dims": dict(dims), "options": dict(options), "versions": _versions()}


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _status_kib(field: str, pid: str = "self") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _cotenant_ticks() -> int:
    """nice + steal ticks of /proc/stat's cpu line: time the kernel gave to niced jobs or to other guests."""
    try:
        f = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(f[2]) + int(f[8])
    except (OSError, IndexError, ValueError):
        return -1


def _run_measured(cmd: list[str], log: Path, cwd: Path | None = None, env: dict | None = None) -> dict:
    """Run cmd to completion; its wall time and the peak RSS of that very child (os.wait4's rusage)."""
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: take the child down with us
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_bytes()[-4000:].decode(errors="replace")
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} ... exited {proc.returncode}; log {log}:\n{tail}")
    return {"wall_s": round(wall, 2), "peak_rss_bytes": usage.ru_maxrss * 1024,
            "user_s": round(usage.ru_utime, 2), "sys_s": round(usage.ru_stime, 2)}


# ---------------------------------------------------------------------------------------------------- tokenizer

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable unicode table (what the ByteLevel pre-tokenizer and decoder use)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tokenizer_json(vocab_size: int) -> str:
    """A tokenizers-library tokenizer.json whose ids cover the whole model vocabulary: <unk> 0, <s> 1 (BOS),
    </s> 2, the 256 byte-level symbols 3..258, and filler pieces up to vocab_size-1 so that every id the random
    model samples decodes. No merges: ASCII text encodes to exactly one token per byte."""
    specials = ["<unk>", "<s>", "</s>"]
    if vocab_size < len(specials) + 256:
        raise ValueError(f"vocab_size {vocab_size} < {len(specials) + 256}")
    vocab = {s: i for i, s in enumerate(specials)}
    for _, ch in sorted(_bytes_to_unicode().items()):
        vocab[ch] = len(vocab)
    while len(vocab) < vocab_size:
        vocab[f"<x{len(vocab)}>"] = len(vocab)
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, s in enumerate(specials)],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        # BOS comes from the post-processor, as in Llama 3's tokenizer.json: pytorch_tokenizers' HFTokenizer adds
        # no BOS of its own for the runner's num_bos, it runs this template when num_bos or num_eos > 0.
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS_ID], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }
    return json.dumps(doc, ensure_ascii=False)


def prompt_text(n_tokens: int) -> str:
    """The text that, with the runner's one BOS, is exactly n_tokens tokens under tokenizer_json's tokenizer."""
    if n_tokens < 2:
        raise ValueError("a prompt needs BOS plus at least one text token")
    return "a" * (n_tokens - 1)


# ---------------------------------------------------------------------------------------------------- export

def params_json(dims: dict) -> dict:
    return {**dims, "use_scaled_rope": False}


def export_config(dims: dict, options: dict, params: Path, checkpoint: Path, out_dir: Path, out_name: str) -> dict:
    """The LlmConfig (hydra YAML) handed to export_llm."""
    metadata = {"get_bos_id": BOS_ID, "get_eos_ids": [int(dims["vocab_size"])]}  # an id argmax never returns
    return {
        "base": {"model_class": "llama3", "params": str(params), "checkpoint": str(checkpoint),
                 "metadata": json.dumps(metadata)},
        "model": {"use_kv_cache": options["use_kv_cache"], "use_sdpa_with_kv_cache": options["use_sdpa_with_kv_cache"],
                  "dtype_override": options["dtype_override"], "enable_dynamic_shape": options["enable_dynamic_shape"]},
        "export": {"max_seq_length": options["max_seq_length"], "max_context_length": options["max_context_length"],
                   "output_dir": str(out_dir), "output_name": out_name},
        "quantization": {"qmode": options["qmode"], "group_size": options["group_size"],
                         "embedding_quantize": options["embedding_quantize"], "use_hqq": options["use_hqq"]},
        "backend": {"xnnpack": {"enabled": options["xnnpack"], "extended_ops": options["xnnpack_extended_ops"]}},
    }


def _child_checkpoint(params_path: str, out_path: str, seed: str, std: str, dtype: str) -> None:
    """Random checkpoint in the FQN layout of ExecuTorch's llama Transformer: names and shapes from the model built on
    meta, each tensor drawn from one seeded generator directly in `dtype` (no fp32 copy); RMSNorm weights are ones."""
    import torch
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs

    args = ModelArgs(**json.loads(Path(params_path).read_text()))
    with torch.device("meta"):
        model = construct_transformer(args)
    gen = torch.Generator().manual_seed(int(seed))
    dt = getattr(torch, dtype)
    state = {}
    for name, p in model.named_parameters():
        if p.dim() == 1:  # the norms
            state[name] = torch.ones(p.shape, dtype=dt)
        else:
            t = torch.randn(p.shape, generator=gen, dtype=dt)
            state[name] = t.mul_(float(std))
    torch.save(state, out_path)


def _paths(cache_dir: Path, digest: str) -> dict[str, Path]:
    stem = f"executorch-stock-{digest}"
    return {"pte": cache_dir / f"{stem}.pte", "record": cache_dir / f"{stem}.json",
            "tokenizer": cache_dir / f"{stem}.tokenizer.json", "log": cache_dir / f"{stem}.export.log"}


def cached_record(cache_dir: str | os.PathLike, dims: dict = MEGREZ_DIMS, options: dict | None = None) -> dict | None:
    """The record of a usable cached export for these dims/options/versions, or None."""
    options = {**OPTIONS, **(options or {})}
    key = _key(dims, options)
    p = _paths(Path(cache_dir), _digest(key))
    try:
        rec = json.loads(p["record"].read_text())
    except (OSError, ValueError):
        return None
    if rec.get("key") != key or not p["pte"].is_file() or p["pte"].stat().st_size != rec.get("pte_bytes"):
        return None
    if not p["tokenizer"].is_file():
        _write_atomic(p["tokenizer"], tokenizer_json(dims["vocab_size"]).encode())
    return rec


def prepare(cache_dir: str | os.PathLike, dims: dict = MEGREZ_DIMS, threads: int | None = None,
            options: dict | None = None, force: bool = False, verbose: bool = True) -> Path:
    """Export (or reuse) the stock ExecuTorch program for `dims`; returns the .pte path. Beside it:
    <stem>.tokenizer.json (for TextLLMRunner), <stem>.json (the record: key, export wall time and peak RSS, size),
    <stem>.export.log. `threads` caps the exporter's intra-op threads (not part of the cache key)."""
    cache_dir = Path(cache_dir).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    options = {**OPTIONS, **(options or {})}
    if options["max_context_length"] < options["max_seq_length"]:
        raise ValueError("max_context_length must be >= max_seq_length")
    key = _key(dims, options)
    p = _paths(cache_dir, _digest(key))
    if not force and cached_record(cache_dir, dims, options) is not None:
        if verbose:
            print(f"[executorch_stock] cached: {p['pte']}", flush=True)
        return p["pte"]

    stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=cache_dir))
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    ckpt_dir_alias = None
    try:
        params = stage / "params.json"
        params.write_text(json.dumps(params_json(dims)))
        # export_llm's Llama2Model treats a checkpoint path that contains "int8" or "8da4w" as pre-quantized
        # (model.py); the path it sees must contain neither.
        ckpt = stage / "random_weights.pth"
        if "int8" in str(ckpt) or "8da4w" in str(ckpt):
            ckpt_dir_alias = Path(tempfile.mkdtemp(prefix="et-stock-ckpt-"))
            if "int8" in str(ckpt_dir_alias) or "8da4w" in str(ckpt_dir_alias):
                raise RuntimeError(f"cannot find a checkpoint path without 'int8'/'8da4w': {ckpt_dir_alias}")
        if verbose:
            print(f"[executorch_stock] random {options['checkpoint_dtype']} checkpoint for {dims}", flush=True)
        ck = _run_measured([sys.executable, "-P", str(_SELF), "_checkpoint", str(params), str(ckpt),
                            str(options["checkpoint_seed"]), str(options["checkpoint_std"]),
                            options["checkpoint_dtype"]], stage / "checkpoint.log", env=env)
        ckpt_bytes = ckpt.stat().st_size
        ckpt_seen = ckpt
        if ckpt_dir_alias is not None:
            ckpt_seen = ckpt_dir_alias / "random_weights.pth"
            ckpt_seen.symlink_to(ckpt)
        cfg = export_config(dims, options, params, ckpt_seen, stage, "model.pte")
        cfg_path = stage / "export_config.yaml"
        cfg_path.write_text(json.dumps(cfg, indent=1))  # JSON is YAML
        cmd = [sys.executable, "-m", "executorch.extension.llm.export.export_llm", "--config", str(cfg_path)]
        if verbose:
            print(f"[executorch_stock] {' '.join(cmd[1:])} (log {p['log']})", flush=True)
        try:
            ex = _run_measured(cmd, stage / "export.log", cwd=stage, env=env)
        finally:  # the log outlives the staging folder, failed or not
            if (stage / "export.log").exists():
                shutil.copyfile(stage / "export.log", p["log"])
        found = [f for f in stage.rglob("model.pte")]
        if len(found) != 1:
            raise RuntimeError(f"export_llm wrote {len(found)} model.pte under {stage}")
        ckpt.unlink()  # only the exporter needed it
        _write_atomic(p["tokenizer"], tokenizer_json(dims["vocab_size"]).encode())
        os.replace(found[0], p["pte"])
        record = {
            "key": key, "pte": p["pte"].name, "pte_bytes": p["pte"].stat().st_size, "tokenizer": p["tokenizer"].name,
            "pte_bytes_expected_from_dims": expected_pte_bytes(dims, options),
            "output_projection": output_projection_from_log(p["log"].read_text(errors="replace")),
            "export_config": cfg, "command": "python " + " ".join(cmd[1:]),
            "export": ex, "checkpoint": {**ck, "bytes": ckpt_bytes}, "export_threads": threads,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "bytes_per_token": bytes_per_token(dims, options),
        }
        _write_atomic(p["record"], json.dumps(record, indent=1).encode())
        if verbose:
            print(f"[executorch_stock] export {ex['wall_s']} s, peak RSS {ex['peak_rss_bytes'] / 2**30:.2f} GiB, "
                  f"{record['pte_bytes']:,} B", flush=True)
        return p["pte"]
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if ckpt_dir_alias is not None:
            shutil.rmtree(ckpt_dir_alias, ignore_errors=True)


def read_record(pte: str | os.PathLike) -> dict:
    return json.loads(Path(pte).with_suffix(".json").read_text())


def tokenizer_path(pte: str | os.PathLike) -> Path:
    return Path(pte).with_suffix(".tokenizer.json")


# ---------------------------------------------------------------------------------------------------- bytes/token

def bytes_per_token(dims: dict, options: dict | None = None, contexts: tuple[int, ...] = (128, 2048)) -> dict:
    """What one decoded token reads, from the dims (random weights: only the layout matters).

    export_llm's 8da4w quantizer (source_transformation/quantize.py, filter_fn) takes every nn.Linear whose input is a
    multiple of group_size, so the output projection (`output`, in = dim) is 8da4w g32 like the 32 blocks' linears;
    XNNPACK serializes each as 4-bit values + one bf16 scale per group of 32 (no zero point: HQQ scale-only), i.e.
    4.5 bits per weight. The 4-bit embedding (group 32, fp32 scales) costs one row per token. The KV cache is fp32
    (dtype_override=fp32) and the custom SDPA reads K and V of every cached position once per token. Per-channel
    extras of XNNPACK's packed layout (a few bytes per output row) and the fp32 logits row are not counted."""
    o = {**OPTIONS, **(options or {})}
    g = o["group_size"]
    d, L, V, H = dims["dim"], dims["n_layers"], dims["vocab_size"], dims["hidden_dim"]
    q, kv = dims["n_heads"] * dims["head_dim"], dims["n_kv_heads"] * dims["head_dim"]
    block = d * q + 2 * d * kv + q * d + 3 * d * H
    linear_weights = L * block + V * d
    weight_bytes = linear_weights // 2 + (linear_weights // g) * 2
    embedding_row = d // 2 + (d // 32) * 4
    kv_per_position = L * 2 * kv * 4
    return {
        "linear_weights": linear_weights,
        "linear_weights_output": V * d,
        "bits_per_linear_weight": 4 + 16 / g,
        "linear_bytes": weight_bytes,
        "embedding_row_bytes": embedding_row,
        "kv_bytes_per_position": kv_per_position,
        "per_token_at_context": {str(c): weight_bytes + embedding_row + kv_per_position * c for c in contexts},
        "formula": "linears = n_layers*(dim*(n_heads+n_kv_heads*2)*head_dim + n_heads*head_dim*dim + 3*dim*hidden)"
                   " + vocab*dim (output, 8da4w); bytes = linears/2 + linears/32*2 (bf16 scale per 32)"
                   " + embedding row (dim/2 + dim/32*4) + context*n_layers*2*n_kv_heads*head_dim*4 (fp32 KV)",
    }


def output_projection_from_log(log: str) -> dict | None:
    """What export_llm did to the output projection, from the quantized model it prints, e.g.
    "(output): Linear(in_features=2560, out_features=122880, bias=False, weight=IntxUnpackedToInt8Tensor(
    target_dtype=torch.int4, block_size=(1, 32), ..." -> {"target_dtype": "torch.int4", "block_size": [1, 32], ...}."""
    m = re.search(r"\(output\): Linear\(in_features=(\d+), out_features=(\d+)[^\n]*", log)
    if not m:
        return None
    line = m.group(0)
    dt = re.search(r"target_dtype=([\w.]+)", line)
    bs = re.search(r"block_size=\(([\d, ]+)\)", line)
    return {"in_features": int(m.group(1)), "out_features": int(m.group(2)),
            "target_dtype": dt.group(1) if dt else None,
            "block_size": [int(x) for x in bs.group(1).split(",") if x.strip()] if bs else None,
            "line": line.strip()[:400]}


def expected_pte_bytes(dims: dict, options: dict | None = None) -> int:
    """The .pte's payload from the dims, if every linear incl. the output projection is 4-bit with a bf16 scale per
    32 (bytes_per_token), the embedding 4-bit with fp32 scales per 32, plus the fp32 RoPE tables (max_context_length
    x head_dim/2, cos and sin) and the fp32 RMSNorm weights; flatbuffer and XNNPACK graph headers come on top
    (about 60 KB). The KV cache is planned memory, not in the file."""
    o = {**OPTIONS, **(options or {})}
    d, V, L = dims["dim"], dims["vocab_size"], dims["n_layers"]
    emb = V * d // 2 + V * d // 32 * 4
    rope = 2 * o["max_context_length"] * dims["head_dim"] // 2 * 4
    norms = (2 * L + 1) * d * 4
    return bytes_per_token(dims, o)["linear_bytes"] + emb + rope + norms


# ---------------------------------------------------------------------------------------------------- measure

def pte_metadata(pte: str | os.PathLike) -> dict:
    """The export's constant methods (get_max_seq_len, get_max_context_len, get_n_layers, get_vocab_size,
    get_bos_id, get_eos_ids, use_kv_cache, ...), read through executorch.runtime without loading `forward`."""
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(Path(pte))
    meta = {}
    for name in sorted(program.method_names):
        if name == "forward":
            continue
        vals = program.load_method(name).execute([])
        vals = [v.item() if hasattr(v, "item") else v for v in vals]
        meta[name] = vals[0] if len(vals) == 1 else list(vals)
    return meta


def _stats_dict(s) -> dict:
    names = ["model_load_start_ms", "model_load_end_ms", "inference_start_ms", "prompt_eval_end_ms", "first_token_ms",
             "inference_end_ms", "aggregate_sampling_time_ms", "num_prompt_tokens", "num_generated_tokens"]
    return {n: int(getattr(s, n)) for n in names}


def _child_measure(spec_path: str, out_path: str) -> None:
    """Runs in a fresh interpreter: TextLLMRunner over the spec's figures; writes a JSON of raw samples.

    The runner logs "Max new tokens resolved: M, given pos_ P, num_prompt_tokens N, ..." for every generate(), P
    being the position after that call's prompt (the context size); each call's stdout/stderr (file descriptors 1
    and 2) goes to a scratch file so that P and N are read back per sample."""
    spec = json.loads(Path(spec_path).read_text())
    rss_start = _status_kib("VmRSS")
    import resource

    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401  llama::custom_sdpa, update_cache
    import executorch.kernels.quantized  # noqa: F401  quantized_decomposed::embedding_4bit
    from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    _unsafe_reset_threadpool(int(spec["threads"]))
    meta = pte_metadata(spec["pte"])
    rss_imports = _status_kib("VmRSS")
    # enable_dynamic_shape exports the token dim with an upper bound of max_seq_len - 1, while TextPrefiller chunks
    # at max_seq_len: one call can take at most max_seq_len - 1 tokens (1023), longer prompts fail to resize.
    chunk = int(meta["get_max_seq_len"]) - (1 if meta.get("enable_dynamic_shape", True) else 0)
    resolved = re.compile(rb"Max new tokens resolved: (-?\d+), given pos_ (\d+), num_prompt_tokens (\d+)")
    scratch = Path(out_path).with_suffix(".call.log")
    t0 = time.perf_counter()
    runner = TextLLMRunner(spec["pte"], spec["tokenizer"])
    construct_s = time.perf_counter() - t0

    def call(fn, *args) -> bytes:
        """fn(*args) with fds 1 and 2 sent to the scratch file; returns what was written there."""
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        try:
            fn(*args)
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        return scratch.read_bytes()

    def one(n_ctx: int, max_new: int, warming: bool) -> dict:
        """n_ctx prompt tokens (BOS included), then max_new - 1 decode steps. Up to `chunk` tokens: one generate().
        Longer: prefill() calls of at most `chunk` tokens for the first n_ctx - 1, then generate() of one token."""
        box: dict = {}
        runner.reset()
        ticks = _cotenant_ticks()
        t = time.perf_counter()
        fill_s = 0.0
        if n_ctx <= chunk:
            method, text, bos = "one generate()", prompt_text(n_ctx), 1
        else:
            method, left, bos = f"prefill() in pieces of <= {chunk} tokens + generate() of 1 token", n_ctx - 1, 1
            while left:
                n = min(left, chunk)
                call(runner.prefill, "a" * (n - bos), GenerationConfig(echo=False, num_bos=bos, temperature=0.0))
                left -= n
                bos = 0
            fill_s = time.perf_counter() - t
            text = "a"
        cfg = GenerationConfig(echo=False, max_new_tokens=max_new, temperature=0.0, num_bos=bos, warming=warming)
        log = call(runner.generate, text, cfg, None, lambda s: box.update(_stats_dict(s)))
        box["wall_s"] = time.perf_counter() - t
        box["cotenant_ticks"] = _cotenant_ticks() - ticks
        box["method"] = method
        box["fill_s"] = fill_s
        # runner 1.5.1 logs pos_ after its prompt went in: the context size; num_prompt_tokens is the call's own prompt
        m = resolved.search(log)
        box["context_tokens"], box["logged_prompt_tokens"] = (int(m.group(2)), int(m.group(3))) if m else (None, None)
        return box

    out: dict = {"figures": [], "construct_s": construct_s, "pte_metadata": meta, "max_tokens_per_call": chunk}
    first_call = None
    for fig in spec["figures"]:
        runs = []
        for i in range(spec["warmup"] + spec["reps"]):
            try:
                r = one(fig["prompt_tokens"], fig["max_new_tokens"], warming=i < spec["warmup"])
            except Exception as e:  # noqa: BLE001  recorded, not fatal: the other figures still count
                tail = scratch.read_bytes()[-600:].decode(errors="replace") if scratch.exists() else ""
                runs.append({"error": f"{type(e).__name__}: {e}", "runner_log": tail})
                break
            if first_call is None:
                first_call = r
            runs.append(r)
        out["figures"].append({**fig, "runs": runs})
    out["first_call_model_load_ms"] = (first_call or {}).get("model_load_end_ms", 0) - \
        (first_call or {}).get("model_load_start_ms", 0)
    out["rss"] = {"start_kib": rss_start, "after_imports_kib": rss_imports, "end_kib": _status_kib("VmRSS"),
                  "vmhwm_kib": _status_kib("VmHWM"),
                  "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    Path(out_path).write_text(json.dumps(out))


def _summary(xs: list[float]) -> dict:
    return {"samples": xs, "median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def measure(pte: str | os.PathLike, tokenizer: str | os.PathLike | None = None, threads: int = 2,
            prefill_lengths: tuple[int, ...] = (128, 512), decode_tokens: int = 64,
            decode_contexts: tuple[int, ...] = (128, 2048), reps: int = 5, warmup: int = 1,
            timeout_s: float | None = None) -> dict:
    """Prefill tok/s at each prompt length and decode tok/s at each context, through TextLLMRunner in a fresh
    subprocess; `warmup` untimed runs then `reps` timed runs per figure, runner.reset() before each.

    Prompts of up to max_seq_len - 1 tokens (1023) go in one generate(): prefill tok/s = num_prompt_tokens /
    (prompt_eval_end - inference_start) from the runner's Stats (ms clock). The runner cannot take a longer prompt
    in one call (see _child_measure), so a longer context is built by prefill() calls of at most 1023 tokens and a
    last generate() of one token; a prefill figure of that kind is timed by wall clock over all its calls.
    Decode at context C: after C context tokens, `decode_tokens` decode steps (max_new_tokens = decode_tokens + 1:
    the first new token comes out of the prefill, and the runner's num_generated_tokens counts only the decode
    steps after it); tok/s = num_generated_tokens / (inference_end - first_token). Every sample's context size
    is checked: the position the runner logs after the prompt == C (its Stats.num_prompt_tokens == the logged
    prompt size of that call), and num_generated_tokens ==
    decode_tokens. Wall time is that of all runner calls of a sample. A figure whose runner call raises is
    reported under "errors" with the runner's log."""
    pte = Path(pte).resolve()
    tokenizer = Path(tokenizer).resolve() if tokenizer else tokenizer_path(pte)
    figures = [{"kind": "prefill", "prompt_tokens": n, "max_new_tokens": 1} for n in prefill_lengths] + \
              [{"kind": "decode", "prompt_tokens": c, "max_new_tokens": decode_tokens + 1} for c in decode_contexts]
    with tempfile.TemporaryDirectory(prefix="et-stock-measure-") as td:
        spec = Path(td) / "spec.json"
        out = Path(td) / "out.json"
        spec.write_text(json.dumps({"pte": str(pte), "tokenizer": str(tokenizer), "threads": threads,
                                    "reps": reps, "warmup": warmup, "figures": figures}))
        log = Path(td) / "runner.log"
        t0 = time.perf_counter()
        with open(log, "wb") as lf:
            proc = subprocess.run([sys.executable, "-P", str(_SELF), "_measure", str(spec), str(out)],
                                  stdout=lf, stderr=subprocess.STDOUT, timeout=timeout_s)
        child_wall = time.perf_counter() - t0
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"measure child exited {proc.returncode}:\n"
                               f"{log.read_bytes()[-4000:].decode(errors='replace')}")
        raw = json.loads(out.read_text())

    result: dict = {"runtime": "executorch-stock TextLLMRunner (pip wheel bindings)", "threads": threads,
                    "reps": reps, "warmup": warmup, "decode_tokens": decode_tokens, "pte": str(pte),
                    "pte_bytes": pte.stat().st_size, "pte_metadata": raw["pte_metadata"],
                    "max_tokens_per_call": raw["max_tokens_per_call"],
                    "prefill": {}, "decode": {}, "errors": [], "child_wall_s": round(child_wall, 2),
                    "runner_construct_s": raw["construct_s"],
                    "first_call_model_load_ms": raw["first_call_model_load_ms"], "rss": raw["rss"]}
    result["peak_rss_bytes"] = max(raw["rss"]["vmhwm_kib"] or 0, raw["rss"]["ru_maxrss_kib"]) * 1024
    for fig in raw["figures"]:
        runs = fig["runs"]
        errs = [r for r in runs if "error" in r]
        timed = [r for r in runs[warmup:] if "error" not in r]
        name = str(fig["prompt_tokens"])
        if errs:
            result["errors"].append({"kind": fig["kind"], "prompt_tokens": fig["prompt_tokens"], **errs[0]})
        if not timed or len(timed) < reps:
            continue
        contexts = [r["context_tokens"] for r in timed]
        if any(c != fig["prompt_tokens"] for c in contexts):
            raise AssertionError(f"asked for a {fig['prompt_tokens']}-token context, runner had {contexts}")
        if any(r["logged_prompt_tokens"] != r["num_prompt_tokens"] for r in timed):
            raise AssertionError(f"runner log and Stats disagree on the prompt size: {timed}")
        gen_counts = [r["num_generated_tokens"] for r in timed]
        if any(g != fig["max_new_tokens"] - 1 for g in gen_counts):
            raise AssertionError(f"asked for {fig['max_new_tokens'] - 1} decode steps, runner counted {gen_counts}")
        entry: dict = {"context_tokens": contexts, "method": timed[0]["method"],
                       "generate_prompt_tokens": [r["num_prompt_tokens"] for r in timed],
                       "wall_s": _summary([r["wall_s"] for r in timed]),
                       "cotenant_ticks": [r["cotenant_ticks"] for r in timed], "stats": timed}
        chunked = any(r["fill_s"] > 0 for r in timed)
        if fig["kind"] == "prefill":
            if chunked:  # several runner calls: wall clock over all of them
                entry["prefill_s"] = _summary([r["wall_s"] for r in timed])
                entry["tok_s"] = _summary([c / r["wall_s"] for c, r in zip(contexts, timed)])
                entry["rate_from"] = "wall clock over the prefill() calls and the 1-token generate()"
            else:
                ms = [r["prompt_eval_end_ms"] - r["inference_start_ms"] for r in timed]
                entry["prefill_s"] = _summary([m / 1000 for m in ms])
                if all(m > 0 for m in ms):
                    entry["tok_s"] = _summary([c / (m / 1000) for c, m in zip(contexts, ms)])
                entry["rate_from"] = "Stats: num_prompt_tokens / (prompt_eval_end - inference_start)"
            result["prefill"][name] = entry
        else:
            entry["decode_steps"] = gen_counts
            ms = [r["inference_end_ms"] - r["first_token_ms"] for r in timed]
            entry["decode_s"] = _summary([m / 1000 for m in ms])
            if all(m > 0 for m in ms):
                entry["tok_s"] = _summary([g / (m / 1000) for g, m in zip(gen_counts, ms)])
            entry["rate_from"] = "Stats: num_generated_tokens / (inference_end - first_token)"
            if chunked:
                entry["context_fill_s"] = _summary([r["fill_s"] for r in timed])
            result["decode"][name] = entry
    # the same figures under the names benchmarks/same_run.py merges across runtimes
    metrics: dict = {}
    for n, e in result["prefill"].items():
        if "tok_s" in e:
            metrics[f"prefill_tok_s@{n}"] = {**e["tok_s"], "unit": "tok/s"}
        metrics[f"prefill_wall_s@{n}"] = {**e["wall_s"], "unit": "s"}
    for c, e in result["decode"].items():
        if "tok_s" in e:
            metrics[f"decode_tok_s@ctx{c}"] = {**e["tok_s"], "unit": "tok/s"}
        metrics[f"decode_wall_s@ctx{c}"] = {**e["wall_s"], "unit": "s"}
    result["metrics"] = metrics
    result["peak_rss_mib"] = result["peak_rss_bytes"] / (1 << 20)
    return result


# ---------------------------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_checkpoint":
        _child_checkpoint(*argv[1:])
        return 0
    if argv and argv[0] == "_measure":
        _child_measure(*argv[1:])
        return 0
    ap = argparse.ArgumentParser(prog="python -m benchmarks.anchors.executorch_stock", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, type=Path, help="folder for the cached .pte, its record and tokenizer")
    ap.add_argument("--tiny", action="store_true", help=f"tiny dims {TINY_DIMS} instead of Megrez's")
    ap.add_argument("--json", type=Path, required=True, help="where to write the results")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--export-threads", type=int, default=None)
    ap.add_argument("--prefill", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--decode-contexts", type=int, nargs="+", default=[128, 2048])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--force", action="store_true", help="export again even if cached")
    a = ap.parse_args(argv)
    dims = TINY_DIMS if a.tiny else MEGREZ_DIMS
    pte = prepare(a.cache, dims, threads=a.export_threads, force=a.force)
    rec = read_record(pte)
    res = measure(pte, tokenizer_path(pte), threads=a.threads, prefill_lengths=tuple(a.prefill),
                  decode_tokens=a.decode_tokens, decode_contexts=tuple(a.decode_contexts), reps=a.reps,
                  warmup=a.warmup)
    res["export"] = {k: rec[k] for k in ("export", "checkpoint", "command", "export_config", "created", "key")}
    res["dims"] = dims
    res["bytes_per_token"] = bytes_per_token(dims, rec["key"]["options"], tuple(a.decode_contexts))
    a.json.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(a.json, json.dumps(res, indent=1).encode())
    for kind in ("prefill", "decode"):
        for n, e in res[kind].items():
            t = e.get("tok_s")
            print(f"{kind} @{n}: " + (f"{t['median']:.1f} tok/s [{t['min']:.1f}-{t['max']:.1f}] n={t['n']}" if t
                                       else f"wall median {e['wall_s']['median'] * 1000:.1f} ms (under 1 ms clock)"))
    for e in res["errors"]:
        print(f"error: {e}")
    print(f"peak RSS {res['peak_rss_bytes'] / 2**30:.2f} GiB, pte {res['pte_bytes']:,} B -> {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
