"""The on-device agent: `python -m megrez_mobile.harness.agent --bundle DIR --out RESULT.json [options]`.

`megrez-mobile profile` starts it on each device (a subprocess here, over ssh on a board); it measures one
bundle in a fresh process and writes the versioned JSON result. Progress goes to stderr, nothing to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .profile import ProfileOptions, profile_bundle


def agent_args(options: ProfileOptions) -> list[str]:
    """The agent's command line for `options` (what the devices pass on; the inverse of `parse_options`)."""
    args = ["--reps", str(options.reps), "--warmup", str(options.warmup),
            "--prefill", ",".join(map(str, options.prefill_lengths)), "--decode", str(options.decode_tokens),
            "--decode-contexts", ",".join(map(str, options.decode_contexts)),
            "--audio-seconds", f"{options.audio_seconds:g}", "--top-ops", str(options.top_ops)]
    if options.threads:
        args += ["--threads", str(options.threads)]
    if not options.per_op:
        args.append("--no-per-op")
    return args


def parse_options(argv: list[str]) -> tuple[argparse.Namespace, ProfileOptions]:
    parser = argparse.ArgumentParser(prog="python -m megrez_mobile.harness.agent", description=__doc__)
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    defaults = ProfileOptions()
    # None: the default of the chosen size (normal or --quick); given explicitly, they win over --quick.
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--prefill", default=",".join(map(str, defaults.prefill_lengths)))
    parser.add_argument("--decode", type=int, default=defaults.decode_tokens)
    parser.add_argument("--decode-contexts", default=None, help="comma-separated context lengths (default 128,2048)")
    parser.add_argument("--audio-seconds", type=float, default=defaults.audio_seconds)
    parser.add_argument("--top-ops", type=int, default=defaults.top_ops)
    parser.add_argument("--no-per-op", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small sizes (tests, a first look)")
    ns = parser.parse_args(argv)
    counts = {k: v for k, v in (("reps", ns.reps), ("warmup", ns.warmup)) if v is not None}
    if ns.decode_contexts is not None:
        counts["decode_contexts"] = _lengths(ns.decode_contexts)
    if ns.quick:
        options = ProfileOptions.quick(threads=ns.threads, per_op=not ns.no_per_op, **counts)
    else:
        options = ProfileOptions(**counts, threads=ns.threads, prefill_lengths=_lengths(ns.prefill),
                                 decode_tokens=ns.decode, audio_seconds=ns.audio_seconds, per_op=not ns.no_per_op,
                                 top_ops=ns.top_ops)
    return ns, options


def _lengths(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def main(argv: list[str] | None = None) -> int:
    ns, options = parse_options(sys.argv[1:] if argv is None else argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = profile_bundle(ns.bundle, options, log)
    tmp = ns.out.with_name(ns.out.name + ".partial")
    tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    tmp.replace(ns.out)  # a reader never sees half a result
    return 0


if __name__ == "__main__":
    sys.exit(main())
