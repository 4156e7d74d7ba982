"""`megrez-mobile`: the command line, one module per part of the flow.

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

import click

from .chat_commands import chat, demo, make_tiny, run
from .export_commands import export, inspect
from .harness_commands import profile, validate


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


for command in (demo, make_tiny, export, inspect, run, chat, validate, profile):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="megrez-mobile")


if __name__ == "__main__":
    main()
