"""Talking to the model: `demo`, `make-tiny`, `run` and `chat`."""

from __future__ import annotations

import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import click

from ..errors import MegrezError
from ..untrusted import is_unicode_text
from .common import (DTYPES, Progress, StageLog, answer, friendly_errors, is_bundle, load_bundle, load_model,
                     quiet_library_warnings, sampling_options)
from .export_commands import summary_table


@click.command("make-tiny")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--full-size", is_flag=True,
              help="Official dims (4.0 B parameters, ~8 GB of bf16 shards) for benchmarks; default: tiny (~3 MB).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@friendly_errors
def make_tiny(out: Path, full_size: bool, seed: int, overwrite: bool):
    """Write a complete random-weight checkpoint to OUT in the official layout.

    config.json with the real field names, two bf16 safetensors shards + index, a byte-level BPE
    tokenizer.json (trained on English + Chinese, with every Megrez special token), tokenizer_config.json
    and preprocessor_config.json. It loads through exactly the same code as the real checkpoint.
    The directory appears only when complete.
    """
    from ..checkpoint.safetensors_io import check_destination
    from ..checkpoint.synthetic import FULL_SIZE, TINY, make_checkpoint

    check_destination(out, overwrite)
    spec = FULL_SIZE if full_size else TINY
    start = time.perf_counter()
    make_checkpoint(out, spec, seed=seed, overwrite=overwrite, progress=Progress(f"writing {spec.name} weights"))
    size = sum(f.stat().st_size for f in out.iterdir())
    click.echo(f"wrote {spec.name} checkpoint to {out} ({size / 1e6:,.1f} MB) in {time.perf_counter() - start:.1f} s")


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--prompt", "-p", required=True, help="The user's text.")
@click.option("--image", "-i", type=click.Path(exists=True, dir_okay=False), help="An image file (any Pillow format).")
@click.option("--audio", "-a", type=click.Path(exists=True, dir_okay=False),
              help="An audio file (wav, flac, ogg, mp3, m4a/aac). Over 30 s it is split into 30 s clips.")
@click.option("--system", default=None, help="System prompt (default: the Megrez default).")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="Weights in memory; the checkpoint is bf16 either way.")
@sampling_options
@friendly_errors
def run(checkpoint: Path, prompt: str, image, audio, system, dtype, **sampling):
    """Stream one answer from CHECKPOINT (eager PyTorch) or from a bundle (its model.pte via ExecuTorch).

    \b
    Example:
      megrez-mobile run Megrez-3B-Omni/ -p "What is in the picture?" -i photo.jpg
      megrez-mobile run Megrez-3B-Omni/ -p "Convert speech to text." -a memo.m4a
      megrez-mobile run megrez-xnnpack-8da4w/ -p "What is in the picture?" -i photo.jpg
    """
    from ..model.generation import SamplingConfig

    sampling_only = {k: v for k, v in sampling.items() if k != "max_new_tokens"}
    SamplingConfig(**sampling_only)  # refuse bad settings before minutes of loading
    model = load_bundle(checkpoint) if is_bundle(checkpoint) else load_model(checkpoint, dtype)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": {"text": prompt, "image": image, "audio": audio}}]
    inputs = model.processor.build_inputs(messages)
    click.echo(f"prompt: {inputs.describe()}", err=True)
    answer(model, inputs, **sampling)


def _stdin_keeps_bad_bytes() -> None:
    """Undecodable input bytes become lone surrogates (checked per line) instead of killing the whole chat."""
    reconfigure = getattr(sys.stdin, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="surrogateescape")


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--system", default=None, help="System prompt (default: the Megrez default).")
@sampling_options
@friendly_errors
def chat(bundle: Path, system, **sampling):
    """Interactive multi-turn chat with a BUNDLE; the KV cache is kept between turns.

    \b
    Type a message and press Enter. Attach media with a line prefix:
      /image photo.jpg  What is this?
      /audio memo.m4a   Transcribe this.
    /reset forgets the conversation; /quit (or Ctrl-D) leaves.
    """
    from ..model.generation import SamplingConfig

    max_new_tokens = sampling.pop("max_new_tokens")
    config = SamplingConfig(**sampling)
    session = load_bundle(bundle)
    history = [{"role": "system", "content": system}] if system else []
    _stdin_keeps_bad_bytes()
    line_number = 0
    while True:
        try:
            line = click.prompt("you", prompt_suffix="> ", default="", show_default=False).strip()
        except (EOFError, click.Abort):
            break
        line_number += 1
        if not is_unicode_text(line):
            click.echo(f"line {line_number} is not valid UTF-8 text (undecodable bytes); it was skipped. Set your "
                       "terminal or file to UTF-8 and type it again.", err=True)
            continue
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


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the tiny checkpoint and bundle here (default: a temporary directory, removed afterwards).")
@click.option("--prompt", default="Describe the image, then transcribe the audio.", show_default=True)
@friendly_errors
def demo(workdir: Path | None, prompt: str):
    """The main job on the embedded default: tiny checkpoint -> xnnpack-8da4w bundle -> chat through it.

    Uses the bundled sample image (720×1480 -> 1 source + 2×3 slices = 448 image tokens) and the
    1.5 s sample speech clip (m4a), and runs the exported model.pte with ExecuTorch. The weights are
    random, so the answer is noise: the demo shows that every stage runs and how fast.
    """
    assets = resources.files("megrez_mobile") / "assets"
    quiet_library_warnings()
    with tempfile.TemporaryDirectory(prefix="megrez-demo-") as tmp:
        base = workdir or Path(tmp)
        checkpoint, bundle_dir = base / "megrez-tiny", base / "megrez-tiny-xnnpack-8da4w"
        if not (checkpoint / "config.json").is_file():
            from ..checkpoint.synthetic import make_checkpoint

            click.echo(f"1/3 making a tiny random-weight checkpoint in {checkpoint}", err=True)
            make_checkpoint(checkpoint)
        if not (bundle_dir / "manifest.json").is_file():
            from ..export.pipeline import export_bundle

            click.echo(f"2/3 exporting it with xnnpack-8da4w to {bundle_dir} (about 1-2 minutes)", err=True)
            result = export_bundle(checkpoint, "xnnpack-8da4w", bundle_dir, overwrite=True, on_stage=StageLog())
            click.echo(summary_table(result.manifest), err=True)
        session = load_bundle(bundle_dir)
        with resources.as_file(assets / "sample_image.jpg") as image, \
                resources.as_file(assets / "sample_audio.m4a") as audio:
            inputs = session.processor.build_inputs(
                [{"role": "user", "content": {"text": prompt, "image": str(image), "audio": str(audio)}}])
            click.echo(f"3/3 chatting through the bundle: {inputs.describe()}, {len(inputs.image_slices)} image "
                       f"slices, {len(inputs.audio_mels)} audio clip(s)", err=True)
            click.echo(f"user: {prompt}  [+ sample_image.jpg, sample_audio.m4a]")
            click.echo("assistant: ", nl=False)
            answer(session, inputs, max_new_tokens=32)
        click.echo("(random weights: the answer is noise. Every stage ran: checkpoint, export, bundle verification, "
                   "image slicing, log-mel, vision, audio and decoder programs, streaming.)", err=True)
