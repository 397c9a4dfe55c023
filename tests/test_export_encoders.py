"""Exported encoders against PyTorch: logits, fused nodes, manifest."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import transformers

import edgelm
from edgelm import session
from edgelm.types import Device
from tests.fixtures import ENCODERS

TEXTS = ["The quick brown fox.", "Café déjà vu 🙂", "short", "A much longer sentence " * 5]
LAYERS = 2


def torch_outputs(checkpoint, name: str, texts: list[str]) -> list[np.ndarray]:
    """What PyTorch computes for each text alone (no padding involved)."""
    model_class = getattr(transformers, ENCODERS[name][0])
    model = model_class.from_pretrained(checkpoint, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(checkpoint)
    outputs = []
    for text in texts:
        enc = tok(text, return_tensors="pt", truncation=True)
        with torch.no_grad():
            out = model(**enc)
        if name.endswith("-emb"):
            pooled = out.last_hidden_state.mean(1)
            outputs.append(torch.nn.functional.normalize(pooled, dim=-1)[0].numpy())
        else:
            outputs.append(out.logits[0].numpy())
    return outputs


CLASSIFIERS = [name for name in ENCODERS if name.endswith("-cls")]
EMBEDDERS = [name for name in ENCODERS if name.endswith("-emb")]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_fp32_classifier_matches_pytorch(name, checkpoints, exported):
    folder = exported(name, "fp32")
    pipe = edgelm.Pipeline(folder, threads=1)
    assert isinstance(pipe, edgelm.TextClassificationPipeline)
    results = pipe(TEXTS, top_k=3)
    for result, logits in zip(results, torch_outputs(checkpoints[name], name, TEXTS)):
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        expected = {pipe.manifest.labels[i]: p for i, p in enumerate(probs)}
        for r in result:
            assert r["score"] == pytest.approx(expected[r["label"]], abs=1e-5)
        assert [r["score"] for r in result] == sorted((r["score"] for r in result), reverse=True)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_batched_logits_equal_single_text_logits(name, exported):
    folder = exported(name, "fp32")
    pipe = edgelm.Pipeline(folder, threads=1, batch_size=3)
    together = pipe(TEXTS, top_k=3)
    alone = [pipe(t, top_k=3)[0] for t in TEXTS]
    for a, b in zip(together, alone):
        assert [x["label"] for x in a] == [x["label"] for x in b]
        assert np.allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-6)


@pytest.mark.parametrize("name", EMBEDDERS)
def test_embeddings_match_pytorch_mean_pooling(name, checkpoints, exported):
    pipe = edgelm.Pipeline(exported(name, "fp32"), threads=1)
    vectors = pipe(TEXTS)
    assert vectors.shape == (len(TEXTS), 64) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for got, want in zip(vectors, torch_outputs(checkpoints[name], name, TEXTS)):
        assert float(got @ want) >= 0.99999


def test_token_classification_entities(checkpoints, exported):
    pipe = edgelm.Pipeline(exported("bert-ner", "fp32"), threads=1)
    text = "The quick brown fox jumps"
    entities = pipe(text)
    logits = torch_outputs(checkpoints["bert-ner"], "bert-ner", [text])[0][1:-1]
    tagged = [pipe.manifest.labels[i] for i in logits.argmax(-1)]
    assert sum(1 for t in tagged if not t.startswith("I-") and t != "O") <= len(entities) + 1
    for e in entities:
        assert set(e) == {"entity_group", "score", "word", "start", "end"}
        assert e["word"] == text[e["start"]:e["end"]] and 0 < e["score"] <= 1
        assert e["entity_group"] in {"PER", "LOC"}


@pytest.mark.ort_fusions
@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_fusions_are_what_the_family_claims(name, precision, exported, checkpoints):
    """One fused attention per layer where the family says onnxruntime fuses it; a fused
    GELU per layer always; never the CPU's slow SkipLayerNormalization."""
    from edgelm.export.architectures import identify

    recipe = identify(checkpoints[name]).family.encoder
    manifest = json.loads((exported(name, precision) / "edgelm.json").read_text())
    ops = manifest["fused_ops"]
    attention = "Attention" if precision == "fp32" else "QAttention"
    if recipe.fused_attention:
        assert ops.get(attention, 0) == LAYERS
    assert ops.get("SkipLayerNormalization", 0) == 0  # slower on the CPU: see the last test
    assert sum(ops.get(op, 0) for op in ("BiasGelu", "FastGelu", "Gelu")) >= LAYERS
    validation = manifest["validation"]
    if precision == "fp32":
        assert validation["max_abs_diff"] <= 1e-4 and validation["tolerance"] == 1e-4
    else:
        assert validation["tolerance"] is None
        if name.endswith("-emb"):
            assert validation["top1_agreement"] is None and validation["cosine_min"] >= 0.99
        else:
            assert validation["top1_agreement"] >= 0.9


def test_manifest_is_complete(checkpoints, exported):
    folder = exported("bert-cls", "int8")
    manifest = edgelm.manifest.read_manifest(folder)
    assert manifest.task is edgelm.Task.TEXT_CLASSIFICATION
    assert manifest.precision is edgelm.Precision.INT8
    assert manifest.labels == ["negative", "neutral", "positive"]
    assert manifest.inputs == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest.outputs == ["logits"]
    assert set(manifest.files) >= {"model.onnx", "tokenizer.json"}
    assert manifest.max_length == 128 and manifest.edgelm_version == edgelm.__version__
    assert len(manifest.source_sha256) == 64
    assert not any(p.name.startswith(".") for p in folder.iterdir())


def test_int8_is_smaller_than_fp32(exported):
    fp32 = (exported("bert-cls", "fp32") / "model.onnx").stat().st_size
    int8 = (exported("bert-cls", "int8") / "model.onnx").stat().st_size
    assert int8 < 0.6 * fp32


@pytest.mark.ort_fusions
def test_keep_float_leaves_sensitive_nodes_unquantized(checkpoints, tmp_path):
    from edgelm.export import ExportOptions, export_model

    options = ExportOptions(precision="int8", keep_float=("attention", "first-layer"))
    manifest = export_model(checkpoints["bert-cls"], tmp_path / "kf", options)
    assert manifest.fused_ops.get("Attention") == LAYERS and "QAttention" not in manifest.fused_ops
    assert manifest.quantization["keep_float"] == ["attention", "first-layer"]
    import onnx

    graph = onnx.load(str(tmp_path / "kf" / "model.onnx")).graph
    layer = {n.op_type for n in graph.node if "layer.0/" in n.name and "MatMul" in n.op_type}
    assert layer == {"MatMul"}  # layer 0 stays float
    assert any(n.op_type == "MatMulInteger" and "layer.1/" in n.name for n in graph.node)


def test_keep_float_needs_int8():
    from edgelm.export import ExportOptions

    with pytest.raises(edgelm.ConfigError, match="int8 only"):
        ExportOptions(precision="fp32", keep_float=("attention",))


def test_entities_match_transformers_simple_aggregation(checkpoints, exported):
    reference = transformers.pipeline(
        "token-classification", model=str(checkpoints["bert-ner"]),
        aggregation_strategy="simple", device="cpu")
    pipe = edgelm.Pipeline(exported("bert-ner", "fp32"), threads=1)
    for text in ["The quick brown fox jumps over the lazy dog", "Edge devices run small models"]:
        want = [(e["entity_group"], e["start"], e["end"]) for e in reference(text)]
        got = [(e["entity_group"], e["start"], e["end"]) for e in pipe(text)]
        assert got == want
        for a, b in zip(pipe(text), reference(text)):
            assert a["score"] == pytest.approx(float(b["score"]), abs=1e-5)


@pytest.mark.ort_fusions
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_cpu_session_keeps_residual_layer_norms_unfused(precision, exported, tmp_path, monkeypatch):
    """onnxruntime's load-time fusion must not bring back its slow CPU SkipLayerNormalization
    or BiasGelu; no norm or bias reads int8 values dequantized per call (the fixtures'
    untrained norms all share one scale and shift, the embedding norm's, which int8
    quantizes: export/optimize.own_quantized_inputs)."""
    model = exported("bert-cls", precision) / "model.onnx"  # exported before the patch
    plain = ort.SessionOptions

    def recording_options() -> ort.SessionOptions:
        options = plain()
        options.optimized_model_filepath = str(tmp_path / "as-run.onnx")
        return options

    monkeypatch.setattr(session.ort, "SessionOptions", recording_options)
    session.create_session(model, device=Device.CPU)
    ops = Counter(n.op_type for n in onnx.load(str(tmp_path / "as-run.onnx")).graph.node)
    assert ops["SkipLayerNormalization"] == 0
    assert ops["LayerNormalization"] == 2 * LAYERS
    assert ops["BiasGelu"] == 0 and ops["Gelu"] == LAYERS
    assert ops["DequantizeLinear"] == 0
