"""Where inside a failing method the bundle's numbers first go wrong, with ExecuTorch's Inspector.

The method is exported again from the reference checkpoint exactly as the bundle's was, with an ETRecord
(same graph, same debug handles). The bundle's program runs the same inputs with ETDump's debug buffer on,
so every operator's (or delegate's) output is recorded; the Inspector lines the two up and gives the SNR of
each operator's output against the reference graph's. The first operator whose SNR falls below the recipe's
encoder threshold, or else the one with the largest drop, is where the error jumps.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..bundle import read_manifest
from ..export.recipe import Recipe

DEBUG_BUFFER_BYTES = 256 << 20
STATELESS_METHODS = ("token_embedding", "audio_preprocessor", "vision_encoder", "audio_encoder")


def method_inputs(method: str, reference: Path, inputs) -> tuple[torch.Tensor, ...]:
    """The same fixed inputs validate uses, for one method."""
    from ..processing.audio import load_audio
    from ..processing.processor import MegrezProcessor
    from .validate import _media

    processor = MegrezProcessor.from_pretrained(reference)
    image, audio = _media(inputs)
    if method == "audio_preprocessor":
        return (torch.from_numpy(load_audio(audio, processor.config.audio)).float().contiguous(),)
    if method == "token_embedding":
        ids = processor.build_inputs([{"role": "user", "content": "Describe the image."}]).input_ids
        return (ids,)
    built = processor.build_inputs([{"role": "user", "content": {"image": image, "audio": audio, "text": "hi"}}])
    if method == "vision_encoder":
        return (built.image_slices[0].unsqueeze(0).contiguous(),)
    if method == "audio_encoder":
        return (built.audio_mels[0].unsqueeze(0).float().contiguous(),)
    raise ValueError(f"no drill-down inputs for method {method!r}")


def drill_down(bundle_dir: str | Path, reference: str | Path, method: str, inputs) -> dict[str, Any]:
    from executorch.devtools import Inspector
    from executorch.extension.pybindings.portable_lib import _load_for_executorch

    from ..export.pipeline import export_method_for_debugging
    from ..runtime.session import load_runtime_kernels

    if method not in STATELESS_METHODS:
        return {"summary": "no operator drill-down for text_decoder: its intermediate outputs depend on the KV cache "
                           "that earlier calls filled, which the Inspector's one-shot reference run cannot replay. "
                           "Validate an xnnpack-fp32 export of the same checkpoint: if it passes, quantization is "
                           "the cause; if not, lowering is."}
    bundle_dir, reference = Path(bundle_dir), Path(reference)
    manifest = read_manifest(bundle_dir)
    recipe = Recipe.from_dict(manifest.recipe, f"{bundle_dir}/manifest.json")
    args = method_inputs(method, reference, inputs)
    try:
        debug_program = export_method_for_debugging(reference, recipe, method)
        etrecord = debug_program.get_etrecord()
        etrecord.update_representative_inputs([args])
        load_runtime_kernels()
        module = _load_for_executorch(str(manifest.path_of(bundle_dir, manifest.program.file)), enable_etdump=True,
                                      debug_buffer_size=DEBUG_BUFFER_BYTES)
        module.run_method(method, args)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            module.write_etdump_result_to_file(str(tmp / "run.etdump"), str(tmp / "debug.bin"))
            etrecord.save(str(tmp / "etrecord.bin"))
            inspector = Inspector(etdump_path=str(tmp / "run.etdump"), etrecord=str(tmp / "etrecord.bin"),
                                  debug_buffer_path=str(tmp / "debug.bin"))
            frame = inspector.calculate_numeric_gap(_snr_of_matching_shapes())
    except Exception as e:  # noqa: BLE001 - the drill-down is a diagnosis aid; its failure must not hide the report
        return {"error": f"{type(e).__name__}: {e}", "summary": f"drill-down failed ({type(e).__name__}: {e})"}
    return first_jump(frame, recipe.fidelity.encoder_min_snr_db)


def _snr_of_matching_shapes():
    """ExecuTorch's SNR comparator, except that a pair of tensors of different shapes gives NaN instead of raising.

    The Inspector pairs each delegate output with a reference node by debug handle; a delegate that groups many
    operators (the speech encoder's layers) can be paired with an unrelated tensor, and one bad pair would
    otherwise abort the whole comparison. first_jump skips the NaN rows.
    """
    from executorch.devtools.inspector.numerical_comparator.snr_numerical_comparator import SNRComparator

    class SNROfMatchingShapes(SNRComparator):
        def element_compare(self, a: Any, b: Any) -> float:
            if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape != b.shape:
                return math.nan
            return super().element_compare(a, b)

    return SNROfMatchingShapes()


def first_jump(frame, min_snr_db: float) -> dict[str, Any]:
    """The first operator below the SNR threshold, else the largest SNR drop between consecutive operators."""
    ops = []
    for _, row in frame.iterrows():
        gaps = [float(g) for g in (row["gap"] if isinstance(row["gap"], (list, tuple)) else [row["gap"]])]
        if gaps and all(math.isnan(g) for g in gaps):
            continue  # paired with a tensor of another shape (_snr_of_matching_shapes): nothing to compare
        snr = min((g for g in gaps if not math.isnan(g)), default=math.inf)
        names = [str(o) for o in row["aot_ops"]]
        if any(name.startswith("sym_size") for name in names):
            continue  # a shape computation grouped with a tensor op: the Inspector compares an int with a tensor
        if ops and ops[-1]["operators"] == names:
            # One fused group recorded with several outputs (a layer norm written as mean/sub/mul): only one of
            # them is the group's result, and the Inspector pairs the others with unrelated reference tensors.
            ops[-1]["snr_db"] = max(ops[-1]["snr_db"], snr)
            continue
        ops.append({"operators": names, "snr_db": snr})
    if not ops:
        return {"summary": "the Inspector matched no operators between the bundle and the reference", "ops": []}
    below = next((i for i, o in enumerate(ops) if o["snr_db"] < min_snr_db), None)
    if below is None:
        finite = [o["snr_db"] if math.isfinite(o["snr_db"]) else 300.0 for o in ops]
        drops = [finite[i - 1] - finite[i] for i in range(1, len(finite))]
        below = 1 + max(range(len(drops)), key=drops.__getitem__) if drops else 0
    op = ops[below]
    before = ops[below - 1]["snr_db"] if below else math.inf
    return {"index": below, "operators": op["operators"], "snr_db": op["snr_db"], "snr_db_before": before,
            "summary": (f"the error jumps at operator #{below} ({', '.join(op['operators'][:4])}): SNR "
                        f"{before:.1f} dB before, {op['snr_db']:.1f} dB after (threshold {min_snr_db:g} dB)"),
            "ops": ops}
