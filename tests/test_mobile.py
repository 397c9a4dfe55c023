"""--target mobile: the ORT-format model gives the .onnx model's outputs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import edgelm
from edgelm.generation.runner import DecoderRunner
from edgelm.manifest import read_manifest
from edgelm.session import CPU_DISABLED_FUSIONS


def sessions(folder):
    """The .onnx graph as edgelm's CPU sessions load it, and the .ort file (saved optimized
    that way). A plain session would fuse the .onnx differently: 1e-9 apart before an int8
    DynamicQuantizeLinear, which a flipped rounding made 6e-5 in a CI run."""
    manifest = read_manifest(folder)
    assert manifest.target.value == "mobile" and manifest.mobile is not None
    assert {manifest.mobile.ort_file, manifest.mobile.operators_file} <= set(manifest.files)
    return manifest, [
        ort.InferenceSession(str(folder / manifest.model_file), providers=["CPUExecutionProvider"],
                             disabled_optimizers=CPU_DISABLED_FUSIONS),
        ort.InferenceSession(str(folder / manifest.mobile.ort_file),
                             providers=["CPUExecutionProvider"])]


def test_classifier_ort_model_matches_onnx(exported):
    folder = exported("bert-cls", None, "mobile")
    manifest, (onnx_session, ort_session) = sessions(folder)
    assert manifest.precision.value == "int8"
    assert "com.microsoft;QAttention" in manifest.mobile.operators
    # Optimized as edgelm's CPU sessions are: the residual layer norms stay unfused.
    assert "ai.onnx;LayerNormalization" in manifest.mobile.operators
    assert "com.microsoft;SkipLayerNormalization" not in manifest.mobile.operators
    pipe = edgelm.Pipeline(folder)
    batch = pipe.tokenizer.encode_batch(["I loved this movie", "Terrible, boring and long."])
    feed = pipe._feed(batch)
    expected, = onnx_session.run(None, feed)
    got, = ort_session.run(None, feed)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_decoder_ort_model_matches_onnx(exported, name):
    folder = exported(name, None, "mobile")
    manifest, (onnx_session, ort_session) = sessions(folder)
    assert "com.microsoft;GroupQueryAttention" in manifest.mobile.operators
    outputs = []
    for session in (onnx_session, ort_session):
        runner = DecoderRunner(session, manifest.decoder)
        logits, state = runner.prefill([[5, 9, 30, 2], [7, 8]], 8, every_position=True)
        step = runner.step(state, np.array([11, 12]))
        outputs.append((logits, step))
    for expected, got in zip(*outputs):
        np.testing.assert_allclose(got, expected, atol=1e-4)
