"""The BENCHMARKS.md tables of one same-run result: `python -m benchmarks.same_run_table OUT/results.json`.

Every cell is median [min-max] over all rounds' samples; ratios divide medians measured in the same run. Goals
are those of issue 11; each row says met or the measured gap.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MIB = 1 << 20


def cell(stat: dict[str, Any] | None, digits: int = 1) -> str:
    if not stat:
        return "—"
    return f"{stat['median']:.{digits}f} [{stat['min']:.{digits}f}–{stat['max']:.{digits}f}] n={stat['n']}"


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    return a["median"] / b["median"] if a and b and b["median"] else None


def fmt_ratio(r: float | None) -> str:
    return f"{r:.2f}×" if r is not None else "—"


def goal(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def rounds_done(results: dict[str, Any]) -> str:
    """'5', or '3 of 5 (interrupted)' for a table written before the last round."""
    planned, done = results.get("round_count"), results.get("rounds", {}).get("rounds_done", results.get("round_count"))
    return str(planned) if done == planned else f"{done} of {planned} (interrupted)"


def render(results: dict[str, Any]) -> str:
    rounds = results.get("rounds", {})
    m = rounds.get("metrics", {})
    ours, mm = m.get("ours", {}), m.get("stock_multimodal", {})
    et, lc = m.get("executorch_stock", {}), m.get("llama_cpp", {})
    mach = results.get("machine", {})
    bw = mach.get("bandwidth", {}).get(str(results.get("threads", 2)))
    bpt = results.get("bytes_per_token", {}).get("ours", {})
    h = results.get("host", {})
    lines = [f"Command: `{results.get('command', '')}`  ", f"Run: {results.get('started')} → {results.get('finished')}, "
             f"{results.get('threads')} threads, {rounds_done(results)} interleaved rounds, on {h.get('cpu', '?')} "
             f"({h.get('cpus')} vCPUs, {', '.join(h.get('extensions', []))}; {h.get('memory_gib')} GiB).", ""]

    if mach:
        lines += ["**This machine** (measured in this run):", "", "| ceiling | median [min–max] |", "|---|---|"]
        for t, stat in sorted(mach.get("bandwidth", {}).items()):
            lines.append(f"| read bandwidth, {t} thread(s), compiled kernel | {cell(stat)} GB/s |")
        for kind, stat in mach.get("gemm", {}).items():
            lines.append(f"| GEMM {kind} {'×'.join(map(str, stat['shape']))}, our XNNPACK path | {cell(stat, 0)} GOP/s |")
        lines.append("")

    rows = [("prefill 128 tokens, tok/s", "prefill_tok_s@128"), ("prefill 512 tokens, tok/s", "prefill_tok_s@512"),
            ("decode after 128 tokens, tok/s", "decode_tok_s@ctx128"),
            ("decode after 2,048 tokens, tok/s", "decode_tok_s@ctx2048")]
    lines += ["**Decoder**, same run:", "",
              "| | ours (`megrez-mobile profile`) | our bundle, stock MultimodalRunner | ExecuTorch stock export_llm "
              "| llama.cpp Q4_0 | ours ÷ stock ET | ours ÷ llama.cpp | bandwidth floor (ours) | ours ÷ floor |",
              "|---|---|---|---|---|---|---|---|---|"]
    goals: list[tuple[str, bool | None, str]] = []
    for label, key in rows:
        o = ours.get(key)
        floor = None
        if key.startswith("decode") and bw and bpt:
            floor = bw["median"] * 1e9 / bpt[key.split("@")[1]]
        vs_et, vs_lc = ratio(o, et.get(key)), ratio(o, lc.get(key))
        vs_floor = o["median"] / floor if o and floor else None
        lines.append(f"| {label} | {cell(o)} | {cell(mm.get(key))} | {cell(et.get(key))} | {cell(lc.get(key))} "
                     f"| {fmt_ratio(vs_et)} | {fmt_ratio(vs_lc)} | {f'{floor:.1f}' if floor else '—'} "
                     f"| {f'{100 * vs_floor:.0f} %' if vs_floor else '—'} |")
        if key.startswith("decode"):
            goals.append((f"{label}: ≥ 1.1× stock ExecuTorch", None if vs_et is None else vs_et >= 1.1,
                          fmt_ratio(vs_et)))
            goals.append((f"{label}: ≥ 90 % of the bandwidth floor", None if vs_floor is None else vs_floor >= 0.9,
                          f"{100 * vs_floor:.0f} %" if vs_floor else "—"))
        else:
            goals.append((f"{label}: ≥ 1.0× stock ExecuTorch", None if vs_et is None else vs_et >= 1.0,
                          fmt_ratio(vs_et)))
            goals.append((f"{label}: ≥ 1.5× llama.cpp", None if vs_lc is None else vs_lc >= 1.5, fmt_ratio(vs_lc)))
    lines.append("")
    if bw and results.get("bytes_per_token"):
        lines += ["Decode against each runtime's own floor (its bytes read per token, weights + KV cache up to the "
                  "context, ÷ the measured bandwidth):", "", "| runtime | context | bytes/token | floor tok/s | "
                  "measured | % of its floor |", "|---|---|---|---|---|---|"]
        for runtime, table in (("ours", ours), ("executorch_stock", et), ("llama_cpp", lc)):
            for ctx in ("ctx128", "ctx2048"):
                nbytes = results["bytes_per_token"].get(runtime, {}).get(ctx)
                stat = table.get(f"decode_tok_s@{ctx}")
                if nbytes and stat:
                    floor = bw["median"] * 1e9 / nbytes
                    lines.append(f"| {runtime} | {ctx[3:]} | {nbytes / 1e9:.3f} GB | {floor:.1f} | "
                                 f"{stat['median']:.1f} | {100 * stat['median'] / floor:.0f} % |")
        lines.append("")

    work = results.get("work", {})
    gemm = mach.get("gemm", {}).get("int8_8da8w")
    if ours.get("vision_ms_per_slice") and work:
        lines += ["**Encoders** (8da8w on XNNPACK), FLOPs counted from the dims (torch FlopCounterMode, meta tensors):",
                  "", "| | time | GFLOP | GOP/s | % of the int8 ceiling |", "|---|---|---|---|---|"]
        for label, key, flops in (("vision, per slice (ms)", "vision_ms_per_slice", work["vision_per_slice"]),
                                  ("audio, per second of audio (ms)", "audio_ms_per_audio_s", work["audio_per_second"])):
            stat = ours[key]
            rate = flops / (stat["median"] / 1000) / 1e9
            share = rate / gemm["median"] if gemm else None
            lines.append(f"| {label} | {cell(stat, 0)} | {flops / 1e9:.0f} | {rate:.0f} "
                         f"| {f'{100 * share:.0f} %' if share else '—'} |")
            goals.append((f"{label.split(',')[0]} encoder ≥ 60 % of the int8 ceiling",
                          None if share is None else share >= 0.6, f"{100 * share:.0f} %" if share else "—"))
        lines.append("")

    profile = rounds.get("ours_profile", {})
    prompts = profile.get("prompts", {})
    if prompts and ours.get("ttft_s.image"):
        lines += ["**Time to first token** against the sum of its parts (encoders + prefill at the rate measured "
                  "for 512 tokens):", "", "| prompt | measured (s) | parts (s) | measured ÷ parts | stock runner (s) |",
                  "|---|---|---|---|---|"]
        prefill_rate = ours["prefill_tok_s@512"]["median"]
        slices = len(profile.get("slice_shapes", []))
        parts = {"image": slices * ours["vision_ms_per_slice"]["median"] / 1000,
                 "audio": prompts["audio"]["audio_seconds"] * ours["audio_ms_per_audio_s"]["median"] / 1000}
        for kind, encode in parts.items():
            total = encode + prompts[kind]["tokens"] / prefill_rate
            measured = ours[f"ttft_s.{kind}"]["median"]
            lines.append(f"| {kind} ({prompts[kind]['tokens']} tokens) | {cell(ours[f'ttft_s.{kind}'], 2)} "
                         f"| {total:.2f} | {measured / total:.2f} | {cell(mm.get(f'ttft_s.{kind}'), 2)} |")
            goals.append((f"time to first token, {kind}: within 10 % of its parts", measured <= 1.1 * total,
                          f"{100 * (measured / total - 1):+.0f} %"))
        lines.append("")

    memory = results.get("memory", {})
    if memory:
        lines += ["**Memory**, an image + 30 s audio + text turn then a text turn, in a fresh process:", "",
                  "| runner | peak RSS | before the bundle (interpreter + libraries) | bundle's peak | budget "
                  "(.pte + KV + 400 MiB) |", "|---|---|---|---|---|"]
        for runner, r in memory.items():
            lines.append(f"| {runner} | {r['peak_rss_mib']:,.0f} MiB | {r['baseline_rss_mib']:,.0f} MiB "
                         f"| {r['bundle_peak_mib']:,.0f} MiB | {r['budget_mib']:,.0f} MiB ({r['pte_mib']:,.0f} + "
                         f"{r['kv_cache_mib']:,.0f} + 400) |")
            goals.append((f"memory through {runner}: bundle's peak ≤ budget", r["within_budget"],
                          f"{r['bundle_peak_mib'] - r['budget_mib']:+,.0f} MiB"))
        lines.append("")

    export = results.get("our_export", {})
    if export:
        gib = export["peak_rss_bytes"] / (1 << 30)
        lines += [f"**Export** (`megrez-mobile export`, "
                  f"{'cached: measured when this command first made it' if export.get('cached') else 'this run'}): "
                  f"{export['wall_s'] / 60:.1f} min, peak RSS {gib:.2f} GiB.", ""]
        goals.append(("export ≤ 12 GiB peak RSS", gib <= 12, f"{gib:.2f} GiB"))
        goals.append(("export ≤ 30 min", export["wall_s"] <= 1800, f"{export['wall_s'] / 60:.1f} min"))

    checks = rounds.get("cotenant", {})
    if checks:
        lines += ["**Co-tenant check** (/proc/stat: niced, stolen and other processes' CPU time during each measurement): " + "; ".join(
            f"{r}: {sum(c['quiet'] for c in cs)}/{len(cs)} quiet" for r, cs in checks.items() if cs), ""]

    for runtime, error in rounds.get("errors", {}).items():
        lines += [f"**{runtime} failed** and is missing above: `{error.splitlines()[0][:300]}`", ""]

    lines += ["**Goals** (issue 11):", "", "| goal | result | measured |", "|---|---|---|"]
    lines += [f"| {g} | {goal(ok)} | {v} |" for g, ok, v in goals]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())))
