"""The memory budget of a chat, on the tiny bundle: peak RSS above the process with its libraries loaded must stay
within model.pte + KV cache + 400 MiB, through Bundle and through the stock MultimodalRunner, each measured in a
fresh subprocess (harness/memory.py). The full-size figures are in BENCHMARKS.md (benchmarks/same_run.py).

The KV-cache term is read from the program's planned arenas; it is checked here against the dims, so the budget
cannot silently lose it.
"""

from __future__ import annotations

import json

import pytest

from megrez_mobile.harness.memory import ALLOWANCE_BYTES, MIB, budget_bytes, kv_cache_bytes, measure_memory


def test_kv_cache_term_is_the_programs_cache(tiny_checkpoint, bundle_8da4w):
    from megrez_mobile.bundle import read_manifest
    from megrez_mobile.config import MegrezConfig

    text = MegrezConfig.from_pretrained(tiny_checkpoint).text
    max_context = read_manifest(bundle_8da4w).context["max_context"]
    budget, planned = budget_bytes(bundle_8da4w)
    # [1, max_context, kv_heads, head_dim] fp32, K and V, per layer: all the decoder's mem_id 2 holds.
    head_dim = text.hidden_size // text.num_attention_heads
    expected = text.num_hidden_layers * 2 * max_context * text.num_key_value_heads * head_dim * 4
    assert kv_cache_bytes(planned) == expected == budget["kv_cache"]
    assert budget["pte"] == (bundle_8da4w / "model.pte").stat().st_size
    assert budget["budget"] == budget["pte"] + expected + ALLOWANCE_BYTES


@pytest.mark.parametrize("runner", ["bundle", "stock"])
def test_chat_peak_rss_within_budget(bundle_8da4w, runner):
    result = measure_memory(bundle_8da4w, runner, audio_seconds=30.0, max_new_tokens=4)
    steps = [s["step"] for s in result["steps"]]
    assert steps == ["runtime and media libraries loaded", "program loaded", "turn 1 answered", "turn 2 answered"]
    # The planned arenas the image and audio turn needs are really used: the peak is above the baseline by at
    # least the largest activation arena... (mem_id 1)
    largest_arena = max(sizes[1] for sizes in result["planned"].values() if len(sizes) > 1)
    assert result["bundle_peak_mib"] * MIB >= 0.5 * largest_arena
    # ...and within the budget.
    assert result["within_budget"], json.dumps(result, indent=1)
    assert result["bundle_peak_mib"] <= result["budget_mib"]


def test_only_the_decoder_plans_the_kv_cache(bundle_8da4w):
    """The stock runner gives every method its own arenas: an encoder declaring the KV cache's arena would cost a
    second (third, ...) zero-filled KV cache of resident memory on the phone."""
    from megrez_mobile.harness.memory import planned_memory

    planned = planned_memory(bundle_8da4w / "model.pte")
    with_kv = {name for name, sizes in planned.items() if len(sizes) > 2}
    assert with_kv == {"text_decoder"}, planned
