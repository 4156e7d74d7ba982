"""One full-size encoder alone (random weights, official dims), exported exactly as the bundle's method (the
exporter's own module, head passes, xnnpack-8da4w's 8da8w rules) and run through executorch.runtime on 2 threads:
ms per input, the planned activation arena, resident memory after loading and after a run, and how many delegates
XNNPACK got. Only the checkpoint's config is read (`megrez-mobile make-tiny DIR --full-size`); about 5-15 min of
export and 4 GB of RAM.

    python benchmarks/encoder.py CKPT --method vision_encoder                         # a 518×378 slice
    python benchmarks/encoder.py CKPT --method audio_encoder                          # a 30 s clip
    python benchmarks/encoder.py CKPT --method audio_encoder --partitioning per-op    # a delegate per dq-linear

`--partitioning exporter` (the default) is what `megrez-mobile export` does (lowering.SPLIT_DQ_LINEARS).
"""
import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
import torch  # noqa: E402

from megrez_mobile.logs import quiet_library_logs  # noqa: E402

quiet_library_logs()
from megrez_mobile.config import MegrezConfig, PreprocessorConfig  # noqa: E402
from megrez_mobile.export import lowering, pipeline  # noqa: E402
from megrez_mobile.export.programs import method_specs  # noqa: E402
from megrez_mobile.export.quantize import quantize_modules  # noqa: E402
from megrez_mobile.export.recipe import Recipe  # noqa: E402
from megrez_mobile.harness.memory import MIB, ProcessMemory, planned_memory  # noqa: E402

# method -> (the eager submodule it runs, which is also its checkpoint prefix; its input; what one input is)
ENCODERS = {
    "vision_encoder": ("vision", lambda: torch.randint(0, 256, (1, 3, 378, 518), dtype=torch.uint8), "518x378 slice"),
    "audio_encoder": ("audio", lambda: torch.randn(1, 128, 3000), "30 s clip"),
}

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("checkpoint", type=Path, help="a full-size checkpoint directory (its config only)")
parser.add_argument("--method", choices=sorted(ENCODERS), required=True)
parser.add_argument("--partitioning", choices=("exporter", "per-op", "grouped"), default="exporter",
                    help="per-op: a delegate per dq-linear, then the rest; grouped: XNNPACK groups everything it can")
parser.add_argument("--reps", type=int, default=3)
ns = parser.parse_args()
submodule, make_input, one_input = ENCODERS[ns.method]
if ns.partitioning == "per-op":
    lowering.SPLIT_DQ_LINEARS = lowering.SPLIT_DQ_LINEARS | {ns.method}
elif ns.partitioning == "grouped":
    lowering.SPLIT_DQ_LINEARS = lowering.SPLIT_DQ_LINEARS - {ns.method}

import megrez_mobile  # noqa: E402
from megrez_mobile.model.omni import MegrezOmni  # noqa: E402

print("code:", megrez_mobile.__file__, "method:", ns.method, "partitioning:", ns.partitioning, flush=True)
torch.manual_seed(0)
cfg = MegrezConfig.from_pretrained(ns.checkpoint)
with torch.device("meta"):
    model = MegrezOmni(cfg)
encoder = getattr(model, submodule)
encoder.to_empty(device="cpu")
with torch.no_grad():
    for p in encoder.parameters():
        p.normal_(0, 0.02)
recipe = Recipe.load("xnnpack-8da4w")
quantize_modules(recipe, encoder, prefix=submodule)
spec = next(s for s in method_specs(model, recipe, PreprocessorConfig.from_pretrained(ns.checkpoint))
            if s.name == ns.method)
t0 = time.time()
ep = pipeline.torch_export(spec)
lowered, cov = lowering.lower_method(recipe, ns.method, ep)
prog = lowering.to_executorch({ns.method: lowered}, {})
path = Path(tempfile.mkdtemp(prefix=f"megrez-{ns.method}-bench-")) / f"{ns.method}.pte"
with open(path, "wb") as f:
    prog.write_to_file(f)
delegates = len(prog.executorch_program.execution_plan[0].delegates)
print(f"export {time.time() - t0:.0f} s, coverage {cov}, {delegates} delegates, "
      f"planned arena {planned_memory(path)[ns.method][1] / MIB:.0f} MiB", flush=True)
del prog, lowered, ep, model, encoder
pipeline.trim_heap()
from megrez_mobile.runtime.session import load_runtime_kernels  # noqa: E402

load_runtime_kernels()
from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool  # noqa: E402
from executorch.runtime import Runtime  # noqa: E402

_unsafe_reset_threadpool(2)
before = ProcessMemory.now()
m = Runtime.get().load_program(path).load_method(ns.method)
loaded = ProcessMemory.now()
x = make_input()
m.execute([x])
ran = ProcessMemory.now()
times = []
for _ in range(ns.reps):
    t = time.perf_counter()
    m.execute([x])
    times.append(time.perf_counter() - t)
print(f"anonymous memory: +{(loaded.anon - before.anon) / MIB:.0f} MiB at load, +{(ran.anon - loaded.anon) / MIB:.0f} "
      f"MiB after the first run; peak {ran.peak_rss / MIB:.0f} MiB", flush=True)
print(f"{one_input}: median {statistics.median(times) * 1000:.0f} ms [{min(times) * 1000:.0f}-"
      f"{max(times) * 1000:.0f}] over {ns.reps} reps", flush=True)
