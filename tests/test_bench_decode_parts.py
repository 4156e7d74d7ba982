"""benchmarks/decode_parts.py's arithmetic: the bytes it charges attention per layer and the sum it predicts.

The timings themselves are a benchmark (BENCHMARKS.md), not a test; what the benchmark concludes from them rests on
these two pieces, which are checked here against the exporter's own cache sizes.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import decode_parts  # noqa: E402
from megrez_mobile.checkpoint.synthetic import FULL_SIZE  # noqa: E402

MIB = 1 << 20


def test_the_layer_it_measures_has_the_official_decoder_dims():
    cfg = decode_parts.official_text_config()
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_key_value_heads,
            cfg.head_dim) == (2560, 7168, 40, 10, 64) == (
        FULL_SIZE.hidden_size, FULL_SIZE.intermediate_size, FULL_SIZE.num_attention_heads,
        FULL_SIZE.num_key_value_heads, FULL_SIZE.hidden_size // FULL_SIZE.num_attention_heads)
    assert cfg.num_hidden_layers == 1


def test_kv_bytes_match_the_caches_the_exporter_plans():
    """At 4,096 positions over 32 layers: the 640 MiB fp32 and 172.5 MiB int8 caches export/README.md states (the
    int8 row is head_dim bytes + a float32 scale + an int8 zero point)."""
    layers = FULL_SIZE.num_hidden_layers
    assert decode_parts.kv_bytes_per_layer("fp32", 4096) * layers == 640 * MIB
    assert decode_parts.kv_bytes_per_layer("int8", 4096) * layers == 172.5 * MIB
    assert decode_parts.kv_bytes_per_layer("fp32", 2048) == 2 * decode_parts.kv_bytes_per_layer("fp32", 1024)


def test_prediction_is_layers_times_a_layer_plus_the_head():
    parts = {"layer": {kv: {"128": {"median": 1.0 + i}, "2048": {"median": 3.0 + i}}
                       for i, kv in enumerate(decode_parts.KV_DTYPES)},
             "lm_head": {kind: {"median": 10.0 + i} for i, kind in enumerate(decode_parts.LM_HEAD_KINDS)}}
    out = decode_parts.predict(parts, layers=32)
    assert len(out) == 8
    got = out["kv int8, head int4_8da4w, ctx 2048"]
    assert got["ms_per_token"] == 32 * 4.0 + 11.0 and abs(got["tok_s"] - 1e3 / 139.0) < 1e-12
