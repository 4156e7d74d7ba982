"""Full-size eager model (random weights, official dims): loading memory and time, and eager speed.

    python benchmarks/full_size_eager.py --checkpoint /tmp/megrez-full [--dtype bfloat16 float32]

Makes the checkpoint with `make-tiny --full-size` if the directory does not exist. Each dtype runs in
its own process so peak memory is that process's alone. Memory is sampled from /proc/self/status:
anonymous memory (the weights we hold) separately from file-backed pages (the memory-mapped shards,
which the kernel can drop at any time), plus the kernel's VmHWM peak.

The eager model is the SDK's fp32 reference, not the product: phone speed comes from the exported
programs. These numbers say what a user pays to run the reference and prove loading stays near one
copy of the weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path


class MemorySampler:
    """Max RssAnon / RssFile over the life of the process, sampled every 20 ms."""

    def __init__(self):
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def read() -> dict[str, int]:
        out = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
        return out

    def _run(self):
        while not self._stop.is_set():
            now = self.read()
            for k in self.peak:
                self.peak[k] = max(self.peak[k], now[k])
            time.sleep(0.02)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return {**self.peak, "VmHWM": self.read()["VmHWM"]}


def measure(checkpoint: str, dtype_name: str) -> dict:
    import torch

    from megrez_mobile import MegrezOmni
    from megrez_mobile.processing.audio import load_audio, log_mel

    torch.manual_seed(0)
    dtype = getattr(torch, dtype_name)
    sampler = MemorySampler()
    start = time.perf_counter()
    model = MegrezOmni.from_pretrained(checkpoint, dtype=dtype)
    load_s = time.perf_counter() - start
    load_mem = sampler.stop()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    result = {"dtype": dtype_name, "threads": torch.get_num_threads(), "load_seconds": round(load_s, 1),
              "weights_GiB": round(weight_bytes / 2**30, 2),
              "load_peak_anon_GiB": round(load_mem["RssAnon"] / 2**30, 2),
              "load_peak_file_GiB": round(load_mem["RssFile"] / 2**30, 2),
              "load_VmHWM_GiB": round(load_mem["VmHWM"] / 2**30, 2)}

    with torch.inference_mode():
        model.llm.setup_kv_cache(4096)
        ids = torch.randint(0, 120000, (1, 128))
        t = time.perf_counter()
        logits = model.llm.last_logits(model.embed_tokens(ids), torch.arange(128))[0]
        result["prefill_128_tok_per_s"] = round(128 / (time.perf_counter() - t), 2)
        token, steps = int(logits.argmax()), 8
        t = time.perf_counter()
        for p in range(128, 128 + steps):
            token = int(model.llm.last_logits(model.embed_tokens(torch.tensor([[token]])), torch.tensor([p]))[0].argmax())
        result["decode_tok_per_s"] = round(steps / (time.perf_counter() - t), 2)

        slice_chw = torch.randint(0, 256, (3, 518, 378), dtype=torch.uint8)  # one slice of the sample image
        t = time.perf_counter()
        model.encode_image_slice(slice_chw)
        result["vision_seconds_per_518x378_slice"] = round(time.perf_counter() - t, 2)

        sample = Path(__file__).resolve().parents[1] / "megrez_mobile" / "assets" / "sample_audio.m4a"
        mel = log_mel(load_audio(str(sample)))
        t = time.perf_counter()
        model.encode_audio(mel)
        seconds_of_audio = mel.shape[-1] / 100
        result["audio_ms_per_second_of_audio"] = round(1000 * (time.perf_counter() - t) / seconds_of_audio, 1)
    result["final_VmHWM_GiB"] = round(MemorySampler.read()["VmHWM"] / 2**30, 2)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="/tmp/megrez-full")
    parser.add_argument("--dtype", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.checkpoint, args.child)))
        return
    ckpt = Path(args.checkpoint)
    if not ckpt.exists():
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "megrez_mobile.cli", "make-tiny", str(ckpt), "--full-size"], check=True)
        print(f"make-tiny --full-size: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    for dtype in args.dtype:
        out = subprocess.run([sys.executable, __file__, "--checkpoint", str(ckpt), "--child", dtype],
                             check=True, stdout=subprocess.PIPE, text=True).stdout
        print(out.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
