"""`megrez-mobile`: the command line.

    megrez-mobile demo                         tiny checkpoint -> bundle -> chat with the sample image + audio
    megrez-mobile make-tiny OUT [--full-size]  a random-weight checkpoint in the official layout
    megrez-mobile export CKPT -r RECIPE -o B   checkpoint -> bundle (model.pte + tokenizer + manifest)
    megrez-mobile inspect B                    what a bundle holds, verified
    megrez-mobile run CKPT|B --prompt ...      one streamed answer (eager model or bundle)
    megrez-mobile chat B                       interactive multi-turn chat through a bundle
    megrez-mobile validate B --reference CKPT  bundle vs eager model, per method, recipe thresholds
    megrez-mobile profile B --device local     latency, memory and per-op report on local/ssh/adb devices
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import click

from .errors import MegrezError

DTYPES = ("float32", "bfloat16")


def _friendly_errors(fn):
    """Our typed errors already say what went wrong and what to do: print them without a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MegrezError as e:
            raise click.ClickException(f"{type(e).__name__}: {e}") from e
        except FileExistsError as e:
            raise click.ClickException(str(e)) from e
    return wrapper


class _Progress:
    """A click progress bar fed by (done, total) callbacks."""

    def __init__(self, label: str):
        self.label, self.bar = label, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)
        if done >= total:
            self.bar.__exit__(None, None, None)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="megrez-mobile")
def cli():
    """Megrez Mobile: Megrez-3B-Omni (text + image + speech in, text out) for phones and edge boards.

    \b
    Start here:
      megrez-mobile demo                              # the whole flow on a tiny random checkpoint
      megrez-mobile run CKPT --prompt "Describe this" --image photo.jpg --audio question.m4a
    CKPT is a directory in the official Hugging Face layout (Infinigence/Megrez-3B-Omni, or one
    made by `megrez-mobile make-tiny`).
    """


@cli.command("make-tiny")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--full-size", is_flag=True,
              help="Official dims (4.0 B parameters, ~8 GB of bf16 shards) for benchmarks; default: tiny (~3 MB).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@_friendly_errors
def make_tiny(out: Path, full_size: bool, seed: int, overwrite: bool):
    """Write a complete random-weight checkpoint to OUT in the official layout.

    config.json with the real field names, two bf16 safetensors shards + index, a byte-level BPE
    tokenizer.json (trained on English + Chinese, with every Megrez special token), tokenizer_config.json
    and preprocessor_config.json. It loads through exactly the same code as the real checkpoint.
    The directory appears only when complete.
    """
    from .checkpoint.synthetic import FULL_SIZE, TINY, make_checkpoint

    spec = FULL_SIZE if full_size else TINY
    start = time.perf_counter()
    make_checkpoint(out, spec, seed=seed, overwrite=overwrite, progress=_Progress(f"writing {spec.name} weights"))
    size = sum(f.stat().st_size for f in out.iterdir())
    click.echo(f"wrote {spec.name} checkpoint to {out} ({size / 1e6:,.1f} MB) in {time.perf_counter() - start:.1f} s")


def _sampling_options(fn):
    options = [
        click.option("--max-new-tokens", default=100, show_default=True, help="Upper bound on the answer length."),
        click.option("--sampling/--greedy", default=False, show_default=True,
                     help="Sample (temperature/top-p/top-k) instead of greedy decoding."),
        click.option("--temperature", default=0.7, show_default=True, help="With --sampling."),
        click.option("--top-p", default=0.8, show_default=True, help="With --sampling."),
        click.option("--top-k", default=100, show_default=True, help="With --sampling."),
        click.option("--repetition-penalty", default=1.0, show_default=True,
                     help="1.0 = off; the official demo uses 1.2."),
        click.option("--seed", type=int, default=None, help="Makes --sampling reproducible."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _load_model(checkpoint: Path, dtype: str):
    import torch

    from .model.omni import MegrezOmni

    start = time.perf_counter()
    model = MegrezOmni.from_pretrained(checkpoint, dtype=getattr(torch, dtype), progress=_Progress("loading weights"))
    click.echo(f"loaded {checkpoint} in {time.perf_counter() - start:.1f} s", err=True)
    return model


def _answer(model, inputs, max_new_tokens: int, **sampling):
    from .model.generation import SamplingConfig

    result = model.generate_from_inputs(inputs, max_new_tokens, SamplingConfig(**sampling),
                                        stream=lambda piece: click.echo(piece, nl=False))
    click.echo()
    click.echo(f"[{result.prompt_tokens} prompt tokens, prefill incl. encoders "
               f"{result.prefill_tokens_per_second:.1f} tok/s; "
               f"{len(result.token_ids)} new tokens, decode {result.decode_tokens_per_second:.1f} tok/s; "
               f"stopped: {result.stop_reason}]", err=True)
    return result


@cli.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--prompt", "-p", required=True, help="The user's text.")
@click.option("--image", "-i", type=click.Path(exists=True, dir_okay=False), help="An image file (any Pillow format).")
@click.option("--audio", "-a", type=click.Path(exists=True, dir_okay=False),
              help="An audio file (wav, flac, ogg, mp3, m4a/aac). Over 30 s it is split into 30 s clips.")
@click.option("--system", default=None, help="System prompt (default: the Megrez default).")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="Weights in memory; the checkpoint is bf16 either way.")
@_sampling_options
@_friendly_errors
def run(checkpoint: Path, prompt: str, image, audio, system, dtype, **sampling):
    """Stream one answer from CHECKPOINT (eager PyTorch) or from a bundle (its model.pte via ExecuTorch).

    \b
    Example:
      megrez-mobile run Megrez-3B-Omni/ -p "What is in the picture?" -i photo.jpg
      megrez-mobile run Megrez-3B-Omni/ -p "Convert speech to text." -a memo.m4a
      megrez-mobile run megrez-xnnpack-8da4w/ -p "What is in the picture?" -i photo.jpg
    """
    model = _load_bundle(checkpoint) if _is_bundle(checkpoint) else _load_model(checkpoint, dtype)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": {"text": prompt, "image": image, "audio": audio}}]
    inputs = model.processor.build_inputs(messages)
    click.echo(f"prompt: {inputs.describe()}", err=True)
    _answer(model, inputs, **sampling)


def _is_bundle(path: Path) -> bool:
    return (path / "manifest.json").is_file()


def _load_bundle(path: Path):
    from .runtime.session import Bundle

    start = time.perf_counter()
    bundle = Bundle.load(path)
    click.echo(f"loaded bundle {path} ({bundle.manifest.recipe['name']}) in {time.perf_counter() - start:.1f} s",
               err=True)
    return bundle


@cli.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--system", default=None, help="System prompt (default: the Megrez default).")
@_sampling_options
@_friendly_errors
def chat(bundle: Path, system, **sampling):
    """Interactive multi-turn chat with a BUNDLE; the KV cache is kept between turns.

    \b
    Type a message and press Enter. Attach media with a line prefix:
      /image photo.jpg  What is this?
      /audio memo.m4a   Transcribe this.
    /reset forgets the conversation; /quit (or Ctrl-D) leaves.
    """
    from .model.generation import SamplingConfig

    session = _load_bundle(bundle)
    history = [{"role": "system", "content": system}] if system else []
    max_new_tokens = sampling.pop("max_new_tokens")
    config = SamplingConfig(**sampling)
    while True:
        try:
            line = click.prompt("you", prompt_suffix="> ", default="", show_default=False).strip()
        except (EOFError, click.Abort):
            break
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            session.reset()
            history = history[:1] if system else []
            continue
        content: dict = {}
        for kind in ("image", "audio"):
            if line.startswith(f"/{kind} "):
                path, _, line = line[len(kind) + 2:].strip().partition(" ")
                content[kind] = path
        content["text"] = line
        if not line and not content.get("image") and not content.get("audio"):
            continue
        history.append({"role": "user", "content": content})
        click.echo("assistant> ", nl=False)
        try:
            result = session.generate(history, max_new_tokens, config, stream=lambda p: click.echo(p, nl=False))
        except MegrezError as e:
            history.pop()
            click.echo(f"\n{type(e).__name__}: {e}", err=True)
            continue
        click.echo()
        click.echo(f"[{result.prompt_tokens} positions, {len(result.token_ids)} new tokens, "
                   f"decode {result.decode_tokens_per_second:.1f} tok/s]", err=True)
        history.append({"role": "assistant", "content": result.text})


@cli.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--no-checksums", is_flag=True, help="Check file sizes only (skip sha256 of the .pte).")
@_friendly_errors
def inspect(bundle: Path, no_checksums: bool):
    """Print a BUNDLE's manifest: recipe, methods with delegation coverage, sizes, context, versions.

    Verifies every file's size and sha256 against the manifest first.
    """
    from .bundle import read_manifest, verify_files

    manifest = read_manifest(bundle)
    verify_files(bundle, manifest, checksums=not no_checksums)
    recipe = manifest.recipe
    click.echo(f"bundle      {bundle}  (schema {manifest.schema_version}, files verified)")
    click.echo(f"model       {manifest.model_id}, checkpoint digest {manifest.checkpoint['digest'][:16]}")
    click.echo(f"recipe      {recipe['name']}: backend {recipe['backend']}")
    for rule in recipe["rules"]:
        group = f" g{rule['group_size']}" if rule["group_size"] else ""
        click.echo(f"              {rule['kind']:9s} {rule['pattern']:28s} -> {rule['scheme']}{group}")
    click.echo(f"context     max_context {manifest.context['max_context']}, "
               f"max segment (get_max_seq_len) {manifest.context['max_seq_len']}")
    click.echo(f"stop ids    {manifest.front_end['stop_ids']}")
    click.echo("versions    " + ", ".join(f"{k} {v}" for k, v in manifest.versions.items()))
    click.echo()
    click.echo(_summary_table(manifest))


class _StageLog:
    """Prints each export stage with the time since the export started."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        click.echo(f"[{time.perf_counter() - self.start:7.1f} s] {message}", err=True)


def _summary_table(manifest) -> str:
    rows = [("method", "backend", "quantization", "bytes", "delegated", "export s")]
    for m in manifest.program.methods:
        rows.append((m.name, m.backend, m.quantization, "", f"{m.coverage_percent:.0f}% of {m.total_ops} ops",
                     f"{m.export_seconds:.1f}"))
    rows.append((manifest.program.file.file, manifest.program.backend, "", f"{manifest.program.file.bytes:,}", "", ""))
    rows.append((manifest.tokenizer.file, "", "", f"{manifest.tokenizer.bytes:,}", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


@cli.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--recipe", "-r", default="xnnpack-8da4w", show_default=True,
              help="A shipped recipe name (see export/*.yaml) or a path to a recipe YAML file.")
@click.option("--output", "-o", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The bundle directory to write (it appears only when the export is complete).")
@click.option("--max-context", type=int, default=None,
              help="Override the recipe: KV-cache length (prompt + answers of a whole conversation).")
@click.option("--max-seq-len", type=int, default=None,
              help="Override the recipe: the longest single segment (text run, or a 30 s clip's 752 tokens).")
@click.option("--overwrite", is_flag=True, help="Replace the output directory if it exists.")
@_friendly_errors
def export(checkpoint: Path, recipe: str, out: Path, max_context, max_seq_len, overwrite: bool):
    """Export CHECKPOINT into a bundle: one model.pte + tokenizer.json + manifest.json.

    \b
    The .pte has the methods ExecuTorch's stock MultimodalRunner (Android LlmModule, iOS
    MultimodalRunner) calls: token_embedding, text_decoder, vision_encoder, audio_encoder, plus
    audio_preprocessor (waveform -> log-mel) for apps, and the metadata constants.
    \b
    Shipped recipes:
      xnnpack-8da4w   phones and Linux boards (CPU): 4-bit decoder, 8-bit lm_head/embedding/encoders
      xnnpack-fp32    the float reference (large); for checking lowering against quantization
      vulkan-8da4w    Android GPUs (runs only on a device with a Vulkan ExecuTorch runtime)
      coreml-fp16     Apple devices via Core ML (runs only on iOS 18+/macOS 15+)
      coreml-4w       Core ML with 4-bit weights (iOS 18+)
    \b
    Example:
      megrez-mobile export Megrez-3B-Omni/ --recipe xnnpack-8da4w -o megrez-xnnpack-8da4w/
    """
    _quiet_export_warnings()
    from .export.pipeline import export_bundle
    from .export.recipe import Recipe

    chosen = Recipe.load(recipe).with_overrides(max_context=max_context, max_seq_len=max_seq_len)
    result = export_bundle(checkpoint, chosen, out, overwrite=overwrite, on_stage=_StageLog(),
                           on_weights=_Progress("reading weights"))
    click.echo(_summary_table(result.manifest))
    click.echo(f"wrote bundle {out} in {result.seconds:.1f} s", err=True)


def _quiet_export_warnings() -> None:
    """torch.export and ExecuTorch emit deprecation chatter meant for their own developers, not our users."""
    import logging
    import warnings

    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    logging.getLogger("torch").setLevel(logging.ERROR)


@cli.command()
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
@_friendly_errors
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
    _quiet_export_warnings()
    from .harness.validate import ValidationInputs, require_runnable, validate_bundle

    require_runnable(bundle)
    inputs = ValidationInputs(image=image, audio=audio, min_positions=positions)
    report = validate_bundle(bundle, reference, inputs, log=lambda m: click.echo(m, err=True))
    if not report.passed and not no_drilldown:
        from .harness.drilldown import drill_down

        for method in report.failed_methods:
            click.echo(f"drilling down into {method} (ETDump debug buffer + Inspector)", err=True)
            report.drilldown[method] = drill_down(bundle, reference, method, inputs)
    click.echo(report.table())
    for method, found in report.drilldown.items():
        click.echo(f"{method}: {found.get('summary', found)}")
    if json_out:
        report.write_json(json_out)
        click.echo(f"wrote {json_out}", err=True)
    sys.exit(0 if report.passed else 1)


@cli.command()
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
@_friendly_errors
def profile(bundle: Path, device_specs, devices_file, ssh_options, reps, warmup, threads, quick, no_per_op,
            json_out, html_out, baseline):
    """Measure BUNDLE on one or more devices, llama-bench style.

    \b
    Per device, in a fresh process on that device: load time; prefill tok/s at 128 and 512 tokens;
    decode tok/s over 128 tokens; time to first token for a text prompt, the sample image (448
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
    from .harness import report as reports
    from .harness.agent import agent_args
    from .harness.devices import load_devices_file, parse_device, profile_on_devices
    from .harness.profile import ProfileOptions

    devices = [parse_device(spec, ssh_options=ssh_options) for spec in device_specs]
    devices += load_devices_file(devices_file) if devices_file else []
    devices = devices or [parse_device("local")]
    overrides = dict(threads=threads, per_op=not no_per_op)
    options = (ProfileOptions.quick(**overrides) if quick else
               ProfileOptions(reps=reps, warmup=warmup, **overrides))
    results = profile_on_devices(devices, bundle, agent_args(options), log=lambda m: click.echo(m, err=True))
    run = reports.make_run(bundle, results, dataclasses.asdict(options))
    regressed = False
    if baseline:
        try:
            verdicts = reports.compare_runs(run, reports.load_run(baseline))
        except ValueError as e:
            raise click.ClickException(str(e)) from e
        run["comparison"] = reports.verdicts_to_json(verdicts)
        regressed = any(v.status == "regression" for v in verdicts)
    click.echo(reports.table(run))
    for entry in run["devices"]:
        if entry["result"] and entry["result"]["operators"]:
            click.echo("\n" + reports.operators_table(entry))
    if json_out:
        json_out.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
        click.echo(f"wrote {json_out}", err=True)
    if html_out:
        reports.write_html(run, html_out)
        click.echo(f"wrote {html_out}", err=True)
    failed = any(entry["error"] for entry in run["devices"])
    sys.exit(1 if failed or regressed else 0)


@cli.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the tiny checkpoint and bundle here (default: a temporary directory, removed afterwards).")
@click.option("--prompt", default="Describe the image, then transcribe the audio.", show_default=True)
@_friendly_errors
def demo(workdir: Path | None, prompt: str):
    """The main job on the embedded default: tiny checkpoint -> xnnpack-8da4w bundle -> chat through it.

    Uses the bundled sample image (720×1480 -> 1 source + 2×3 slices = 448 image tokens) and the
    1.5 s sample speech clip (m4a), and runs the exported model.pte with ExecuTorch. The weights are
    random, so the answer is noise: the demo shows that every stage runs and how fast.
    """
    assets = resources.files("megrez_mobile") / "assets"
    _quiet_export_warnings()
    with tempfile.TemporaryDirectory(prefix="megrez-demo-") as tmp:
        base = workdir or Path(tmp)
        checkpoint, bundle_dir = base / "megrez-tiny", base / "megrez-tiny-xnnpack-8da4w"
        if not (checkpoint / "config.json").is_file():
            from .checkpoint.synthetic import make_checkpoint

            click.echo(f"1/3 making a tiny random-weight checkpoint in {checkpoint}", err=True)
            make_checkpoint(checkpoint)
        if not (bundle_dir / "manifest.json").is_file():
            from .export.pipeline import export_bundle

            click.echo(f"2/3 exporting it with xnnpack-8da4w to {bundle_dir} (about 1-2 minutes)", err=True)
            result = export_bundle(checkpoint, "xnnpack-8da4w", bundle_dir, overwrite=True, on_stage=_StageLog())
            click.echo(_summary_table(result.manifest), err=True)
        session = _load_bundle(bundle_dir)
        with resources.as_file(assets / "sample_image.jpg") as image, \
                resources.as_file(assets / "sample_audio.m4a") as audio:
            inputs = session.processor.build_inputs(
                [{"role": "user", "content": {"text": prompt, "image": str(image), "audio": str(audio)}}])
            click.echo(f"3/3 chatting through the bundle: {inputs.describe()}, {len(inputs.image_slices)} image "
                       f"slices, {len(inputs.audio_mels)} audio clip(s)", err=True)
            click.echo(f"user: {prompt}  [+ sample_image.jpg, sample_audio.m4a]")
            click.echo("assistant: ", nl=False)
            _answer(session, inputs, max_new_tokens=32)
        click.echo("(random weights: the answer is noise. Every stage ran: checkpoint, export, bundle verification, "
                   "image slicing, log-mel, vision, audio and decoder programs, streaming.)", err=True)


def main() -> None:
    cli(prog_name="megrez-mobile")


if __name__ == "__main__":
    main()
