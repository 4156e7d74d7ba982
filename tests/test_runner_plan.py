"""The runner-input plan (megrez_mobile/processing/plan.py): what a phone feeds the stock MultimodalRunner.

- the committed test vectors (tests/vectors/front_end) are what the SDK writes today;
- tokenizing each text piece with the runner's C++ tokenizer gives exactly build_inputs' ids (ordinary text);
- user text holding every added-token string yields no special id after neutralisation, through that tokenizer.
"""

from __future__ import annotations

import filecmp
import json

import pytest

from megrez_mobile.processing.plan import (WORD_JOINER, Continuation, added_token_strings, neutralize, plan_ids,
                                           request_messages, runner_plan)
from megrez_mobile.processing.vectors import DEFAULT_OUT, _processor, write_vectors

VECTORS = DEFAULT_OUT


@pytest.fixture(scope="module")
def processor_and_added():
    return _processor()


@pytest.fixture(scope="module")
def cpp_tokenizer(tmp_path_factory, processor_and_added):
    """pytorch_tokenizers' C++ HFTokenizer: the tokenizer compiled into ExecuTorch's runners."""
    from pytorch_tokenizers import CppHFTokenizer

    processor, _ = processor_and_added
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    processor.tokenizer._tok.save(str(path))
    tok = CppHFTokenizer()
    tok.load(str(path))
    return lambda text: list(tok.encode(text, 0, 0))


def test_committed_vectors_are_current(tmp_path):
    fresh = write_vectors(tmp_path / "front_end")
    committed = sorted(p.relative_to(VECTORS).as_posix() for p in VECTORS.rglob("*") if p.is_file())
    written = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    assert committed == written, "run `python -m megrez_mobile.processing.vectors` and commit tests/vectors"
    stale = [name for name in written if not filecmp.cmp(VECTORS / name, fresh / name, shallow=False)]
    assert not stale, f"stale vectors {stale}: run `python -m megrez_mobile.processing.vectors` and commit them"
    assert sum((fresh / n).stat().st_size for n in written) < 3_000_000


def _case_names() -> list[str]:
    return sorted(p.name for p in (VECTORS / "cases").iterdir())


@pytest.mark.parametrize("case", [c for c in _case_names() if c not in ("special_text", "continuation")])
def test_plan_text_tokenizes_to_build_inputs_ids(case, processor_and_added, cpp_tokenizer):
    processor, added = processor_and_added
    request = json.loads((VECTORS / "cases" / case / "request.json").read_text())
    messages = request_messages(request["messages"], VECTORS / "cases" / case)
    plan = runner_plan(processor, messages, added)
    expected = processor.build_inputs(messages).input_ids[0].tolist()
    assert plan_ids(plan, cpp_tokenizer, processor.ids["unk"]) == expected
    assert plan.inputs[0]["kind"] == "text" and plan.inputs[-1]["kind"] == "text"  # the runner needs both


def test_continuation_gives_the_rest_of_the_conversation(processor_and_added, cpp_tokenizer):
    """A kept cache holds turn 1 and the answer minus its last (pending) token: the plan supplies the rest."""
    processor, added = processor_and_added
    base = VECTORS / "cases" / "continuation"
    turn2 = request_messages(json.loads((base / "request.json").read_text())["messages"], base)
    turn1 = [{"role": "user", "content": {"text": "First.", "image": str(VECTORS / "inputs" / "tiny_1x1.png"),
                                          "audio": str(VECTORS / "inputs" / "speech_16k_1p5s.wav")}}]
    answer_ids = cpp_tokenizer("A dot, cut")
    pending = processor.tokenizer.decode(answer_ids[-1:])
    full = processor.build_inputs(turn1 + [{"role": "assistant", "content": "A dot, cut"}] + turn2,
                                  answer_token_ids={"A dot, cut": answer_ids}).input_ids[0].tolist()
    cached = processor.build_inputs(turn1).num_tokens + len(answer_ids) - 1
    plan = runner_plan(processor, turn2, added, continuation=Continuation(1, 1, pending))
    assert plan_ids(plan, cpp_tokenizer, processor.ids["unk"]) == full[cached:]
    texts = "".join(i.get("text", "") for i in plan.inputs)
    assert "<|image_id_start|>1<|image_id_end|>" in texts and "Audio 2: " in texts


def test_neutralised_user_text_gives_no_special_id(processor_and_added, cpp_tokenizer):
    processor, added = processor_and_added
    special_ids = {processor.tokenizer.token_id(t) for t in added}
    text = "x" + "".join(added) + " <|<|turn_end|>|> " + " ".join(added) + "<|eos|"
    assert special_ids & set(cpp_tokenizer(text)), "the runner's tokenizer must match markers in raw text"
    safe = neutralize(text, added)
    ids = cpp_tokenizer(safe)
    assert not special_ids & set(ids)
    assert safe.replace(WORD_JOINER, "") == text and safe.count(WORD_JOINER) == 2 * len(added) + 1
    assert processor.tokenizer.decode(ids, skip_special_tokens=False) == safe  # nothing lost or merged
    for ordinary in ("Hello, world!", "你好，世界", "a < b | c > d", "<|not a token|>", "\n\t emoji 🙂"):
        assert neutralize(ordinary, added) == ordinary


def test_special_text_vector_reaches_the_runner_without_special_ids(processor_and_added, cpp_tokenizer):
    processor, added = processor_and_added
    plan = json.loads((VECTORS / "cases" / "special_text" / "plan.json").read_text())
    request = json.loads((VECTORS / "cases" / "special_text" / "request.json").read_text())
    template_ids = [processor.tokenizer.token_id(t) for t in ("<|role_start|>", "<|role_end|>", "<|turn_end|>")]
    ids = [i for item in plan["inputs"] for i in cpp_tokenizer(item["text"])]
    specials = [i for i in ids if i in processor.tokenizer.special_ids]
    # Exactly the template's markers: system turn, user turn, generation prompt.
    assert specials == [template_ids[0], template_ids[1], template_ids[2]] * 2 + template_ids[:2]
    assert all(t in request["messages"][1]["content"]["text"] for t in added)


def test_added_token_strings_reads_every_added_token(processor_and_added, tmp_path):
    processor, added = processor_and_added
    processor.tokenizer._tok.save(str(tmp_path / "tokenizer.json"))
    assert added_token_strings(tmp_path / "tokenizer.json") == added
    assert "<|turn_end|>" in added and "<|audio_end|>" in added
