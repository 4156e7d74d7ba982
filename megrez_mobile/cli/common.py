"""What every command shares: typed errors without tracebacks, progress, output files that are checked before the
work and never lost after it, the sampling options, and loading a model or a bundle."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import click

from ..errors import MegrezError, OutputPathError

DTYPES = ("float32", "bfloat16")


def friendly_errors(fn):
    """Our typed errors already say what went wrong and what to do: print them without a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MegrezError as e:
            raise click.ClickException(f"{type(e).__name__}: {e}") from e
    return wrapper


class Progress:
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


class StageLog:
    """Prints each stage of a long job with the time since it started."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        click.echo(f"[{time.perf_counter() - self.start:7.1f} s] {message}", err=True)


def quiet_library_warnings() -> None:
    """torch.export and ExecuTorch emit deprecation chatter meant for their own developers, not our users."""
    import logging
    import warnings

    from ..logs import quiet_library_logs

    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    logging.getLogger("torch").setLevel(logging.ERROR)
    quiet_library_logs()


# --- output files ------------------------------------------------------------------------------------------------

def check_output_file(path: Path | None, option: str) -> None:
    """Refuse, before minutes of work, an output file that could not be written (its folder missing, say)."""
    if path is None:
        return
    folder = path.absolute().parent
    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a directory; give a file name, e.g. {path / 'report'}")
    if not folder.is_dir():
        raise OutputPathError(f"{option} {path}: the folder {folder} does not exist; create it first "
                              f"(mkdir -p {folder}) or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} {path}: no permission to write in {folder}; choose another path")


def save_output(path: Path, text: str, what: str) -> None:
    """Write `text` atomically (a reader never sees half a file); if that fails after all, keep the finished work in
    a temporary file instead of losing it, and say where."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
        click.echo(f"wrote {what} to {path}", err=True)
    except OSError as e:
        partial.unlink(missing_ok=True)
        fd, rescue = tempfile.mkstemp(prefix="megrez-mobile-", suffix=path.suffix or ".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        raise OutputPathError(f"could not write {what} to {path} ({e.strerror or e}); it was saved to {rescue} "
                              "instead") from None


# --- sampling, models, bundles -------------------------------------------------------------------------------------

def sampling_options(fn):
    options = [
        click.option("--max-new-tokens", type=click.IntRange(min=1), default=100, show_default=True,
                     help="Upper bound on the answer length."),
        click.option("--sampling/--greedy", default=False, show_default=True,
                     help="Sample (temperature/top-p/top-k) instead of greedy decoding."),
        click.option("--temperature", type=click.FloatRange(min=0.0), default=0.7, show_default=True,
                     help="With --sampling; 0 = greedy."),
        click.option("--top-p", type=click.FloatRange(min=0.0, max=1.0, min_open=True), default=0.8,
                     show_default=True, help="With --sampling: keep the most likely tokens up to this mass."),
        click.option("--top-k", type=click.IntRange(min=0), default=100, show_default=True,
                     help="With --sampling: keep this many most likely tokens (0 = all)."),
        click.option("--repetition-penalty", type=click.FloatRange(min=0.0, min_open=True), default=1.0,
                     show_default=True, help="1.0 = off; the official demo uses 1.2."),
        click.option("--seed", type=int, default=None, help="Makes --sampling reproducible."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def load_model(checkpoint: Path, dtype: str):
    import torch

    from ..model.omni import MegrezOmni

    start = time.perf_counter()
    model = MegrezOmni.from_pretrained(checkpoint, dtype=getattr(torch, dtype), progress=Progress("loading weights"))
    click.echo(f"loaded {checkpoint} in {time.perf_counter() - start:.1f} s", err=True)
    return model


def is_bundle(path: Path) -> bool:
    return (path / "manifest.json").is_file()


def load_bundle(path: Path):
    from ..runtime.session import Bundle

    start = time.perf_counter()
    bundle = Bundle.load(path)
    click.echo(f"loaded bundle {path} ({bundle.manifest.recipe['name']}) in {time.perf_counter() - start:.1f} s",
               err=True)
    return bundle


def answer(model, inputs, max_new_tokens: int, **sampling):
    """Stream one answer to stdout; the statistics go to stderr."""
    from ..model.generation import SamplingConfig

    result = model.generate_from_inputs(inputs, max_new_tokens, SamplingConfig(**sampling),
                                        stream=lambda piece: click.echo(piece, nl=False))
    click.echo()
    click.echo(f"[{result.prompt_tokens} prompt tokens, prefill incl. encoders "
               f"{result.prefill_tokens_per_second:.1f} tok/s; "
               f"{len(result.token_ids)} new tokens, decode {result.decode_tokens_per_second:.1f} tok/s; "
               f"stopped: {result.stop_reason}]", err=True)
    return result
