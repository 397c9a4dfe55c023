"""`--target cuda` exports, checked where CI can: on the CPU provider.

The fp16 graphs run on onnxruntime's CPU kernels too, so their numbers are
checked here; tests/test_gpu.py runs them on CUDA when a GPU is there.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import transformers

import edgelm
from edgelm.cli import main
from edgelm.manifest import inside, read_manifest
from tests.fixtures import DECODER_PROMPTS, DECODERS, teacher_forced


def test_cuda_target_defaults_to_fp16_and_is_recorded(exported):
    manifest = read_manifest(exported("gpt2", None, "cuda"))
    assert (manifest.precision.value, manifest.target.value) == ("fp16", "cuda")
    assert manifest.decoder is not None and manifest.decoder.cache_reorder_file in manifest.files
    assert read_manifest(exported("gpt2", "fp32")).target.value == "cpu"


@pytest.mark.parametrize("name", list(DECODERS))
def test_fp16_decoder_graph_is_float16_and_agrees_with_transformers(name, exported, reference):
    folder = exported(name, "fp16", "cuda")
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    types = {i.name: i.type.tensor_type.elem_type for i in [*graph.input, *graph.output]}
    assert types["past_key_values.0.key"] == onnx.TensorProto.FLOAT16
    assert types["logits"] == onnx.TensorProto.FLOAT  # cast back for the host's sampling
    weights = [t for t in graph.initializer if t.data_type in (onnx.TensorProto.FLOAT,
                                                                onnx.TensorProto.FLOAT16)]
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    model, tokenizer = reference(name)
    pipe = edgelm.Pipeline(folder, device="cpu")
    # Where PyTorch's top two logits are closer than float16's error, either choice is
    # right. The largest |fp16 - PyTorch| logit difference measured on these fixtures is
    # 0.105 (qwen2; logits up to ~16): wherever the margin is over 0.5, the fp16 graph
    # must pick PyTorch's token. (Compared with PyTorch's argmax, not generate's tokens:
    # min_new_tokens makes generate skip eos where eos is the argmax.)
    confident = agree = 0
    for prompt in DECODER_PROMPTS[:3]:
        sequence, start, logits = teacher_forced(model, tokenizer, pipe.runner, prompt, 24)
        with torch.no_grad():
            expected = model(torch.tensor([sequence])).logits[0, start - 1 : -1].float().numpy()
        top2 = np.sort(expected, axis=-1)[:, -2:]
        sure = (top2[:, 1] - top2[:, 0]) > 0.5
        predicted = logits[start - 1 : -1].argmax(-1)
        confident += int(sure.sum())
        agree += int((predicted == expected.argmax(-1))[sure].sum())
    assert confident >= 24, f"{name}: only {confident} of 72 positions are clear-cut"
    assert agree == confident, f"{name}: {agree}/{confident}"


def test_cache_reorder_graph_gathers_rows_exactly(exported):
    folder = exported("llama", "fp16", "cuda")
    info = read_manifest(folder).decoder
    session = ort.InferenceSession(str(inside(folder, info.cache_reorder_file)),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {i.name: rng.standard_normal((3, info.kv_heads, 5, info.head_size)).astype(np.float16)
            for i in session.get_inputs() if i.name != "rows"}
    rows = np.array([2, 2, 0, 1])
    outputs = session.run(None, {"rows": rows, **feed})
    assert len(outputs) == 2 * info.num_layers
    for output, name in zip(outputs, [o.name for o in session.get_outputs()]):
        np.testing.assert_array_equal(output, feed[name.replace("reordered.", "cache.")][rows])


def test_fp16_classifier_export_for_cuda(exported, checkpoints):
    folder = exported("bert-cls", None, "cuda")
    manifest = read_manifest(folder)
    assert manifest.precision.value == "fp16" and manifest.fused_ops.get("Attention") == 2
    assert manifest.validation.top1_agreement == 1.0
    pipe = edgelm.Pipeline(folder, device="cpu")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        checkpoints["bert-cls"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoints["bert-cls"])
    texts = ["I loved this movie", "Terrible, boring and far too long."]
    with torch.no_grad():
        expected = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    labels = [model.config.id2label[int(i)] for i in expected.argmax(-1)]
    assert [r["label"] for r in pipe(texts)] == labels


def test_cli_target_cuda_names_the_output_and_warns_for_int8(checkpoints, tmp_path, caplog):
    from click.testing import CliRunner

    runner = CliRunner()
    model_dir = tmp_path / "cls"
    model_dir.symlink_to(checkpoints["bert-cls"], target_is_directory=True)
    result = runner.invoke(main, ["export", str(model_dir), "--target", "cuda", "-q"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "cls-edgelm-fp16-cuda" / "edgelm.json").read_text())
    assert (manifest["precision"], manifest["target"]) == ("fp16", "cuda")
    result = runner.invoke(main, ["export", str(model_dir), "--target", "cuda", "--precision",
                                  "int8", "-o", str(tmp_path / "int8"), "-q"],
                           catch_exceptions=False)
    assert result.exit_code == 0
    assert "onnxruntime#10267" in caplog.text
