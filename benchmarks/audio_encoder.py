"""The full-size audio encoder alone (random weights, official Whisper-large-v3 dims), exported with
xnnpack-8da4w's rules (8da8w), run through executorch.runtime on 2 threads: ms per 30 s clip, and how much of the
graph XNNPACK runs. No checkpoint needed (about 6 min of export and 4 GB of RAM).

    python benchmarks/audio_encoder.py
    PYTHONPATH=/path/to/older/checkout python benchmarks/audio_encoder.py   # the same for another code version
"""
import statistics
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
import torch
from torch.export import Dim
from megrez_mobile.logs import quiet_library_logs; quiet_library_logs()
from megrez_mobile.config import AudioConfig
from megrez_mobile.model.audio import AudioModel
from megrez_mobile.export.recipe import Recipe
from megrez_mobile.export.quantize import quantize_modules
from megrez_mobile.export.lowering import lower_method, to_executorch
import megrez_mobile
print("code:", megrez_mobile.__file__, flush=True)
torch.manual_seed(0)
cfg = AudioConfig()  # official Whisper-large-v3 dims: 32 layers x 1280
model = AudioModel(cfg).eval()
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0, 0.02)
recipe = Recipe.load("xnnpack-8da4w")
quantize_modules(recipe, model, prefix="audio")
class Wrap(torch.nn.Module):
    def __init__(s, m): super().__init__(); s.m = m
    def forward(s, mel): return s.m(mel)
t0 = time.time()
pairs = Dim("mel_pairs", min=2, max=1500)
with torch.no_grad():
    ep = torch.export.export(Wrap(model).eval(), (torch.zeros(1, 128, 200),), dynamic_shapes=({2: 2 * pairs},), strict=False)
lowered, cov = lower_method(recipe, "audio_encoder", ep)
prog = to_executorch({"audio_encoder": lowered}, {})
path = Path(tempfile.mkdtemp(prefix="megrez-audio-bench-")) / "audio_encoder.pte"
with open(path, "wb") as f:
    prog.write_to_file(f)
print(f"export {time.time()-t0:.0f} s, coverage {cov}", flush=True)
del prog, lowered, ep, model
from megrez_mobile.runtime.session import load_runtime_kernels
load_runtime_kernels()
from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
_unsafe_reset_threadpool(2)
from executorch.runtime import Runtime
m = Runtime.get().load_program(path).load_method("audio_encoder")
mel = torch.randn(1, 128, 3000)
m.execute([mel])
times = []
for _ in range(3):
    t = time.perf_counter(); m.execute([mel]); times.append(time.perf_counter() - t)
print(f"30 s clip: median {statistics.median(times)*1000:.0f} ms [{min(times)*1000:.0f}-{max(times)*1000:.0f}] over 3 reps", flush=True)
