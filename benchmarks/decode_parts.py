"""Where a decode token's time goes, part by part, at the official dims, without a 40-minute full-size export.

Decode reads every weight once per token, so its time is the sum of per-layer times plus the LM head, and the
per-layer time grows with the context only through attention. Each part is lowered exactly as the bundle's
`text_decoder` is (our quantizer, our partitioners, ExecuTorch's `update_cache` / `custom_sdpa` kernels):

- **one decoder layer** (official dims: 2560 wide, 40 heads, 10 KV heads, MLP 7168; xnnpack-8da4w's scheme), its
  KV cache fp32 or int8 (`kv_cache_dtype`), one token decoded after 128 and after 2,048 positions of context;
- **the LM head** (2560 -> 122,880) at one row, 8-bit per channel (xnnpack-8da4w today) against 4-bit group 32
  (what ExecuTorch's stock `export_llm` ships), with its weight bytes and the bandwidth it reaches;
- this machine's read bandwidth (anchors/machine.py), so each part has its floor beside it.

The sum of the parts (32 layers + head) predicts a whole bundle's decode time; BENCHMARKS.md sets the prediction
against the same-run table, and says which change each number points at.

    python benchmarks/decode_parts.py --threads 2 --out /work/bench/out/decode_parts.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.anchors.machine import (export_linear, export_once, load_forward, packed_weight_bytes,  # noqa: E402
                                        read_bandwidth, summary, time_calls, write_program)

CONTEXTS = (128, 2048)
KV_DTYPES = ("fp32", "int8")
LM_HEAD_SHAPE = (1, 2560, 122880)
# kind (anchors/machine.py GEMM_KINDS) -> (label, weight bits)
LM_HEAD_KINDS = {"int8_8da8w": ("8-bit per channel (xnnpack-8da4w)", 8),
                 "int4_8da4w": ("4-bit group 32 (stock export_llm)", 4)}


def official_text_config(num_hidden_layers: int = 1, vocab_size: int = 256):
    """The official decoder dims (checkpoint/synthetic.py FULL_SIZE), with fewer layers and a token-sized head."""
    from megrez_mobile.checkpoint.synthetic import FULL_SIZE
    from megrez_mobile.config import TextConfig

    return TextConfig(hidden_size=FULL_SIZE.hidden_size, intermediate_size=FULL_SIZE.intermediate_size,
                      num_hidden_layers=num_hidden_layers, num_attention_heads=FULL_SIZE.num_attention_heads,
                      num_key_value_heads=FULL_SIZE.num_key_value_heads, vocab_size=vocab_size,
                      max_position_embeddings=4096)


def export_one_layer(kv_cache_dtype: str, path: Path) -> Path:
    """A one-layer `text_decoder` (official dims) quantized and lowered as xnnpack-8da4w's, written to `path`."""
    import torch
    from torch.export import Dim

    from megrez_mobile.export.lowering import lower_method
    from megrez_mobile.export.programs import TextDecoder
    from megrez_mobile.export.quantize import quantize_modules
    from megrez_mobile.export.recipe import Recipe
    from megrez_mobile.model.decoder import MegrezLLM

    recipe = Recipe.load("xnnpack-8da4w").with_overrides(kv_cache_dtype=kv_cache_dtype)
    torch.manual_seed(0)
    llm = MegrezLLM(official_text_config())
    with torch.no_grad():
        for p in llm.parameters():
            p.normal_(0, 0.02)
    quantize_modules(recipe, llm, prefix="llm")
    decoder = TextDecoder(llm, recipe.options.max_context, kv_cache_dtype).eval()
    example = (torch.zeros(1, 4, llm.config.hidden_size), torch.zeros(1, dtype=torch.long))
    seq = Dim("seq", min=1, max=recipe.options.max_seq_len)
    with torch.no_grad():
        program = torch.export.export(decoder, example, dynamic_shapes=({1: seq}, None), strict=False)
    lowered, _ = lower_method(recipe, "text_decoder", program)
    return write_program(lowered, path)


def layer_decode_ms(kv_cache_dtype: str, threads: int, cache_dir: Path, reps: int) -> dict[str, Any]:
    """One token through one layer after each context length (ms), median of `reps`."""
    import torch

    path = export_once(cache_dir / f"decode-layer-{kv_cache_dtype}.pte", lambda p: export_one_layer(kv_cache_dtype, p))
    method = load_forward(path, threads)
    x = torch.randn(1, 1, official_text_config().hidden_size)
    out: dict[str, Any] = {}
    for context in CONTEXTS:
        # custom_sdpa reads cache slots [0, start]: the position alone sets how much attention reads.
        times, check = time_calls(method, [x, torch.tensor([context], dtype=torch.long)], reps)
        out[str(context)] = {**summary([t * 1e3 for t in times], "ms"), "cotenant": check}
    return out


def lm_head_ms(kind: str, threads: int, cache_dir: Path, reps: int) -> dict[str, Any]:
    import torch

    rows, k, n = LM_HEAD_SHAPE
    path = export_once(cache_dir / f"lm-head-{kind}-{rows}x{k}x{n}.pte", lambda p: export_linear(kind, LM_HEAD_SHAPE, p))
    times, check = time_calls(load_forward(path, threads), [torch.randn(rows, k)], reps)
    weight_bytes = packed_weight_bytes(k, n, LM_HEAD_KINDS[kind][1])
    ms = summary([t * 1e3 for t in times], "ms")
    return {**ms, "weight_bytes": weight_bytes, "gb_per_s": weight_bytes / (ms["median"] * 1e-3) / 1e9,
            "cotenant": check}


def kv_bytes_per_layer(kv_cache_dtype: str, context: int) -> int:
    """Bytes of K and V one decode step reads from one layer's cache (int8: a value byte per channel plus a
    float32 scale and an int8 zero point per row)."""
    cfg = official_text_config()
    row = cfg.head_dim * 4 if kv_cache_dtype == "fp32" else cfg.head_dim + 5
    return 2 * context * cfg.num_key_value_heads * row


def predict(parts: dict[str, Any], layers: int) -> dict[str, Any]:
    """Whole-model decode (ms/token and tok/s) as the sum of its parts, for each KV dtype, head and context."""
    out = {}
    for kv in KV_DTYPES:
        for head in LM_HEAD_KINDS:
            for context in CONTEXTS:
                ms = layers * parts["layer"][kv][str(context)]["median"] + parts["lm_head"][head]["median"]
                out[f"kv {kv}, head {head}, ctx {context}"] = {"ms_per_token": ms, "tok_s": 1e3 / ms}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    # Each call takes 1-10 ms: 15 repetitions gave medians 20-40 % off a 100-repetition run on the same machine.
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "megrez-decode-parts")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON results here")
    args = parser.parse_args()

    from megrez_mobile.checkpoint.synthetic import FULL_SIZE

    parts: dict[str, Any] = {"threads": args.threads, "reps": args.reps}
    parts["bandwidth"] = read_bandwidth(args.threads, args.cache)
    parts["layer"] = {kv: layer_decode_ms(kv, args.threads, args.cache, args.reps) for kv in KV_DTYPES}
    parts["lm_head"] = {kind: lm_head_ms(kind, args.threads, args.cache, args.reps) for kind in LM_HEAD_KINDS}
    parts["kv_bytes_per_layer"] = {kv: {str(c): kv_bytes_per_layer(kv, c) for c in CONTEXTS} for kv in KV_DTYPES}
    parts["prediction"] = predict(parts, FULL_SIZE.num_hidden_layers)

    gbs = parts["bandwidth"]["median"]
    print(f"read bandwidth {gbs:.1f} GB/s ({args.threads} threads)")
    for kv in KV_DTYPES:
        layer = parts["layer"][kv]
        extra = layer["2048"]["median"] - layer["128"]["median"]
        extra_bytes = kv_bytes_per_layer(kv, 2048) - kv_bytes_per_layer(kv, 128)
        print(f"one layer, {kv} KV: {layer['128']['median']:.2f} ms after 128, {layer['2048']['median']:.2f} ms "
              f"after 2048 positions; the 1,920 extra positions cost {extra:.2f} ms for {extra_bytes / 1e6:.1f} MB "
              f"(floor {extra_bytes / gbs / 1e6:.2f} ms)")
    for kind, (label, _bits) in LM_HEAD_KINDS.items():
        head = parts["lm_head"][kind]
        print(f"lm_head {label}: {head['median']:.2f} ms, {head['weight_bytes'] / 1e6:.0f} MB, "
              f"{head['gb_per_s']:.1f} GB/s")
    for name, p in parts["prediction"].items():
        print(f"predicted decode, {name}: {p['ms_per_token']:.1f} ms/token = {p['tok_s']:.2f} tok/s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(parts, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
