"""Making and reading bundles: `export` and `inspect`."""

from __future__ import annotations

from pathlib import Path

import click

from .common import Progress, StageLog, friendly_errors, quiet_library_warnings


def summary_table(manifest) -> str:
    rows = [("method", "backend", "quantization", "bytes", "delegated", "export s")]
    for m in manifest.program.methods:
        rows.append((m.name, m.backend, m.quantization, "", f"{m.coverage_percent:.0f}% of {m.total_ops} ops",
                     f"{m.export_seconds:.1f}"))
    rows.append((manifest.program.file.file, manifest.program.backend, "", f"{manifest.program.file.bytes:,}", "", ""))
    rows.append((manifest.tokenizer.file, "", "", f"{manifest.tokenizer.bytes:,}", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def _kv_cache_line(manifest, bundle: Path) -> str:
    """The cache's element type (from the manifest) and the bytes the program plans for it (from its header)."""
    from ..harness.memory import kv_cache_bytes, planned_memory

    dtype = manifest.kv_cache_dtype
    what = "int8 rows, a float32 scale and an int8 zero point per row" if dtype == "int8" else "float32"
    planned = kv_cache_bytes(planned_memory(manifest.path_of(bundle, manifest.program.file)))
    return f"{dtype} ({what}), {planned:,} bytes planned"


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--no-checksums", is_flag=True, help="Check file sizes only (skip sha256 of the .pte).")
@friendly_errors
def inspect(bundle: Path, no_checksums: bool):
    """Print a BUNDLE's manifest: recipe, methods with delegation coverage, sizes, context, versions.

    Verifies every file's size and sha256 against the manifest first.
    """
    from ..bundle import read_manifest, verify_files

    manifest = read_manifest(bundle)
    verify_files(bundle, manifest, checksums=not no_checksums)
    recipe = manifest.recipe
    verified = "sizes checked, checksums NOT checked" if no_checksums else "files verified"
    click.echo(f"bundle      {bundle}  (schema {manifest.schema_version}, {verified})")
    click.echo(f"model       {manifest.model_id}, checkpoint digest {str(manifest.checkpoint.get('digest'))[:16]}")
    click.echo(f"recipe      {recipe['name']}: backend {recipe['backend']}")
    for rule in recipe["rules"]:
        group = f" g{rule['group_size']}" if rule["group_size"] else ""
        click.echo(f"              {rule['kind']:9s} {rule['pattern']:28s} -> {rule['scheme']}{group}")
    click.echo(f"context     max_context {manifest.context['max_context']}, "
               f"max segment (get_max_seq_len) {manifest.context['max_seq_len']}")
    click.echo(f"kv cache    {_kv_cache_line(manifest, bundle)}")
    click.echo(f"stop ids    {manifest.front_end['stop_ids']}")
    click.echo("versions    " + ", ".join(f"{k} {v}" for k, v in manifest.versions.items()))
    click.echo()
    click.echo(summary_table(manifest))


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--recipe", "-r", default="xnnpack-8da4w", show_default=True,
              help="A shipped recipe name (see export/*.yaml) or a path to a recipe YAML file.")
@click.option("--output", "-o", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The bundle directory to write (it appears only when the export is complete).")
@click.option("--max-context", type=int, default=None,
              help="Override the recipe: KV-cache length (prompt + answers of a whole conversation).")
@click.option("--max-seq-len", type=int, default=None,
              help="Override the recipe: the longest single segment (text run, or a 30 s clip's 752 tokens).")
@click.option("--kv-cache-dtype", default=None, metavar="fp32|int8",
              help="Override the recipe: the KV cache's element type; int8 stores about a quarter of the bytes.")
@click.option("--overwrite", is_flag=True, help="Replace the output directory if it exists.")
@friendly_errors
def export(checkpoint: Path, recipe: str, out: Path, max_context, max_seq_len, kv_cache_dtype, overwrite: bool):
    """Export CHECKPOINT into a bundle: one model.pte + tokenizer.json + manifest.json.

    \b
    The .pte has the methods ExecuTorch's stock MultimodalRunner (Android LlmModule, iOS
    MultimodalRunner) calls: token_embedding, text_decoder, vision_encoder, audio_encoder, plus
    audio_preprocessor (waveform -> log-mel) for apps, and the metadata constants.
    \b
    Shipped recipes:
      xnnpack-8da4w      phones and Linux boards (CPU): 4-bit decoder, 8-bit lm_head/embedding/encoders
      xnnpack-8da4w-kv8  the same with an int8 KV cache (about a quarter of the cache's memory)
      xnnpack-fp32       the float reference (large); for checking lowering against quantization
      vulkan-8da4w       Android GPUs (runs only on a device with a Vulkan ExecuTorch runtime)
      coreml-fp16        Apple devices via Core ML (runs only on iOS 18+/macOS 15+)
      coreml-4w          Core ML with 4-bit weights (iOS 18+)
      coreml-encoders    both encoders on Core ML fp16, decoder on XNNPACK 8da4w, one model.pte
    \b
    Example:
      megrez-mobile export Megrez-3B-Omni/ --recipe xnnpack-8da4w -o megrez-xnnpack-8da4w/
    """
    from ..checkpoint.safetensors_io import check_destination
    from ..export.recipe import Recipe

    check_destination(out, overwrite)
    chosen = Recipe.load(recipe).with_overrides(max_context=max_context, max_seq_len=max_seq_len,
                                                kv_cache_dtype=kv_cache_dtype)
    quiet_library_warnings()
    from ..export.pipeline import export_bundle

    result = export_bundle(checkpoint, chosen, out, overwrite=overwrite, on_stage=StageLog(),
                           on_weights=Progress("reading weights"))
    click.echo(summary_table(result.manifest))
    click.echo(f"wrote bundle {out} in {result.seconds:.1f} s", err=True)
