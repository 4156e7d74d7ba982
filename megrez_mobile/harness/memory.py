"""Where a bundle's memory goes, and whether a whole chat fits the phone budget.

    python -m megrez_mobile.harness.memory BUNDLE --runner bundle|stock [--audio-seconds 30] [--json OUT]

The budget of a chat (image + audio + text, then a text turn) is

    peak RSS <= model.pte bytes + KV-cache bytes + 400 MiB

(the weights once, the cache the program declares, and a fixed allowance for activations, preprocessing and
the runtime's own allocations), counted above the process' resident memory once the runtime libraries are
loaded (the interpreter and the libraries are the app's cost, not the bundle's; both figures are reported).
Each run happens in a fresh process, so its peak is that of an app that holds one bundle;
`measure_memory` starts it and reads back the JSON. Every step records the process' resident memory split into
anonymous pages (malloc'd: arenas, packed weights, anything copied) and file pages (the mapped .pte), so a
second copy of the weights shows up as anonymous memory the size of the weights.

`planned_memory` reads each method's planned arenas from the program header (no weights are read): mem_id 1 is
activation memory, mem_id 2 the KV cache (its own id, shared by the methods that use it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import AudioProcessingConfig

from ..export.memory_plan import KV_MEM_ID

MIB = 1 << 20
ALLOWANCE_BYTES = 400 * MIB


@dataclass(frozen=True)
class ProcessMemory:
    """This process' memory from /proc/self/status, in bytes (Linux and Android)."""

    rss: int
    peak_rss: int  # VmHWM
    anon: int
    file: int

    @classmethod
    def now(cls) -> "ProcessMemory":
        fields = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) * 1024
        return cls(fields["VmRSS"], fields["VmHWM"], fields["RssAnon"], fields["RssFile"])

    def to_dict(self) -> dict[str, float]:
        return {"rss_mib": self.rss / MIB, "peak_rss_mib": self.peak_rss / MIB, "anon_mib": self.anon / MIB,
                "file_mib": self.file / MIB}


def planned_memory(pte: str | Path) -> dict[str, list[int]]:
    """{method: [bytes of each planned buffer by mem_id]} from the program flatbuffer alone (the .pte's extended
    header says where it ends; the weights after it are not read)."""
    from executorch.exir._serialize._flatbuffer_program import _flatbuffer_to_program
    from executorch.exir._serialize._program import _ExtendedHeader, _get_extended_header

    with open(pte, "rb") as f:
        header = _get_extended_header(f.read(_ExtendedHeader.NUM_HEAD_BYTES))
        f.seek(0)
        program = _flatbuffer_to_program(f.read(header.program_size) if header and header.is_valid() else f.read())
    return {plan.name: list(plan.non_const_buffer_sizes) for plan in program.execution_plan}


def kv_cache_bytes(planned: dict[str, list[int]]) -> int:
    """The KV cache's planned bytes (mem_id 2: one allocation the decoder keeps between calls)."""
    sizes = planned.get("text_decoder", [])
    return sizes[KV_MEM_ID] if len(sizes) > KV_MEM_ID else 0


def budget_bytes(bundle_dir: Path) -> tuple[dict[str, int], dict[str, list[int]]]:
    """The budget's terms, and the planned arenas they were read from."""
    from ..bundle import read_manifest

    manifest = read_manifest(bundle_dir)
    planned = planned_memory(manifest.path_of(bundle_dir, manifest.program.file))
    kv = kv_cache_bytes(planned)
    return ({"pte": manifest.program.file.bytes, "kv_cache": kv, "allowance": ALLOWANCE_BYTES,
             "budget": manifest.program.file.bytes + kv + ALLOWANCE_BYTES}, planned)


class Timeline:
    """Memory after each named step of a run."""

    def __init__(self):
        self.steps: list[dict[str, Any]] = []
        self._start = time.perf_counter()

    def mark(self, step: str) -> None:
        self.steps.append({"step": step, "t_s": round(time.perf_counter() - self._start, 3),
                           **ProcessMemory.now().to_dict()})


def chat_messages(audio_seconds: float, config: "AudioProcessingConfig") -> list[list[dict[str, Any]]]:
    """The measured conversation: the sample image + `audio_seconds` of the sample speech + text, then text."""
    from .validate import sample_media, sample_speech

    image, clip = sample_media()[0], sample_speech(audio_seconds, config)
    return [[{"role": "user", "content": {"image": image, "audio": clip,
                                          "text": "Describe the image, then transcribe the audio."}}],
            [{"role": "user", "content": {"text": "Now say it in one sentence."}}]]


def run_bundle(bundle_dir: Path, turns: list[list[dict[str, Any]]], max_new_tokens: int, timeline: Timeline) -> None:
    """Through the SDK: `Bundle.load` (mmap), then the two turns (methods load on first use)."""
    from ..runtime.session import Bundle

    bundle = Bundle.load(bundle_dir)
    timeline.mark("program loaded")
    conversation: list[dict[str, Any]] = []
    for i, turn in enumerate(turns):
        conversation += turn
        answer = bundle.chat(conversation, max_new_tokens=max_new_tokens)
        conversation.append({"role": "assistant", "content": {"text": answer}})
        timeline.mark(f"turn {i + 1} answered")


def run_stock(bundle_dir: Path, turns: list[list[dict[str, Any]]], max_new_tokens: int, timeline: Timeline) -> None:
    """Through ExecuTorch's stock MultimodalRunner (what the apps run), fed our runner plan."""
    from ..bundle import read_manifest
    from ..processing.plan import Continuation, added_token_strings, runner_plan
    from ..runtime.session import bundle_processor, load_runtime_kernels, stock_inputs
    from executorch.extension.llm.runner import GenerationConfig, MultimodalRunner

    manifest = read_manifest(bundle_dir)
    processor = bundle_processor(bundle_dir, manifest)
    tokenizer = manifest.path_of(bundle_dir, manifest.tokenizer)
    load_runtime_kernels()
    runner = MultimodalRunner(str(manifest.path_of(bundle_dir, manifest.program.file)), str(tokenizer))
    timeline.mark("program loaded")
    added = added_token_strings(tokenizer)
    config = GenerationConfig(echo=False, max_new_tokens=max_new_tokens, temperature=0.0)
    continuation = None
    for i, turn in enumerate(turns):
        plan = runner_plan(processor, turn, added, continuation=continuation)
        inputs = stock_inputs(plan, processor)
        runner.generate(inputs, config, None, None)
        continuation = Continuation(images_before=len(plan.images), audio_before=len(plan.audio))
        timeline.mark(f"turn {i + 1} answered")


RUNNERS: dict[str, Callable[[Path, list[list[dict[str, Any]]], int, Timeline], None]] = {"bundle": run_bundle, "stock": run_stock}


def probe(bundle_dir: Path, runner: str, audio_seconds: float = 30.0, max_new_tokens: int = 8) -> dict[str, Any]:
    """Run the chat in this process and return the memory timeline, the peak and the budget."""
    from ..logs import quiet_library_logs
    from ..runtime.session import load_runtime_kernels

    quiet_library_logs()
    timeline = Timeline()
    # The baseline is the process with the runtime's libraries loaded and nothing of the bundle: what an app
    # (or this interpreter) costs before it opens a model.
    load_runtime_kernels()
    import executorch.extension.llm.runner  # noqa: F401
    import executorch.runtime  # noqa: F401

    from ..bundle import read_manifest
    from ..config import PreprocessorConfig
    from ..processing.image import load_image

    config = PreprocessorConfig.from_dict(read_manifest(bundle_dir).front_end["preprocessor_config"])
    turns = chat_messages(audio_seconds, config.audio)  # decodes the audio: PyAV and soundfile are loaded
    load_image(turns[0][0]["content"]["image"], config.image)  # and Pillow
    timeline.mark("runtime and media libraries loaded")
    baseline = ProcessMemory.now().rss
    RUNNERS[runner](bundle_dir, turns, max_new_tokens, timeline)
    peak = ProcessMemory.now().peak_rss
    budget, planned = budget_bytes(bundle_dir)
    return {"runner": runner, "bundle": str(bundle_dir), "audio_seconds": audio_seconds,
            "planned": planned, "steps": timeline.steps,
            "peak_rss_mib": peak / MIB, "baseline_rss_mib": baseline / MIB, "bundle_peak_mib": (peak - baseline) / MIB,
            **{f"{k}_mib": v / MIB for k, v in budget.items()},
            "within_budget": peak - baseline <= budget["budget"]}


def measure_memory(bundle_dir: str | Path, runner: str, audio_seconds: float = 30.0, max_new_tokens: int = 8,
                   timeout_s: float = 3600) -> dict[str, Any]:
    """`probe` in a fresh Python process (so the peak is this chat's alone); returns its result."""
    with tempfile.TemporaryDirectory(prefix="megrez-memory-") as tmp:
        out = Path(tmp) / "memory.json"
        # The result goes to a file: the stock runner prints every generated piece on stdout.
        cmd = [sys.executable, "-m", "megrez_mobile.harness.memory", str(bundle_dir), "--runner", runner,
               "--audio-seconds", f"{audio_seconds:g}", "--max-new-tokens", str(max_new_tokens), "--json", str(out)]
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
                              timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return json.loads(out.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m megrez_mobile.harness.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--runner", choices=sorted(RUNNERS), default="bundle")
    parser.add_argument("--audio-seconds", type=float, default=30.0)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the result here (default: stdout)")
    ns = parser.parse_args(argv)
    result = json.dumps(probe(ns.bundle, ns.runner, ns.audio_seconds, ns.max_new_tokens), indent=1)
    if ns.json:
        ns.json.write_text(result + "\n", encoding="utf-8")
    else:
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
