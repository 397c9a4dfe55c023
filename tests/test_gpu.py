"""CUDA execution: fp16 exports (--target cuda), the KV cache kept on the device.

Marked `gpu`: `make test-gpu` (pytest -m gpu) runs them; without a CUDA
provider they skip. fp16 is judged against transformers' float32 reference by
token agreement, as quantized exports are; the cache's row moves are exact.
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest
import torch
import transformers

import edgelm
from edgelm.generation.cache import DeviceCache, RowGather
from edgelm.manifest import inside
from tests.fixtures import DECODER_PROMPTS as PROMPTS
from tests.fixtures import DECODERS, agreement, teacher_forced

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                       reason="no CUDA execution provider (pip install 'edgelm[gpu]')"),
]

def test_cuda_pipeline_runs_on_the_cuda_provider(exported):
    pipe = edgelm.Pipeline(exported("gpt2", "fp16", "cuda"), device="cuda")
    assert pipe.session.get_providers()[0] == "CUDAExecutionProvider"
    assert pipe.runner.gather is not None  # the cache lives on the device
    assert edgelm.Pipeline(exported("gpt2", "fp16", "cuda"), device="auto").device.value == "cuda"


def test_device_cache_moves_rows_exactly_like_numpy(exported):
    folder = exported("llama", "fp16", "cuda")
    info = edgelm.Pipeline(folder, device="cuda").info
    gather = RowGather(inside(folder, info.cache_reorder_file))
    rng = np.random.default_rng(0)
    arrays = {f"{layer}.{kind}": rng.standard_normal(
        (3, info.kv_heads, 7, info.head_size)).astype(np.float16)
        for layer in range(info.num_layers) for kind in ("key", "value")}
    cache = DeviceCache({k: ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0)
                         for k, a in arrays.items()}, gather)
    expanded = cache.select(np.array([0, 0, 1, 1, 2, 2]))
    expected = {k: a[[0, 0, 1, 1, 2, 2]] for k, a in arrays.items()}
    for order in ([1, 0, 3, 2, 5, 4], [0, 0, 0, 5, 5, 5], [5, 4, 3, 2, 1, 0]):
        expanded.reorder(np.array(order))  # swaps between two buffers each time
        expected = {k: a[order] for k, a in expected.items()}
        for k, a in expected.items():
            np.testing.assert_array_equal(expanded.values[k].numpy(), a)


@pytest.mark.parametrize("name", list(DECODERS))
def test_fp16_on_cuda_agrees_with_transformers(name, exported, reference):
    """Teacher-forced: transformers' float32 greedy continuation through the CUDA graph."""
    model, tokenizer = reference(name)
    pipe = edgelm.Pipeline(exported(name, "fp16", "cuda"), device="cuda")
    agree = total = 0
    for prompt in PROMPTS:
        out, length, logits = teacher_forced(model, tokenizer, pipe.runner, prompt, 32)
        with torch.no_grad():
            expected = model(torch.tensor([out])).logits[0].numpy()
        assert np.abs(logits - expected).max() < 0.05 * np.abs(expected).max()
        counts = agreement(out, length, logits)
        agree, total = agree + counts[0], total + counts[1]
    assert agree / total >= 0.95, f"{name}: {agree}/{total}"


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_greedy_and_beam_on_cuda_match_transformers(name, exported, reference):
    """The fixtures' logits are far apart, so fp16 gives transformers' exact sequences."""
    model, tokenizer = reference(name)
    pipe = edgelm.Pipeline(exported(name, "fp16", "cuda"), device="cuda")
    for options in ({"max_new_tokens": 24}, {"max_new_tokens": 16, "num_beams": 4,
                                              "num_return_sequences": 2}):
        for prompt in PROMPTS[:3]:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            with torch.no_grad():
                out = model.generate(ids, do_sample=False, pad_token_id=tokenizer.eos_token_id,
                                     **options)
            expected = [tokenizer.decode(row[ids.shape[1]:], skip_special_tokens=True)
                        for row in out]
            got = [r["generated_text"] for r in pipe(prompt, return_full_text=False, **options)]
            assert got == expected, (prompt, options)
    batched = pipe(PROMPTS, max_new_tokens=16)
    assert batched == [pipe(p, max_new_tokens=16) for p in PROMPTS]


def test_fp16_classifier_on_cuda_matches_pytorch(exported, checkpoints):
    pipe = edgelm.Pipeline(exported("bert-cls", "fp16", "cuda"), device="cuda")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        checkpoints["bert-cls"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoints["bert-cls"])
    with torch.no_grad():
        expected = model(**tokenizer(PROMPTS, padding=True, return_tensors="pt")).logits
    labels = [model.config.id2label[i] for i in range(expected.shape[1])]
    got = pipe(PROMPTS, top_k=len(labels))
    for row, scores in zip(expected.softmax(-1).numpy(), got):
        by_label = {s["label"]: s["score"] for s in scores}
        np.testing.assert_allclose([by_label[label] for label in labels], row, atol=1e-2)


def test_int8_on_cuda_warns_and_names_fp16(exported, caplog):
    with caplog.at_level(logging.WARNING):
        edgelm.Pipeline(exported("bert-cls", "int8"), device="cuda")
    assert "--target cuda" in caplog.text
