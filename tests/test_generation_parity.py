"""Generation against the reference: transformers `generate` on the same checkpoint.

fp32 exports of random GPT-2 and Llama shapes (standard and odd head sizes,
grouped-query attention) must give the same greedy tokens and the same beam
search sequences, batched or alone.
"""

from __future__ import annotations

import pytest
import torch
import transformers

import edgelm
from edgelm.generation.config import GenerationConfig
from tests.fixtures import DECODER_PROMPTS as PROMPTS
from tests.fixtures import DECODERS


def hf_generate(model, tokenizer, prompt, **options):
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, pad_token_id=tokenizer.eos_token_id, **options)
    return [row[ids.shape[1]:].tolist() for row in out]


def strip(tokens, eos):
    """Generated tokens up to and including the first eos (transformers pads after it)."""
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


@pytest.mark.parametrize("name", list(DECODERS))
def test_greedy_matches_transformers(name, exported, reference):
    model, tokenizer = reference(name)
    pipe = edgelm.Pipeline(exported(name, "fp32"), threads=2)
    eos = tokenizer.eos_token_id
    for prompt in PROMPTS:
        expected = hf_generate(model, tokenizer, prompt, max_new_tokens=32, do_sample=False)[0]
        ids = pipe._encode(prompt, edgelm.GenerationConfig(max_new_tokens=32))
        got = pipe.generate_ids([ids], edgelm.GenerationConfig(max_new_tokens=32))[0][0]
        assert got == strip(expected, eos), prompt


@pytest.mark.parametrize("name", list(DECODERS))
def test_beam_search_matches_transformers(name, exported, reference):
    model, tokenizer = reference(name)
    pipe = edgelm.Pipeline(exported(name, "fp32"), threads=2)
    eos = tokenizer.eos_token_id
    options = dict(max_new_tokens=24, num_beams=4, num_return_sequences=4, length_penalty=1.0)
    for prompt in PROMPTS[:3]:
        expected = hf_generate(model, tokenizer, prompt, do_sample=False, **options)
        ids = pipe._encode(prompt, edgelm.GenerationConfig(**options))
        got = pipe.generate_ids([ids], edgelm.GenerationConfig(**options))[0]
        assert got == [strip(e, eos) for e in expected], prompt


@pytest.mark.parametrize("early_stopping", [True, "never"])
def test_beam_search_options_match_transformers(early_stopping, exported, reference):
    model, tokenizer = reference("gpt2")
    pipe = edgelm.Pipeline(exported("gpt2", "fp32"), threads=2)
    options = dict(max_new_tokens=16, num_beams=3, length_penalty=0.5,
                   early_stopping=early_stopping, repetition_penalty=1.3)
    expected = hf_generate(model, tokenizer, PROMPTS[0], do_sample=False, **options)
    ids = pipe._encode(PROMPTS[0], edgelm.GenerationConfig(**options))
    got = pipe.generate_ids([ids], edgelm.GenerationConfig(**options))[0]
    assert got == [strip(e, tokenizer.eos_token_id) for e in expected]


def test_greedy_options_match_transformers(exported, reference):
    model, tokenizer = reference("llama")
    pipe = edgelm.Pipeline(exported("llama", "fp32"), threads=2)
    options = dict(max_new_tokens=20, min_new_tokens=12, repetition_penalty=1.5)
    for prompt in PROMPTS[:3]:
        expected = hf_generate(model, tokenizer, prompt, do_sample=False, **options)[0]
        ids = pipe._encode(prompt, edgelm.GenerationConfig(**options))
        got = pipe.generate_ids([ids], edgelm.GenerationConfig(**options))[0][0]
        assert got == strip(expected, tokenizer.eos_token_id)


@pytest.mark.parametrize("name", ["gpt2", "llama-odd"])
@pytest.mark.parametrize("num_beams", [1, 4])
def test_batched_prompts_match_single(name, num_beams, exported):
    pipe = edgelm.Pipeline(exported(name, "fp32"), threads=2)
    options = dict(max_new_tokens=16, num_beams=num_beams)
    alone = [pipe(p, **options) for p in PROMPTS]
    assert pipe(PROMPTS, **options) == alone


def test_text_matches_transformers_pipeline(checkpoints, exported, reference):
    model, tokenizer = reference("gpt2")
    hf = transformers.pipeline("text-generation", model=model, tokenizer=tokenizer)
    pipe = edgelm.Pipeline(exported("gpt2", "fp32"))
    for full in (True, False):
        expected = hf(PROMPTS[0], max_new_tokens=12, do_sample=False, return_full_text=full,
                      pad_token_id=tokenizer.eos_token_id)
        assert pipe(PROMPTS[0], max_new_tokens=12, return_full_text=full) == expected


def test_sampling_is_reproducible_with_a_seed(exported):
    pipe = edgelm.Pipeline(exported("llama", "fp32"))
    options = dict(max_new_tokens=24, do_sample=True, temperature=0.9, top_k=50, top_p=0.9)
    first = pipe(PROMPTS[:2], seed=7, **options)
    assert pipe(PROMPTS[:2], seed=7, **options) == first
    others = [pipe(PROMPTS[:2], seed=s, **options) for s in range(8, 12)]
    assert any(o != first for o in others)  # the seed matters


def test_stream_concatenates_to_the_generated_text(exported):
    pipe = edgelm.Pipeline(exported("gpt2", "fp32"))
    for prompt in PROMPTS:
        options = dict(max_new_tokens=24, min_new_tokens=8)
        text = pipe(prompt, return_full_text=False, **options)[0]["generated_text"]
        pieces = list(pipe.stream(prompt, **options))
        assert "".join(pieces) == text
        assert len(pieces) > 1


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_quantized_exports_generate_and_report_agreement(precision, exported):
    folder = exported("llama", precision)
    manifest = edgelm.Pipeline(folder).manifest
    assert manifest.validation.tolerance is None
    assert 0.0 <= manifest.validation.top1_agreement <= 1.0
    assert manifest.quantization["bits"] == (8 if precision == "int8" else 4)
    out = edgelm.Pipeline(folder)(PROMPTS[0], max_new_tokens=8)
    assert out[0]["generated_text"].startswith(PROMPTS[0])


@pytest.mark.parametrize("name", list(DECODERS))
@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_one_fused_attention_per_layer_and_tied_table_once(name, precision, exported, checkpoints):
    import json

    import onnx

    folder = exported(name, precision)
    layers = transformers.AutoConfig.from_pretrained(checkpoints[name]).num_hidden_layers
    manifest = edgelm.Pipeline(folder).manifest
    assert manifest.fused_ops["GroupQueryAttention"] == layers
    graph = onnx.load(str(folder / "model.onnx")).graph
    vocab = manifest.decoder.vocab_size
    tables = [i.name for i in graph.initializer if vocab in i.dims and len(i.dims) >= 2]
    tied = json.loads((checkpoints[name] / "config.json").read_text())["tie_word_embeddings"]
    assert len(tables) == (1 if tied else 2), tables  # embedding (+ untied head)


def test_stop_strings_end_the_text_and_the_stream_before_them(exported):
    pipe = edgelm.Pipeline(exported("gpt2", "fp32"))
    options = dict(max_new_tokens=24, min_new_tokens=24, return_full_text=False)
    full = pipe(PROMPTS[0], **options)[0]["generated_text"]
    # Two characters from the middle on (whole characters: the random model emits stray bytes).
    stop = next(full[i : i + 2] for i in range(len(full) // 2, len(full) - 1)
                if "\ufffd" not in full[i : i + 2])
    assert full.find(stop) > 0
    expected = full[: full.find(stop)]
    assert pipe(PROMPTS[0], stop=stop, **options)[0]["generated_text"] == expected
    streamed = list(pipe.stream(PROMPTS[0], stop=stop, max_new_tokens=24, min_new_tokens=24))
    assert "".join(streamed) == expected
    # Generation ends at the token that completes the stop string, not later.
    prompt = pipe.tokenizer.encode(PROMPTS[0]).ids
    config = GenerationConfig.make(stop=stop, **options)
    (generated,) = pipe.generate_ids([prompt], config)[0]
    assert stop in pipe.continuation(prompt, generated)
    assert stop not in pipe.continuation(prompt, generated[:-1])


def test_steps_follow_a_cache_whose_buffers_are_swapped(exported):
    """The runner keeps its binding of the cache between steps; a cache that swaps in
    other buffers (the GPU cache's reorder does) must be bound again: the step writes
    into the new buffers and reads its past from them."""
    import numpy as np
    import onnxruntime as ort

    pipe = edgelm.Pipeline(exported("llama", "fp32"), threads=1)
    runner = pipe.runner
    _, state = runner.prefill([[5, 6, 7, 8]], 16)
    first = runner.step(state, np.array([9]))
    _, again = runner.prefill([[5, 6, 7, 8]], 16)
    swapped = {name: np.array(a) for name, a in state.cache.arrays.items()}
    state.cache.arrays = {name: a.copy() for name, a in again.cache.arrays.items()}
    state.cache.values = {name: ort.OrtValue.ortvalue_from_numpy(a)
                          for name, a in state.cache.arrays.items()}
    state.lengths = again.lengths.copy()
    assert np.array_equal(runner.step(state, np.array([9])), first)
    position = int(again.lengths[0])  # the token the step appended
    for name, a in state.cache.arrays.items():
        assert np.array_equal(a[:, :, position], swapped[name][:, :, position])
        assert a[:, :, position].any()
