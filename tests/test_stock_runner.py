"""The stock MultimodalRunner is the judge of the program contract: driven with [text, image slices with their
marker text, text, audio mel, text], it must produce exactly the greedy tokens Bundle.chat produces, and so
must a second turn that continues the cached context.

The runner's Python token callback breaks on partial UTF-8, so the driver (helpers/stock_runner.py) captures
what the runner prints: each token's bytes, except single non-printable bytes, which its safe_printf drops.
We compare those bytes and the token count with Bundle's tokens rendered the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

DRIVER = Path(__file__).parent / "helpers" / "stock_runner.py"
PRINTABLE = set(range(0x20, 0x7f)) | set(b" \t\n\r\v\f")


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> unicode table, inverted: a byte-level BPE token string -> its raw bytes."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def runner_bytes(tokenizer, token_ids: list[int]) -> bytes:
    table = _byte_decoder()
    out = b""
    for t in token_ids:
        piece = tokenizer.id_to_token(t)
        raw = piece.encode() if t in tokenizer.special_ids else bytes(table[ch] for ch in piece)
        if len(raw) == 1 and raw[0] not in PRINTABLE:
            continue  # the runner's safe_printf skips these
        out += raw
    return out


def _runner_inputs(bundle, inputs) -> list:
    """The prompt as the stock runner takes it: template text (markers included) as text, media as tensors."""
    tok = bundle.processor.tokenizer
    return [("text", tok.decode(seg.token_ids, skip_special_tokens=False)) if seg.kind == "tokens"
            else (seg.kind, seg.media) for seg in inputs.segments]


def run_stock_runner(bundle_dir: Path, turns: list, tmp_path: Path, max_new_tokens: int) -> dict:
    torch.save(turns, tmp_path / "turns.pt")
    proc = subprocess.run([sys.executable, str(DRIVER), str(bundle_dir), str(tmp_path / "turns.pt"),
                           str(tmp_path / "out.json"), str(max_new_tokens)], capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    return {"stats": out["stats"], "bytes": [bytes.fromhex(h).split(b"\nPyTorchObserver")[0].rstrip(b"\n")
                                             for h in out["output_hex"]]}


# bundle_kv8: the same program with an int8 KV cache; its quantize / update_cache / quantized-SDPA kernels must be in
# the stock runner too, and the cache must carry the first turn into the second there as well.
@pytest.mark.parametrize("bundle_fixture", ["bundle_8da4w", "bundle_kv8"])
def test_stock_runner_matches_bundle_chat_over_two_turns(request, bundle_fixture, shared_data, tmp_path):
    from megrez_mobile import Bundle

    bundle_dir = request.getfixturevalue(bundle_fixture)
    bundle = Bundle.load(bundle_dir)
    tok = bundle.processor.tokenizer
    turn1 = [{"role": "user", "content": {"text": "Describe the image, then transcribe the audio.",
                                          "image": str(shared_data / "sample_image.jpg"),
                                          "audio": str(shared_data / "sample_audio.mp3")}}]
    inputs1 = bundle.processor.build_inputs(turn1)
    kinds = [k for k, _ in _runner_inputs(bundle, inputs1)]
    assert kinds[0] == "text" and "image" in kinds and "audio" in kinds and kinds[-1] == "text"
    first = bundle.generate(turn1, max_new_tokens=12)
    cached = bundle.cached_positions

    turn2 = turn1 + [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And in one word?"}]
    inputs2 = bundle.processor.build_inputs(turn2, answer_token_ids={first.text: first.token_ids})
    continuation = inputs2.input_ids[0].tolist()[cached:]
    second = bundle.generate(turn2, max_new_tokens=12)

    got = run_stock_runner(bundle_dir, [_runner_inputs(bundle, inputs1), [("tokens", continuation)]], tmp_path,
                           max_new_tokens=12)
    for stats, printed, inputs, result in zip(got["stats"], got["bytes"], (inputs1, inputs2), (first, second)):
        # The runner emits (and prints) the stop token; Bundle's result leaves it out of the answer.
        emitted = result.token_ids + ([bundle.processor.stop_ids[0]] if result.stop_reason == "stop_token" else [])
        assert stats["prompt_tokens"] == inputs.num_tokens  # turn 2: the runner's cache position matches ours
        assert stats["generated_tokens"] + 1 == len(emitted)  # the runner does not count the prefill token
        assert printed == runner_bytes(tok, emitted)
