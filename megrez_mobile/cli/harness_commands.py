"""Proving and measuring bundles: `validate` and `profile`."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from .common import check_output_file, friendly_errors, quiet_library_warnings, save_output


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--reference", "-r", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The checkpoint the bundle was exported from (loaded eager, float32: ~16 GB for the full model).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON here.")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Image for vision_encoder (default: the sample image shipped with the SDK).")
@click.option("--audio", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Audio for audio_encoder / audio_preprocessor (default: the shipped sample).")
@click.option("--positions", type=int, default=500, show_default=True,
              help="Teacher-forced decoder positions (at least).")
@click.option("--no-drilldown", is_flag=True, help="Do not look for the first diverging operator on failure.")
@friendly_errors
def validate(bundle: Path, reference: Path, json_out, image, audio, positions: int, no_drilldown: bool):
    """Prove BUNDLE is still the model in the reference checkpoint, method by method.

    \b
    Each method runs on fixed inputs and is compared with the eager fp32 model, fed the reference's
    own inputs (so a failure names the method that broke):
      token_embedding, audio_preprocessor, vision_encoder (every slice of the sample image),
      audio_encoder (the sample audio): max-abs error, cosine, SNR;
      text_decoder: top-1 agreement and KL divergence over >= 500 teacher-forced positions, and
      how many greedy tokens match eager before the first difference.
    Thresholds are the recipe's `fidelity` section (recorded in the bundle's manifest).
    Exit code 0 when every threshold holds, 1 when one fails (then the report says which method,
    and where inside it the error first jumps).
    \b
    Example:
      megrez-mobile validate megrez-xnnpack-8da4w/ --reference Megrez-3B-Omni/ --json report.json
    """
    check_output_file(json_out, "--json")
    quiet_library_warnings()
    from ..harness.validate import ValidationInputs, require_runnable, validate_bundle

    require_runnable(bundle)
    inputs = ValidationInputs(image=image, audio=audio, min_positions=positions)
    report = validate_bundle(bundle, reference, inputs, log=lambda m: click.echo(m, err=True))
    if not report.passed and not no_drilldown:
        from ..harness.drilldown import drill_down

        for method in report.failed_methods:
            click.echo(f"drilling down into {method} (ETDump debug buffer + Inspector)", err=True)
            report.drilldown[method] = drill_down(bundle, reference, method, inputs)
    click.echo(report.table())
    for method, found in report.drilldown.items():
        click.echo(f"{method}: {found.get('summary', found)}")
    if json_out:
        save_output(json_out, report.to_json(), "the report")
    sys.exit(0 if report.passed else 1)


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--device", "-d", "device_specs", multiple=True,
              help="local | ssh:user@host[:port] | adb | adb:SERIAL. Repeat for several devices (run in parallel).")
@click.option("--devices-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A YAML list of devices (specs, or mappings with ssh settings such as identity_file).")
@click.option("--ssh-option", "ssh_options", multiple=True,
              help="Passed to ssh/scp for --device ssh:... (e.g. --ssh-option=-i --ssh-option=~/.ssh/board).")
@click.option("--reps", type=int, default=5, show_default=True, help="Measured repetitions of each benchmark.")
@click.option("--warmup", type=int, default=1, show_default=True, help="Discarded warm-up runs before them.")
@click.option("--threads", type=int, default=None, help="CPU threads (default: ExecuTorch's choice).")
@click.option("--quick", is_flag=True, help="Small sizes (16/64-token prefill, 16-token decode, 5 s audio).")
@click.option("--no-per-op", is_flag=True, help="Skip the per-operator ETDump breakdown.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the versioned run JSON here (the input of a later --compare).")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a self-contained HTML report with charts here.")
@click.option("--compare", "baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A earlier run's JSON: mark changes larger than the measured spread as regressions.")
@friendly_errors
def profile(bundle: Path, device_specs, devices_file, ssh_options, reps, warmup, threads, quick, no_per_op,
            json_out, html_out, baseline):
    """Measure BUNDLE on one or more devices, llama-bench style.

    \b
    Per device, in a fresh process on that device: load time; prefill tok/s at 128 and 512 tokens;
    decode tok/s over 128 tokens (from position 0, and after 128- and 2,048-token contexts); time to first token for a text prompt, the sample image (448
    image tokens) + text, and 30 s of audio + text; vision ms per slice; audio-encoder ms per second
    of audio; peak RSS; then the top operators by time from an ETDump (delegated or not).
    Every timing: warm-up, then --reps repetitions, reported as median [min-max].
    \b
    Devices:
      local                  this machine
      ssh:user@host[:port]   a Linux board (aarch64/x86): copies the bundle (only what is missing,
                             resumable, checksum-verified), installs this SDK version into its own
                             venv there, runs the agent, brings the result back
      adb[:SERIAL]           an Android phone running the android_demo benchmark entry point
    Exit code 1 when a device failed or, with --compare, when a metric regressed.
    \b
    Examples:
      megrez-mobile profile megrez-xnnpack-8da4w/ --device local --json base.json --html report.html
      megrez-mobile profile megrez-xnnpack-8da4w/ -d local -d ssh:pi@raspberrypi.local --compare base.json
    """
    for path, option in ((json_out, "--json"), (html_out, "--html")):
        check_output_file(path, option)
    from ..harness import report as reports
    from ..harness.agent import agent_args
    from ..harness.devices import load_devices_file, parse_device, profile_on_devices
    from ..harness.profile import ProfileOptions

    baseline_run = reports.load_run(baseline) if baseline else None  # a broken baseline fails now, not after the run

    devices = [parse_device(spec, ssh_options=ssh_options) for spec in device_specs]
    devices += load_devices_file(devices_file) if devices_file else []
    devices = devices or [parse_device("local")]
    overrides = dict(threads=threads, per_op=not no_per_op)
    options = (ProfileOptions.quick(**overrides) if quick else
               ProfileOptions(reps=reps, warmup=warmup, **overrides))
    results = profile_on_devices(devices, bundle, agent_args(options), log=lambda m: click.echo(m, err=True))
    run = reports.make_run(bundle, results, dataclasses.asdict(options))
    regressed = False
    if baseline_run is not None:
        verdicts = reports.compare_runs(run, baseline_run)
        run["comparison"] = reports.verdicts_to_json(verdicts)
        regressed = any(v.status == "regression" for v in verdicts)
    click.echo(reports.table(run))
    for entry in run["devices"]:
        if entry["result"] and entry["result"]["operators"]:
            click.echo("\n" + reports.operators_table(entry))
    if json_out:
        save_output(json_out, json.dumps(run, indent=1) + "\n", "the run JSON")
    if html_out:
        save_output(html_out, reports.render_html(run), "the HTML report")
    failed = any(entry["error"] for entry in run["devices"])
    sys.exit(1 if failed or regressed else 0)
