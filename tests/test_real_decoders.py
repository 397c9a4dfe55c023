"""SmolLM2-135M-Instruct (real packaged weights) against transformers `generate`."""

from __future__ import annotations

import pytest
import torch
import transformers

import edgelm

pytestmark = pytest.mark.slow

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Here is a short poem about the sea:",
    "The three primary colors are",
    "Q: What is 12 times 7?\nA:",
]


@pytest.fixture(scope="module")
def smollm2():
    from edgelm.export.zoo import smollm2_dir

    folder = smollm2_dir()
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return folder, model, tokenizer


@pytest.fixture(scope="module")
def smollm2_exports(smollm2, tmp_path_factory):
    from edgelm.export import ExportOptions, export_model

    root = tmp_path_factory.mktemp("smollm2")
    return {p: export_model(smollm2[0], root / p, ExportOptions(precision=p)) and root / p
            for p in ("fp32", "int4")}


def generate(model, tokenizer, prompt, **options):
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, do_sample=False, pad_token_id=tokenizer.eos_token_id, **options)
    return [tokenizer.decode(row[ids.shape[1]:], skip_special_tokens=True) for row in out]


def test_fp32_greedy_and_beam_match_transformers(smollm2, smollm2_exports):
    _, model, tokenizer = smollm2
    pipe = edgelm.Pipeline(smollm2_exports["fp32"], threads=2)
    assert pipe.manifest.fused_ops["GroupQueryAttention"] == 30
    for prompt in PROMPTS:
        expected = generate(model, tokenizer, prompt, max_new_tokens=32)
        got = pipe(prompt, max_new_tokens=32, return_full_text=False)
        assert [g["generated_text"] for g in got] == expected, prompt
    for prompt in PROMPTS[:2]:
        expected = generate(model, tokenizer, prompt, max_new_tokens=16, num_beams=4,
                            num_return_sequences=4)
        got = pipe(prompt, max_new_tokens=16, num_beams=4, num_return_sequences=4,
                   return_full_text=False)
        assert [g["generated_text"] for g in got] == expected, prompt
    assert pipe(PROMPTS, max_new_tokens=16) == [pipe(p, max_new_tokens=16) for p in PROMPTS]


def test_chat_template_matches_transformers(smollm2, smollm2_exports):
    _, model, tokenizer = smollm2
    pipe = edgelm.Pipeline(smollm2_exports["fp32"], threads=2)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=24, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
    expected = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert pipe.chat(messages, max_new_tokens=24) == expected


def test_int4_is_smaller_and_reports_agreement(smollm2_exports):
    fp32 = edgelm.Pipeline(smollm2_exports["fp32"]).manifest
    int4 = edgelm.Pipeline(smollm2_exports["int4"]).manifest
    size = {p: sum(f.stat().st_size for f in smollm2_exports[p].glob("model.onnx*"))
            for p in smollm2_exports}  # the graph and its weights (model.onnx.data)
    assert size["int4"] < size["fp32"] / 4
    assert size["fp32"] < 560e6  # tied embedding stored once (optimum: 652 MB)
    assert int4.validation.top1_agreement > 0.5
    assert fp32.validation.top1_agreement == 1.0
