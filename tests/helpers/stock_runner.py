"""Drive a bundle through ExecuTorch's stock MultimodalRunner (the C++ runner inside Android's LlmModule and
iOS's MultimodalRunner), in its own process.

    python stock_runner.py BUNDLE TURNS.pt OUT.json

TURNS.pt holds a list of turns; a turn is a list of ("text", str) | ("tokens", [ids]) | ("image", uint8
[3, H, W]) | ("audio", float [n_mels, F]) inputs. Turns run back to back on one runner, so later turns
continue the cached context. The runner prints every generated piece to C stdout (no Python token callback:
it breaks on partial UTF-8), so each turn's raw bytes are captured from file descriptor 1 between markers.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import tempfile

import torch

MARK = b"\n@@MEGREZ-TURN@@\n"


def main(bundle: str, turns_path: str, out_path: str, max_new_tokens: str) -> None:
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
    import executorch.kernels.quantized  # noqa: F401
    from executorch.extension.llm.runner import (GenerationConfig, MultimodalRunner, make_audio_input,
                                                 make_image_input, make_text_input, make_token_input)

    libc = ctypes.CDLL(None)
    capture = tempfile.TemporaryFile()
    saved = os.dup(1)
    os.dup2(capture.fileno(), 1)
    makers = {"text": make_text_input, "tokens": make_token_input,
              "image": lambda t: make_image_input(t.unsqueeze(0).contiguous()),
              "audio": lambda t: make_audio_input(t.unsqueeze(0).float().contiguous())}
    runner = MultimodalRunner(f"{bundle}/model.pte", f"{bundle}/tokenizer.json")
    stats = []
    config = GenerationConfig(echo=False, max_new_tokens=int(max_new_tokens), temperature=0.0)
    for turn in torch.load(turns_path, weights_only=False):
        inputs = [makers[kind](value) for kind, value in turn]
        libc.fflush(None)
        os.write(1, MARK)
        runner.generate(inputs, config, None, lambda s: stats.append(
            {"prompt_tokens": s.num_prompt_tokens, "generated_tokens": s.num_generated_tokens}))
        libc.fflush(None)
    os.write(1, MARK)
    libc.fflush(None)
    os.dup2(saved, 1)
    capture.seek(0)
    chunks = capture.read().split(MARK)[1:-1]
    with open(out_path, "w") as f:
        json.dump({"stats": stats, "output_hex": [c.hex() for c in chunks]}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
