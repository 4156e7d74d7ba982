"""Eager chat end to end on the tiny checkpoint, and the generation loop's parts against transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from megrez_mobile import AudioError, ContextOverflowError, ImageError
from megrez_mobile.model.generation import (IncrementalDetokenizer, SamplingConfig, apply_repetition_penalty,
                                            generate, next_token)


@pytest.fixture(scope="module")
def omni_messages(shared_data):
    return [{"role": "user", "content": {"text": "Describe the image and transcribe the audio.",
                                         "image": str(shared_data / "sample_image.jpg"),
                                         "audio": str(shared_data / "sample_audio.mp3")}}]


@pytest.fixture(scope="module")
def omni_result(tiny_model, omni_messages):
    pieces = []
    result = tiny_model.generate(omni_messages, max_new_tokens=24, stream=pieces.append)
    return result, pieces


def test_chat_end_to_end_with_image_audio_text(tiny_model, omni_messages, omni_result):
    result, pieces = omni_result
    assert result.prompt_tokens == tiny_model.processor.build_inputs(omni_messages).num_tokens
    assert result.prompt_tokens > 448 + 38  # 448 image tokens + the audio span + text
    assert len(result.token_ids) == 24 and result.stop_reason == "max_new_tokens"
    assert "".join(pieces) == result.text
    assert result.text == tiny_model.processor.tokenizer.decode(result.token_ids)


def test_greedy_chat_is_deterministic(tiny_model, omni_messages, omni_result):
    result, _ = omni_result
    again = tiny_model.chat(omni_messages, sampling=False, max_new_tokens=24)
    assert again == result.text
    assert tiny_model.generate(omni_messages, max_new_tokens=24).token_ids == result.token_ids


def test_cached_greedy_tokens_equal_recomputation_without_cache(tiny_model, omni_messages, omni_result):
    """Each greedy token is the argmax of a full no-cache pass over image+audio+text embeddings + prior tokens."""
    result, _ = omni_result
    inputs = tiny_model.processor.build_inputs(omni_messages)
    with torch.no_grad():
        prompt = tiny_model.compose_embeddings(inputs)
        answer = tiny_model.embed_tokens(torch.tensor([result.token_ids]))
        logits = tiny_model.logits_from_embeddings(torch.cat([prompt, answer], dim=1))[0]
    n = inputs.num_tokens
    expected = logits[n - 1:n - 1 + len(result.token_ids)].argmax(-1).tolist()
    assert result.token_ids == expected


def test_media_change_the_answer(tiny_model, omni_messages, omni_result):
    """The image and audio embeddings really reach the decoder: dropping them changes the prompt's logits."""
    inputs = tiny_model.processor.build_inputs(omni_messages)
    with torch.no_grad():
        with_media = tiny_model.compose_embeddings(inputs)
        text_only = tiny_model.embed_tokens(inputs.input_ids)
    (s, e) = inputs.image_bounds[0].tolist()
    assert not torch.allclose(with_media[0, s:e], text_only[0, s:e])
    (s, e) = inputs.audio_bounds[0].tolist()
    assert torch.equal(with_media[0, s], text_only[0, s])  # the marker itself stays a token embedding
    torch.testing.assert_close(with_media[0, s + 1], tiny_model.audio.audio.audio_bos_eos_token.weight[0])
    torch.testing.assert_close(with_media[0, e - 1], tiny_model.audio.audio.audio_bos_eos_token.weight[1])


def test_multi_turn_chat(tiny_model, shared_data):
    first = [{"role": "user", "content": {"text": "What is in the picture?",
                                          "image": str(shared_data / "sample_image.jpg")}}]
    answer = tiny_model.chat(first, max_new_tokens=8)
    second = first + [{"role": "assistant", "content": {"text": answer}},
                      {"role": "user", "content": {"text": "And the audio?", "audio": str(shared_data / "sample_audio.m4a")}}]
    result = tiny_model.generate(second, max_new_tokens=8)
    assert len(result.token_ids) == 8
    assert result.prompt_tokens > tiny_model.processor.build_inputs(first).num_tokens + 38


def test_sampling_is_reproducible_with_a_seed(tiny_model):
    messages = [{"role": "user", "content": "Tell me a story."}]
    a = tiny_model.chat(messages, sampling=True, temperature=1.0, top_p=0.95, top_k=50, seed=7, max_new_tokens=16)
    b = tiny_model.chat(messages, sampling=True, temperature=1.0, top_p=0.95, top_k=50, seed=7, max_new_tokens=16)
    c = tiny_model.chat(messages, sampling=True, temperature=1.0, top_p=0.95, top_k=50, seed=8, max_new_tokens=16)
    assert a == b and a != c


def test_prompt_longer_than_context_is_refused(tiny_model):
    long_text = "The quick brown fox jumps over the lazy dog. " * 600
    with pytest.raises(ContextOverflowError, match=r"the context holds 4096 positions"):
        tiny_model.chat([{"role": "user", "content": long_text}])


def test_five_minutes_of_audio_do_not_fit(tiny_model):
    wave = np.random.default_rng(0).standard_normal(300 * 16000).astype(np.float32) * 0.1
    with pytest.raises(ContextOverflowError, match=r"audio"):
        tiny_model.chat([{"role": "user", "content": {"audio": wave, "text": "summarise"}}])


def test_generation_stops_at_the_end_of_the_context(tiny_model):
    tok = tiny_model.processor.tokenizer
    template_tokens = tiny_model.processor.build_inputs([{"role": "user", "content": "x"}]).num_tokens - 1
    text_ids = tok.encode_text("The quick brown fox jumps over the lazy dog. " * 600)[:4090 - template_tokens]
    result = tiny_model.generate([{"role": "user", "content": tok.decode(text_ids)}], max_new_tokens=50)
    assert result.prompt_tokens == 4090
    # Positions 4090..4095 are fed back; the token sampled at position 4095 is the last one.
    assert result.stop_reason == "context_full" and len(result.token_ids) == 7


def test_bad_media_in_chat_is_a_typed_error(tiny_model, tmp_path):
    bad_image = tmp_path / "photo.jpg"
    bad_image.write_text("not a jpeg")
    with pytest.raises(ImageError, match="photo.jpg"):
        tiny_model.chat([{"role": "user", "content": {"text": "hi", "image": str(bad_image)}}])
    with pytest.raises(AudioError, match="empty"):
        tiny_model.chat([{"role": "user", "content": {"text": "hi", "audio": np.zeros(0, dtype=np.float32)}}])


def test_encoder_shape_errors(tiny_model):
    with pytest.raises(ImageError, match="multiples of 14"):
        tiny_model.encode_image_slice(torch.zeros(3, 20, 28, dtype=torch.uint8))
    with pytest.raises(ImageError, match="uint8"):
        tiny_model.encode_image_slice(torch.zeros(3, 28, 28))
    with pytest.raises(AudioError, match=r"\[1, 128, F\]"):
        tiny_model.encode_audio(torch.zeros(1, 80, 100))
    assert tiny_model.encode_audio(torch.zeros(1, 128, 100)).shape == (27, tiny_model.config.text.hidden_size)


# --- the generation loop's parts -------------------------------------------------------------------------------
def test_generation_stops_at_a_stop_id(tiny_model):
    tok = tiny_model.processor.tokenizer
    stop = tiny_model.processor.turn_end
    script = [5, 6, stop, 7]

    def one_hot(i):
        logits = torch.zeros(tok.vocab_size)
        logits[script[i]] = 10.0
        return logits

    calls = []
    result = generate(lambda: one_hot(0), lambda token, pos: (calls.append(pos), one_hot(len(calls)))[1],
                      [1, 2, 3], tok, tiny_model.processor.stop_ids, 4096, SamplingConfig(), 10)
    assert result.token_ids == [5, 6] and result.stop_reason == "stop_token"
    assert calls == [3, 4]  # positions continue after the 3 prompt tokens


def test_repetition_penalty_matches_transformers():
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    torch.manual_seed(0)
    logits = torch.randn(50)
    history = [3, 7, 7, 20, 49]
    theirs = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([history]), logits[None].clone())[0]
    torch.testing.assert_close(apply_repetition_penalty(logits, history, 1.3), theirs)


def test_top_k_top_p_keep_the_same_tokens_as_transformers():
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(1)
    logits = torch.randn(200) * 3
    cfg = SamplingConfig(sampling=True, temperature=0.8, top_k=40, top_p=0.7)
    ref = TopPLogitsWarper(0.7)(None, TopKLogitsWarper(40)(None, (logits / 0.8)[None]))[0]
    allowed = set(torch.nonzero(ref > float("-inf")).flatten().tolist())
    drawn = {next_token(logits, [], cfg, torch.Generator().manual_seed(s)) for s in range(400)}
    assert drawn <= allowed and len(drawn) > 1
    # Greedy ignores the sampling knobs.
    assert next_token(logits, [], SamplingConfig(sampling=False, temperature=0.8)) == int(logits.argmax())


def test_streaming_never_splits_a_utf8_character(tiny_model):
    tok = tiny_model.processor.tokenizer
    text = "龘靐齉 mixed 😀 text 你好"  # rare characters: the tiny BPE has them only as byte tokens
    ids = tok.encode_text(text)
    assert len(ids) > len(text)  # several tokens per character
    detok = IncrementalDetokenizer(tok)
    pieces = [detok.push(i) for i in ids] + [detok.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_bfloat16_model_tracks_float32(tiny_checkpoint, tiny_model, omni_messages):
    """dtype=bfloat16 runs every part (vision, audio, decoder) and stays close to the fp32 reference.

    bf16 keeps 8 mantissa bits (~0.4% per op); through 2+2+2 tiny layers the logits keep cosine > 0.99.
    """
    from megrez_mobile import MegrezOmni

    bf16 = MegrezOmni.from_pretrained(tiny_checkpoint, dtype=torch.bfloat16)
    inputs = tiny_model.processor.build_inputs(omni_messages)
    with torch.no_grad():
        ref = tiny_model.logits_from_embeddings(tiny_model.compose_embeddings(inputs))[0]
        low = bf16.logits_from_embeddings(bf16.compose_embeddings(inputs))[0].float()
    cosine = torch.nn.functional.cosine_similarity(ref, low, dim=-1)
    assert low.dtype == torch.float32 and cosine.min() > 0.99, cosine.min()
    assert len(bf16.generate(omni_messages, max_new_tokens=4).token_ids) == 4
