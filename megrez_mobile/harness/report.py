"""Profile results for people: the terminal table, the versioned run JSON, the HTML report, `--compare`.

A run is one `megrez-mobile profile` invocation: one bundle on one or more devices. Its JSON holds every
device's agent result (or its error) and, with `--compare`, the verdict per metric against a baseline run.
"""

from __future__ import annotations

import datetime as _dt
import html
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..untrusted import bounded, read_json, typed_fields

RUN_SCHEMA = "megrez-mobile/profile-run/1"

# What each metric means, in the order reports show them.
METRIC_LABELS = {
    "load_s": "load (program + methods), s",
    "prefill_tok_s@": "prefill {n} tokens, tok/s",
    "decode_tok_s@": "decode {n} tokens, tok/s",
    "ttft_s.text": "time to first token, text prompt, s",
    "ttft_s.image": "time to first token, sample image + text, s",
    "ttft_s.audio": "time to first token, audio + text, s",
    "vision_ms_per_slice": "vision encoder, ms per slice",
    "audio_ms_per_audio_s": "audio encoder, ms per second of audio",
    "peak_rss_mb": "peak RSS, MB",
}


def metric_label(key: str) -> str:
    for prefix, label in METRIC_LABELS.items():
        if key == prefix:
            return label
        if prefix.endswith("@") and key.startswith(prefix):
            return label.format(n=key[len(prefix):])
    return key


@dataclass(frozen=True)
class Verdict:
    device: str
    metric: str
    baseline: float
    current: float
    noise: float      # the larger of the two runs' spreads
    status: str       # "regression" | "improvement" | "within noise"

    @property
    def change(self) -> float:
        return (self.current - self.baseline) / self.baseline if self.baseline else 0.0


def make_run(bundle_dir: Path, device_results: list, options: dict[str, Any]) -> dict[str, Any]:
    """The run JSON from the devices' outcomes (`DeviceResult`s)."""
    return {"schema": RUN_SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "bundle": str(bundle_dir), "options": options,
            "devices": [{"device": r.device, "result": r.result, "error": r.error} for r in device_results],
            "comparison": []}


@dataclass(frozen=True)
class _BaselineStat:
    """What `compare_runs` reads of each metric of a baseline run (checked, since the file may come from anywhere)."""

    median: float
    spread: float = bounded(0.0, None)
    better: str = "higher"


def load_run(path: Path) -> dict[str, Any]:
    """A run JSON written by `profile --json` (a baseline for --compare), checked before anything reads it."""
    fix = "pass a file written by `megrez-mobile profile --json`"
    run = read_json(Path(path), InputError, fix)
    if not isinstance(run, dict) or run.get("schema") != RUN_SCHEMA:
        raise InputError(f"{path} has schema {run.get('schema') if isinstance(run, dict) else None!r}, expected "
                         f"{RUN_SCHEMA!r}; {fix}")
    devices = run.get("devices")
    if not isinstance(devices, list):
        raise InputError(f"{path}: devices must be a list; {fix}")
    for i, entry in enumerate(devices):
        where = f"{path}: devices[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("device"), str):
            raise InputError(f"{where} must be a mapping with a `device` string; {fix}")
        result = entry.get("result")
        if result is None:
            continue
        metrics = result.get("metrics") if isinstance(result, dict) else None
        if not isinstance(metrics, dict):
            raise InputError(f"{where}.result.metrics must be a mapping; {fix}")
        for key, stat in metrics.items():
            checked = _BaselineStat(**typed_fields(_BaselineStat, stat, f"{where}.result.metrics[{key!r}]",
                                                   InputError, fix=fix))
            if checked.better not in ("higher", "lower"):
                raise InputError(f"{where}.result.metrics[{key!r}].better must be 'higher' or 'lower'; {fix}")
    return run


def compare_runs(run: dict[str, Any], baseline: dict[str, Any]) -> list[Verdict]:
    """Per device (by spec; a single-device baseline serves every device) and metric: a change is a regression
    or an improvement only when it is larger than the spread either run measured."""
    base = {d["device"]: d["result"] for d in baseline["devices"] if d.get("result")}
    verdicts = []
    for entry in run["devices"]:
        current = entry.get("result")
        reference = base.get(entry["device"]) or (next(iter(base.values())) if len(base) == 1 else None)
        if not current or not reference:
            continue
        for key, now in current["metrics"].items():
            then = reference["metrics"].get(key)
            if not then:
                continue
            noise = max(now["spread"], then["spread"])
            delta = now["median"] - then["median"]
            worse = delta < 0 if now["better"] == "higher" else delta > 0
            status = "within noise" if abs(delta) <= noise else "regression" if worse else "improvement"
            verdicts.append(Verdict(entry["device"], key, then["median"], now["median"], noise, status))
    return verdicts


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def _cell(stat: dict[str, Any]) -> str:
    if stat["n"] == 1:
        return _fmt(stat["median"])
    return f"{_fmt(stat['median'])} [{_fmt(stat['min'])}-{_fmt(stat['max'])}]"


def table(run: dict[str, Any]) -> str:
    """Metrics down, devices across: median [min-max]; regressions marked."""
    devices = run["devices"]
    marks = {(v["device"], v["metric"]): v["status"] for v in run.get("comparison", [])}
    keys = list(dict.fromkeys(k for d in devices if d["result"] for k in d["result"]["metrics"]))
    header = ["metric"] + [d["device"] for d in devices]
    rows = [header]
    for key in keys:
        row = [metric_label(key)]
        for d in devices:
            stat = d["result"]["metrics"].get(key) if d["result"] else None
            cell = _cell(stat) if stat else "-"
            status = marks.get((d["device"], key))
            if status == "regression":
                cell += "  REGRESSION"
            elif status == "improvement":
                cell += "  improved"
            row.append(cell)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for d in devices:
        if d["error"]:
            lines.append(f"{d['device']}: FAILED: {d['error']}")
        else:
            lines.append(_context_line(d))
    return "\n".join(lines)


def _context_line(entry: dict[str, Any]) -> str:
    r = entry["result"]
    host, bundle, opts = r["host"], r["bundle"], r["options"]
    return (f"{entry['device']}: {host.get('cpu_model') or host.get('machine')}, {host.get('cpu_count')} CPUs, "
            f"threads {opts.get('threads') or 'default'}; bundle {bundle['name']} ({bundle['recipe']}, "
            f"{bundle['pte_bytes'] / 2**30:.2f} GiB); {opts['reps']} reps after {opts['warmup']} warm-up")


def operators_table(entry: dict[str, Any], per_run: int = 8) -> str:
    ops = entry["result"]["operators"] if entry.get("result") else []
    lines = []
    for run_label in dict.fromkeys(o["run"] for o in ops):
        lines.append(f"{entry['device']} - {run_label}:")
        for o in [o for o in ops if o["run"] == run_label][:per_run]:
            where = "delegated" if o["delegated"] else "CPU kernel"
            lines.append(f"  {o['share'] * 100:5.1f}%  {o['total_ms']:9.2f} ms  {o['calls']:4d} calls  {where:10s}  "
                         f"{o['operator']}")
    return "\n".join(lines)


# --- HTML ---------------------------------------------------------------------------------------------------------
_CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:1em 0}
td,th{padding:4px 10px;border-bottom:1px solid #eee;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b00020;font-weight:600}.good{color:#0a7d32}.note{color:#666;font-size:.92em}
.err{background:#fde8ea;padding:.6em 1em;border-left:4px solid #b00020}svg text{font:12px system-ui,sans-serif}"""
_PALETTE = ("#3b6fd4", "#e0813a", "#3aa65a", "#a24fc4", "#c43d4f", "#2aa3b3")


def _bar_chart(title: str, labels: list[str], values: list[float], errors: list[tuple[float, float]],
               unit: str) -> str:
    """Horizontal bars with min-max whiskers, one per device."""
    width, left, bar, gap = 760, 230, 22, 10
    height = 30 + len(values) * (bar + gap)
    top = max([e[1] for e in errors] + values + [1e-9])
    scale = (width - left - 90) / top
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="0" y="16" font-weight="600">{html.escape(title)}</text>']
    for i, (label, value, (lo, hi)) in enumerate(zip(labels, values, errors)):
        y = 28 + i * (bar + gap)
        color = _PALETTE[i % len(_PALETTE)]
        parts += [f'<text x="0" y="{y + 15}">{html.escape(label[:34])}</text>',
                  f'<rect x="{left}" y="{y}" width="{value * scale:.1f}" height="{bar}" fill="{color}"/>',
                  f'<line x1="{left + lo * scale:.1f}" x2="{left + hi * scale:.1f}" y1="{y + bar / 2}" '
                  f'y2="{y + bar / 2}" stroke="#222"/>',
                  f'<text x="{left + value * scale + 6:.1f}" y="{y + 15}">{_fmt(value)} {html.escape(unit)}</text>']
    return "".join(parts) + "</svg>"


def render_html(run: dict[str, Any]) -> str:
    devices = [d for d in run["devices"] if d["result"]]
    marks = {(v["device"], v["metric"]): v for v in run.get("comparison", [])}
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>Megrez Mobile profile</title>"
           f"<style>{_CSS}</style></head><body>",
           f"<h1>Megrez Mobile profile: {html.escape(Path(run['bundle']).name)}</h1>",
           f"<p class='note'>Run {html.escape(run['created'])}. Each number is the median of the repetitions; the "
           "bracket and the whisker are min-max (the spread). Throughput (tok/s): higher is better; times and memory: "
           "lower is better. Time to first token includes preprocessing (image slicing, log-mel) and the encoders."
           "</p>"]
    for d in run["devices"]:
        if d["error"]:
            out.append(f"<p class='err'><b>{html.escape(d['device'])}</b> failed: {html.escape(d['error'])}</p>")
    if devices:
        out.append("<h2>Summary</h2><table><tr><th>metric</th>" +
                   "".join(f"<th>{html.escape(d['device'])}</th>" for d in devices) + "</tr>")
        keys = list(dict.fromkeys(k for d in devices for k in d["result"]["metrics"]))
        for key in keys:
            cells = []
            for d in devices:
                stat = d["result"]["metrics"].get(key)
                verdict = marks.get((d["device"], key))
                text = html.escape(_cell(stat)) if stat else "-"
                if verdict and verdict["status"] != "within noise":
                    cls = "bad" if verdict["status"] == "regression" else "good"
                    text += (f" <span class='{cls}'>{verdict['status']} ({(verdict['current'] - verdict['baseline']) / (verdict['baseline'] or 1) * 100:+.1f}%"
                             f" vs {_fmt(verdict['baseline'])})</span>")
                cells.append(f"<td class='num'>{text}</td>")
            out.append(f"<tr><td>{html.escape(metric_label(key))}</td>{''.join(cells)}</tr>")
        out.append("</table>")
        out.append("<h2>Charts</h2>")
        for key in keys:
            stats = [(d["device"], d["result"]["metrics"].get(key)) for d in devices]
            stats = [(n, s) for n, s in stats if s]
            out.append(_bar_chart(metric_label(key), [n for n, _ in stats], [s["median"] for _, s in stats],
                                  [(s["min"], s["max"]) for _, s in stats], stats[0][1]["unit"]))
        for d in devices:
            r = d["result"]
            out.append(f"<h2>{html.escape(d['device'])}</h2><p>{html.escape(_context_line(d))}</p>")
            out.append("<p class='note'>Prompts: " + ", ".join(
                f"{k}: {v['tokens']} tokens" + (f" ({v['image_tokens']} image tokens)" if v['image_tokens'] else "")
                + (f" ({v['audio_seconds']:g} s audio)" if v['audio_seconds'] else "")
                for k, v in r["prompts"].items()) + "</p>")
            for run_label in dict.fromkeys(o["run"] for o in r["operators"]):
                ops = [o for o in r["operators"] if o["run"] == run_label]
                out.append(_bar_chart(f"Where the time goes: {run_label} (ms, top operators)",
                                      [("[D] " if o["delegated"] else "[CPU] ") + o["operator"] for o in ops],
                                      [o["total_ms"] for o in ops], [(o["total_ms"], o["total_ms"]) for o in ops],
                                      "ms"))
            if r["operators"]:
                out.append("<p class='note'>[D]: inside a delegate (XNNPACK's own kernel names); [CPU]: ExecuTorch's "
                           "portable or custom kernels outside any delegate. From one ETDump run per method, read "
                           "with ExecuTorch's Inspector.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def verdicts_to_json(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    return [{**asdict(v), "change": v.change} for v in verdicts]
