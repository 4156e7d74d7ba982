"""`megrez-mobile validate BUNDLE --reference CKPT`: is this bundle still the model in the checkpoint?

Every method of the program is run on fixed, deterministic inputs and compared with the eager fp32 model
loaded from the reference checkpoint through the same loading code. Each method gets the *reference's*
inputs (the decoder is fed the eager model's embeddings), so a failure points at the method that broke, not
at everything downstream of it. Thresholds come from the recipe the bundle was made with (its `fidelity`).
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoint.safetensors_io import CheckpointIndex
from ..errors import BundleError
from ..export.recipe import Fidelity, Recipe
from .metrics import greedy_match_length, logits_gap, tensor_gap

if TYPE_CHECKING:
    from ..config import AudioProcessingConfig

SCHEMA = "megrez-mobile/validate/1"
LogFn = Callable[[str], None]


@dataclass(frozen=True)
class ValidationInputs:
    """The fixed inputs. Defaults: the sample image and audio shipped with the SDK and its English/Chinese corpus."""

    image: Path | None = None
    audio: Path | None = None
    min_positions: int = 500       # teacher-forced decoder positions, at least
    greedy_tokens: int = 32        # generated end to end for the greedy-match check
    max_image_slices: int | None = None  # None: every slice of the image

    def prompts(self) -> list[tuple[str, str]]:
        """(question, answer) pairs from the corpus: consecutive lines, cycled as often as needed."""
        lines = [ln.strip() for ln in (resources.files("megrez_mobile") / "checkpoint" / "corpus.txt")
                 .read_text(encoding="utf-8").splitlines() if ln.strip()]
        return [(lines[i], lines[(i + 1) % len(lines)]) for i in range(len(lines))]


@dataclass(frozen=True)
class Check:
    method: str
    metric: str
    value: float
    threshold: float
    comparison: str  # ">=" or "<="

    @property
    def passed(self) -> bool:
        compare = operator.ge if self.comparison == ">=" else operator.le
        return bool(compare(self.value, self.threshold))


@dataclass
class ValidationReport:
    bundle: str
    reference: str
    recipe: str
    thresholds: dict[str, float]
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> metric -> value
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    drilldown: dict[str, Any] = field(default_factory=dict)  # method -> where its error jumps (see drilldown.py)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed_methods(self) -> list[str]:
        return list(dict.fromkeys(c.method for c in self.checks if not c.passed))

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "passed": self.passed, "failed_methods": self.failed_methods,
                "bundle": self.bundle, "reference": self.reference, "recipe": self.recipe,
                "thresholds": self.thresholds, "metrics": self.metrics,
                "checks": [{**asdict(c), "passed": c.passed} for c in self.checks],
                "warnings": self.warnings, "drilldown": self.drilldown}

    def to_json(self) -> str:
        # Strict JSON (apps and CI parse it): an identical output's SNR is infinite, written as the string "inf".
        return json.dumps(_finite(self.to_dict()), indent=2, allow_nan=False) + "\n"

    def table(self) -> str:
        rows = [("method", "metric", "value", "threshold", "")]
        for c in self.checks:
            rows.append((c.method, c.metric, _fmt(c.value), f"{c.comparison} {_fmt(c.threshold)}",
                         "ok" if c.passed else "FAIL"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        verdict = ("PASSED: the bundle matches the reference within the recipe's thresholds" if self.passed else
                   f"FAILED: {', '.join(self.failed_methods)} outside the recipe's thresholds")
        return "\n".join(lines + [""] + [f"warning: {w}" for w in self.warnings] + [verdict])


def _fmt(x: float) -> str:
    if isinstance(x, int) or float(x).is_integer() and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def fidelity_of(manifest) -> tuple[str, Fidelity]:
    """The thresholds of the recipe the bundle was made with (recorded in its manifest)."""
    recipe = manifest.recipe
    if "fidelity" in recipe:
        return recipe["name"], Fidelity(**recipe["fidelity"])
    # Bundles from before fidelity was recorded: the shipped recipe of the same name, else the defaults.
    try:
        return recipe["name"], Recipe.load(recipe["name"]).fidelity
    except Exception:  # noqa: BLE001 - a custom recipe that is not shipped
        return recipe["name"], Fidelity()


def validate_bundle(bundle_dir: str | Path, reference: str | Path, inputs: ValidationInputs = ValidationInputs(),
                    log: LogFn = lambda _: None) -> ValidationReport:
    from ..export.pipeline import checkpoint_digest
    from ..model.omni import MegrezOmni
    from ..runtime.session import Bundle

    bundle_dir, reference = Path(bundle_dir), Path(reference)
    log(f"loading bundle {bundle_dir}")
    bundle = Bundle.load(bundle_dir)
    name, fidelity = fidelity_of(bundle.manifest)
    report = ValidationReport(str(bundle_dir), str(reference), name, asdict(fidelity))
    if bundle.manifest.checkpoint.get("digest") != checkpoint_digest(reference, CheckpointIndex.read(reference)):
        report.warnings.append(f"the bundle was exported from a different checkpoint "
                               f"({bundle.manifest.checkpoint.get('path')}) than {reference}")
    log(f"loading reference {reference} (eager, float32)")
    model = MegrezOmni.from_pretrained(reference, dtype=torch.float32).eval()
    with torch.inference_mode():
        _validate_methods(bundle, model, inputs, fidelity, report, log)
    return report


def sample_media() -> tuple[str, str]:
    """The sample image and speech clip shipped with the SDK (the same files as the demo's)."""
    assets = resources.files("megrez_mobile") / "assets"
    return str(assets / "sample_image.jpg"), str(assets / "sample_audio.m4a")


def sample_speech(seconds: float, config: "AudioProcessingConfig"):
    """`seconds` of the sample speech at the front end's rate (the clip repeated), float32: the benchmarks' audio."""
    import numpy as np

    from ..processing.audio import load_audio

    wave = load_audio(sample_media()[1], config)
    return np.resize(wave, int(seconds * config.sampling_rate)).astype(np.float32)


def _media(inputs: ValidationInputs) -> tuple[str, str]:
    image, audio = sample_media()
    return str(inputs.image or image), str(inputs.audio or audio)


def _validate_methods(bundle, model, inputs: ValidationInputs, fidelity: Fidelity, report: ValidationReport,
                      log: LogFn) -> None:
    from ..processing.audio import load_audio

    processor = model.processor
    image, audio = _media(inputs)
    media_message = [{"role": "user", "content": {"image": image, "audio": audio,
                                                  "text": "Describe the image, then transcribe the audio."}}]
    media_inputs = processor.build_inputs(media_message)

    def encoder(method: str, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
        gaps = [tensor_gap(got, want) for got, want in pairs]
        report.metrics[method] = {"max_abs": max(g.max_abs for g in gaps), "cosine": min(g.cosine for g in gaps),
                                  "snr_db": min(g.snr_db for g in gaps), "samples": len(gaps)}
        report.checks += [Check(method, "cosine", report.metrics[method]["cosine"], fidelity.encoder_min_cosine, ">="),
                          Check(method, "snr_db", report.metrics[method]["snr_db"], fidelity.encoder_min_snr_db, ">=")]

    # token_embedding: every id of the teacher-forced set.
    sequences = _teacher_forced_sequences(processor, inputs)
    ids = torch.cat(sequences, dim=1)
    log(f"token_embedding: {ids.shape[1]} ids")
    encoder("token_embedding", [(bundle.embed_tokens(ids[0].tolist())[0], model.embed_tokens(ids)[0])])

    log("audio_preprocessor: the sample audio")
    wave = torch.from_numpy(load_audio(audio, processor.config.audio)).float()
    encoder("audio_preprocessor", [(bundle.run("audio_preprocessor", wave.contiguous())[0], processor.log_mel(wave))])

    slices = media_inputs.image_slices[:inputs.max_image_slices]
    log(f"vision_encoder: {len(slices)} slices of the sample image")
    encoder("vision_encoder", [(bundle.encode_image_slice(s)[0], model.encode_image_slice(s)) for s in slices])

    log("audio_encoder: the sample audio")
    encoder("audio_encoder", [(bundle.encode_audio(m)[0], model.encode_audio(m)) for m in media_inputs.audio_mels])

    # text_decoder, teacher-forced on the reference's embeddings: the text prompts and the media prompt.
    embeddings = [model.embed_tokens(s) for s in sequences] + [model.compose_embeddings(media_inputs)]
    total = sum(e.shape[1] for e in embeddings)
    log(f"text_decoder: {total} teacher-forced positions over {len(embeddings)} prompts (scored where the next "
        "token is text)")
    got, want = [], []
    for e, scored in zip(embeddings, [None] * len(sequences) + [_predicts_text(media_inputs)]):
        bundle.reset()
        positions = range(e.shape[1]) if scored is None else scored
        logits = {i: bundle.decode(e[:, i:i + 1].contiguous(), i).clone() for i in range(e.shape[1])}
        got += [logits[i] for i in positions]
        want.append(model.logits_from_embeddings(e)[0, list(positions)])
    gap = logits_gap(torch.stack(got), torch.cat(want))
    log(f"text_decoder: greedy continuation of {inputs.greedy_tokens} tokens, bundle and reference")
    bundle.reset()
    ours = bundle.generate_from_inputs(media_inputs, inputs.greedy_tokens).token_ids
    theirs = model.generate_from_inputs(media_inputs, inputs.greedy_tokens).token_ids
    match = greedy_match_length(ours, theirs)
    report.metrics["text_decoder"] = {**gap.to_dict(), "greedy_match": match, "greedy_tokens": len(theirs)}
    report.checks += [
        Check("text_decoder", "top1_agreement", gap.top1_agreement, fidelity.decoder_min_top1, ">="),
        Check("text_decoder", "mean_kl", gap.mean_kl, fidelity.decoder_max_kl, "<="),
        # A continuation that both stop early at the same place is a full match.
        Check("text_decoder", "greedy_match", match, min(fidelity.decoder_min_greedy_match, len(theirs)), ">="),
    ]


def _predicts_text(inputs) -> list[int]:
    """Positions whose next position is a text token. Inside an image or audio run the next "token" is an
    encoder embedding: nothing is ever sampled there and the model was never trained to predict it, so its
    argmax is a coin toss between near-ties and says nothing about the bundle."""
    media = set()
    for start, end in inputs.image_bounds.tolist():
        media.update(range(start, end))
    for start, end in inputs.audio_bounds.tolist():
        media.update(range(start + 1, end))
    return [p for p in range(inputs.num_tokens) if p + 1 not in media]


def _teacher_forced_sequences(processor, inputs: ValidationInputs) -> list[torch.Tensor]:
    """Chat-formatted question + answer pairs until at least `min_positions` text positions (media come on top)."""
    sequences, total = [], 0
    for question, answer in inputs.prompts() * 1000:
        if total >= inputs.min_positions:
            break
        ids = processor.build_inputs([{"role": "user", "content": question},
                                      {"role": "assistant", "content": answer}], add_generation_prompt=False).input_ids
        sequences.append(ids)
        total += ids.shape[1]
    return sequences


def require_runnable(bundle_dir: Path) -> None:
    """Vulkan/Core ML programs cannot run in the Python wheel: say so before loading a 16 GB reference."""
    from ..bundle import read_manifest

    missing = [b for b in read_manifest(bundle_dir).backends if b not in ("xnnpack", "portable")]
    if missing:
        backend = " and ".join(missing)
        raise BundleError(f"{bundle_dir} has methods on {backend}; this host's ExecuTorch runtime has XNNPACK and the "
                          "portable kernels only. Validate the same checkpoint exported with an xnnpack recipe here, "
                          f"and run the {backend} bundle on a device with the demo apps.")
