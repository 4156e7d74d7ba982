"""benchmarks/anchors/llama_cpp.py on the tiny dims: the random-weight GGUF it writes, llama.cpp loading it, and the
shape of what `measure` returns. Skipped unless llama-cpp-python and gguf are installed (the `bench` extra)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.anchors import llama_cpp as anchor  # noqa: E402  (stdlib-only at import)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("gguf") is None,
    reason="llama-cpp-python/gguf not installed; install with: " + anchor.install_command(sys.executable),
)

D = anchor.TINY
IDS = [1, 5, 17, 300, 1023, 42, 7, 0]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return anchor.prepare_gguf(tmp_path_factory.mktemp("gguf"), D)


def _expected_bytes_per_token(d: anchor.Dims) -> int:
    """From the dims alone: Q4_0 is 18 bytes per 32 weights; the tiny output (rows of 64, not a multiple of 256) is
    Q8_0, 34 bytes per 32 weights, as llama-quantize would make it."""
    per_layer = 2 * d.hidden * d.hidden + 2 * d.kv_dim * d.hidden + 3 * d.hidden * d.intermediate
    assert per_layer % 32 == 0
    return d.layers * per_layer // 32 * 18 + d.vocab * d.hidden // 32 * 34


def test_versions_and_install_command():
    assert f"llama-cpp-python {anchor.LLAMA_CPP_PYTHON_VERSION}" in anchor.ensure_installed(sys.executable)
    cmd = anchor.install_command("/x/python")
    assert "--no-binary llama-cpp-python" in cmd and "-DGGML_NATIVE=ON" in cmd and f"gguf=={anchor.GGUF_VERSION}" in cmd


def test_gguf_types_and_metadata(tiny_gguf):
    s = anchor.gguf_summary(tiny_gguf)
    types = s["tensor_types"]
    blocks = [n for n in types if anchor._kind(n) == "block_linear"]
    assert len(blocks) == 7 * D.layers and {types[n] for n in blocks} == {"Q4_0"}
    assert types["token_embd.weight"] == "Q4_0" and types["output.weight"] == "Q8_0"
    assert {types[n] for n in types if n.endswith("norm.weight")} == {"F32"}
    assert len(types) == 9 * D.layers + 3
    m = s["metadata"]
    assert m["general.architecture"] == "llama" and m["tokenizer.ggml.model"] == "none"
    assert (m["llama.vocab_size"], m["llama.embedding_length"], m["llama.block_count"],
            m["llama.feed_forward_length"], m["llama.attention.head_count"], m["llama.attention.head_count_kv"],
            m["llama.context_length"]) == (D.vocab, D.hidden, D.layers, D.intermediate, D.heads, D.kv_heads, D.context)
    assert m["llama.rope.freq_base"] == D.rope_theta and abs(m["llama.attention.layer_norm_rms_epsilon"] - 1e-5) < 1e-9


def test_bytes_per_token_from_dims(tiny_gguf):
    s = anchor.gguf_summary(tiny_gguf)
    assert s["bytes_per_token"] == _expected_bytes_per_token(D)
    # The full-size figure, from the same arithmetic (Q6_K output: 210 bytes per 256), without writing anything.
    full = sum(anchor._nbytes(t.shape, t.qtype) for t in anchor.tensor_specs(anchor.FULL, "ggml")
               if t.kind in ("block_linear", "output"))
    assert full == 32 * (2 * 2560 * 2560 + 2 * 640 * 2560 + 3 * 2560 * 7168) // 32 * 18 + 122880 * 2560 // 256 * 210


def test_cache_reuse_and_quantizers_agree(tiny_gguf, tmp_path):
    mtime = tiny_gguf.stat().st_mtime_ns
    assert anchor.prepare_gguf(tiny_gguf.parent, D) == tiny_gguf and tiny_gguf.stat().st_mtime_ns == mtime
    meta = json.loads(tiny_gguf.with_suffix(".json").read_text())
    assert meta["key"]["quantizer"] == "ggml" and meta["size"] == tiny_gguf.stat().st_size
    other = anchor.prepare_gguf(tmp_path, D, quantizer="numpy")
    assert other.name != tiny_gguf.name  # another key, another file
    # gguf.quants' Q4_0 and ggml's quantize_row_q4_0_ref give the same bytes for the same random weights.
    import gguf

    a, b = gguf.GGUFReader(str(tiny_gguf)), gguf.GGUFReader(str(other))
    ta = {t.name: bytes(t.data) for t in a.tensors}
    tb = {t.name: bytes(t.data) for t in b.tensors}
    assert ta["blk.0.ffn_down.weight"] == tb["blk.0.ffn_down.weight"]
    assert ta["token_embd.weight"] == tb["token_embd.weight"]


def test_logits_deterministic_and_finite(tiny_gguf):
    import numpy as np

    a = anchor.probe_logits(tiny_gguf, IDS)
    b = anchor.probe_logits(tiny_gguf, IDS)
    assert a.shape == (len(IDS), D.vocab) and a.dtype == np.float32
    assert np.isfinite(a).all() and float(a.std()) > 0
    assert np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # the ids matter


def test_measure_returns_reps_samples(tiny_gguf):
    r = anchor.measure(tiny_gguf, threads=2, prefill_lengths=(16, 64), decode_tokens=8, decode_contexts=(16, 128),
                       reps=3, warmup=1)
    assert set(r["figures"]) == {"prefill_16", "prefill_64", "decode_at_16", "decode_at_128"}
    for fig in r["figures"].values():
        assert len(fig["samples"]) == 3 and len(fig["perf_tok_s"]["samples"]) == 3
        assert len(fig["others_cpu_s"]) == len(fig["nice_ticks"]) == len(fig["steal_ticks"]) == 3
        assert 0 < fig["min"] <= fig["median"] <= fig["max"]
        assert all(x > 0 for x in fig["perf_tok_s"]["samples"])
    assert r["bytes_per_token"] == _expected_bytes_per_token(D)
    assert r["file_bytes"] == tiny_gguf.stat().st_size
    assert r["memory"]["ru_maxrss_bytes"] > 0 and r["memory"]["VmHWM_bytes"] > 0
    assert set(r["metrics"]) == {f"{k}_{u}@{n}" for k, ns in (("prefill", ("16", "64")), ("decode", ("ctx16", "ctx128")))
                                 for u in ("tok_s", "wall_s") for n in ns}
    assert all(len(m["samples"]) == 3 for m in r["metrics"].values())
    assert r["config"]["n_ctx"] == 4096 and r["config"]["threads"] == 2 and r["config"]["n_ubatch"] == 512
