"""benchmarks/anchors/executorch_stock.py: ExecuTorch's stock export_llm on tiny dims, the .pte's constants, the
cache, and TextLLMRunner figures with the token counts the runner itself reports.

The stock export takes about 85 s on the 2-vCPU dev machine (45 s of CPU), so the tests that need it run only
with MEGREZ_BENCH_EXPORT=1; the arithmetic and the tokenizer are always tested."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.anchors import executorch_stock as stock  # noqa: E402

needs_export = pytest.mark.skipif(os.environ.get("MEGREZ_BENCH_EXPORT") != "1",
                                  reason="the stock export takes ~85 s here; set MEGREZ_BENCH_EXPORT=1")
D = stock.TINY_DIMS


def test_bytes_per_token_megrez_dims():
    b = stock.bytes_per_token(stock.MEGREZ_DIMS, contexts=(128, 2048))
    # per block: q and o 2560x2560, k and v 640x2560, gate/up/down 2560x7168; plus the untied 122880x2560 output
    per_block = 2 * 2560 * 2560 + 2 * 640 * 2560 + 3 * 2560 * 7168
    assert per_block == 71_434_240
    assert b["linear_weights"] == 32 * per_block + 122880 * 2560 == 2_600_468_480
    assert b["linear_bytes"] == 2_600_468_480 * 9 // 16 == 1_462_763_520  # 4.5 bits per weight
    assert b["kv_bytes_per_position"] == 32 * 2 * 10 * 64 * 4 == 163_840  # fp32 K and V
    assert b["per_token_at_context"]["2048"] - b["per_token_at_context"]["128"] == 1920 * 163_840
    assert b["per_token_at_context"]["128"] == 1_462_763_520 + 1600 + 128 * 163_840


def test_expected_pte_bytes_matches_the_earlier_full_size_export():
    """perf_anchors.md's export (5 KV heads, max_context_length 1024) was 1,630,872,448 B: the layout assumed here
    (output 4-bit like the blocks, fp32 embedding scales) accounts for all but 64 KB of it."""
    d = dict(stock.MEGREZ_DIMS, n_kv_heads=5)
    assert 0 < 1_630_872_448 - stock.expected_pte_bytes(d, {"max_context_length": 1024}) < 100_000


def test_tokenizer_gives_exactly_n_tokens():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(stock.tokenizer_json(D["vocab_size"]))
    assert tok.get_vocab_size() == D["vocab_size"]
    for n in (2, 128, 1023, 2048):
        ids = tok.encode(stock.prompt_text(n)).ids
        assert len(ids) == n and ids[0] == stock.BOS_ID
    assert len(tok.encode(stock.prompt_text(300), add_special_tokens=False).ids) == 299


def test_cache_key_follows_dims_options_and_versions():
    k = stock._key(D, stock.OPTIONS)
    assert stock._digest(k) == stock._digest(stock._key(dict(D), dict(stock.OPTIONS)))
    assert stock._digest(k) != stock._digest(stock._key(dict(D, n_kv_heads=2), stock.OPTIONS))
    assert stock._digest(k) != stock._digest(stock._key(D, dict(stock.OPTIONS, max_context_length=2048)))
    assert k["versions"]["executorch"] == "1.5.1"


@pytest.fixture(scope="module")
def tiny_pte(tmp_path_factory):
    cache = tmp_path_factory.mktemp("stock-cache")
    t0 = time.perf_counter()
    pte = stock.prepare(cache, D)
    return pte, time.perf_counter() - t0


@needs_export
def test_stock_export_constants_and_record(tiny_pte):
    pte, took = tiny_pte
    print(f"tiny stock export: {took:.1f} s")
    meta = stock.pte_metadata(pte)
    assert meta["get_max_seq_len"] == 1024
    assert meta["get_max_context_len"] == 4096
    assert meta["get_n_layers"] == 2
    assert meta["get_vocab_size"] == 4096
    assert meta["get_bos_id"] == 1
    assert meta["get_eos_ids"] == 4096  # out of range: decode never stops early
    assert meta["use_kv_cache"] is True and meta["use_sdpa_with_kv_cache"] is True
    assert meta["enable_dynamic_shape"] is True

    rec = stock.read_record(pte)
    assert rec["pte_bytes"] == pte.stat().st_size
    assert rec["export"]["wall_s"] > 1 and 100 * 2**20 < rec["export"]["peak_rss_bytes"] < 8 * 2**30
    assert rec["checkpoint"]["bytes"] > 2 * (4096 * 64 * 2)  # bf16 embedding + output at least
    assert rec["export_config"]["quantization"] == {"qmode": "8da4w", "group_size": 32, "embedding_quantize": "4,32",
                                                    "use_hqq": True}
    assert rec["export_config"]["export"]["max_context_length"] == 4096
    # the output projection is 4-bit group 32 like the blocks' linears (export_llm's filter takes every Linear)
    out = rec["output_projection"]
    assert (out["in_features"], out["out_features"]) == (64, 4096)
    assert out["target_dtype"] == "torch.int4" and out["block_size"] == [1, 32]
    # and the file agrees: a fp32 output projection would add 4096*64*4 - 4096*64*9/16 = 901,120 B
    extra = rec["pte_bytes"] - stock.expected_pte_bytes(D)
    assert 0 < extra < 150_000, extra


@needs_export
def test_prepare_reuses_the_cache(tiny_pte):
    pte, _ = tiny_pte
    mtime = pte.stat().st_mtime_ns
    t0 = time.perf_counter()
    again = stock.prepare(pte.parent, D)
    assert again == pte and pte.stat().st_mtime_ns == mtime
    assert time.perf_counter() - t0 < 10
    assert not list(pte.parent.glob(".stage-*"))


@needs_export
def test_measure_counts_and_chunking(tiny_pte):
    pte, _ = tiny_pte
    reps = 3
    r = stock.measure(pte, threads=2, prefill_lengths=(16, 1023, 1024), decode_tokens=8,
                      decode_contexts=(32, 1100), reps=reps, warmup=1)
    assert r["errors"] == []
    assert r["max_tokens_per_call"] == 1023
    assert set(r["prefill"]) == {"16", "1023", "1024"} and set(r["decode"]) == {"32", "1100"}
    for n, e in r["prefill"].items():
        assert e["context_tokens"] == [int(n)] * reps
        assert len(e["wall_s"]["samples"]) == reps
        assert e["wall_s"]["min"] <= e["wall_s"]["median"] <= e["wall_s"]["max"]
    # up to 1023 tokens one generate() takes the prompt; 1024 needs prefill() pieces
    assert r["prefill"]["1023"]["generate_prompt_tokens"] == [1023] * reps
    assert r["prefill"]["1024"]["generate_prompt_tokens"] == [1] * reps
    assert r["prefill"]["1023"]["method"] == "one generate()"
    assert r["prefill"]["1024"]["method"].startswith("prefill() in pieces of <= 1023")
    assert len(r["prefill"]["1024"]["tok_s"]["samples"]) == reps and r["prefill"]["1024"]["tok_s"]["min"] > 0
    for c, e in r["decode"].items():
        assert e["context_tokens"] == [int(c)] * reps
        assert e["decode_steps"] == [8] * reps
        assert len(e["decode_s"]["samples"]) == reps
    assert r["decode"]["32"]["generate_prompt_tokens"] == [32] * reps
    assert r["decode"]["1100"]["generate_prompt_tokens"] == [1] * reps
    assert len(r["decode"]["1100"]["tok_s"]["samples"]) == reps  # 8 steps at 1100 context: well over 1 ms
    assert r["pte_bytes"] == pte.stat().st_size
    assert r["pte_metadata"]["get_max_seq_len"] == 1024
    assert r["rss"]["vmhwm_kib"] >= r["rss"]["after_imports_kib"] > r["rss"]["start_kib"] > 0
    assert r["peak_rss_bytes"] >= r["rss"]["vmhwm_kib"] * 1024
    # the names benchmarks/same_run.py merges
    m = r["metrics"]
    assert m["decode_tok_s@ctx1100"]["samples"] == r["decode"]["1100"]["tok_s"]["samples"]
    assert m["decode_tok_s@ctx1100"]["unit"] == "tok/s" and m["decode_wall_s@ctx32"]["n"] == reps
    assert m["prefill_tok_s@1024"]["n"] == reps


@needs_export
def test_cli_on_the_cached_tiny_export(tiny_pte, tmp_path):
    pte, _ = tiny_pte
    out = tmp_path / "stock.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.anchors.executorch_stock", "--cache", str(pte.parent),
                           "--tiny", "--json", str(out), "--prefill", "64", "--decode-contexts", "64",
                           "--decode-tokens", "4", "--reps", "2"], cwd=REPO, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    res = json.loads(out.read_text())
    assert res["dims"] == D
    assert res["prefill"]["64"]["context_tokens"] == [64, 64]
    assert res["decode"]["64"]["decode_steps"] == [4, 4]
    assert res["export"]["export"]["wall_s"] > 0
    assert res["bytes_per_token"]["linear_bytes"] == stock.bytes_per_token(D)["linear_bytes"]
