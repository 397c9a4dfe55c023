"""A tied table quantized once: its lookup rows are exactly what its projection uses."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import edgelm
from edgelm.export.decoder_graph import GraphWriter, _finish
from edgelm.export.quantize_weights import NBitsWriter, block_for
from tests.fixtures import DECODER_PROMPTS as PROMPTS


@pytest.mark.parametrize(("asked", "k", "block"), [
    (32, 64, 32), (128, 576, 64), (256, 1536, 256), (256, 4864, 256), (256, 896, 128),
    (64, 96, 32),
    (32, 40, 32),  # no power of two from 16 divides 40: the block asked, the last padded
])
def test_a_block_is_the_largest_power_of_two_up_to_the_asked_that_divides_the_rows(asked, k,
                                                                                    block):
    assert block_for(asked, k) == block


@pytest.mark.parametrize("table_bits", [8, 4])
@pytest.mark.parametrize(("hidden", "block_size"), [
    (64, 32), (40, 32),  # 40: the last block of 32 is padded
    (96, 64),  # 64 does not divide 96: blocks of 32
])
def test_lookup_rows_equal_the_projection_rows(table_bits, hidden, block_size):
    """embed(ids) must equal the rows the output MatMulNBits multiplies by: feeding the
    projection the identity (e_k, k < hidden) returns the dequantized table, transposed.
    Both read one packed weight, so any difference is a lookup that unpacks bytes,
    scales or zero points differently from the projection."""
    vocab = 50
    table = np.random.default_rng(0).normal(size=(vocab, hidden)).astype(np.float32)
    writer, g = NBitsWriter(4, block_size=block_size, table_bits=table_bits), GraphWriter()
    shared = writer.shared_table(g, "embed_tokens", table)
    rows = writer.shared_lookup(g, shared, "ids")
    projected = writer.shared_projection(g, "basis", shared)
    graph = helper.make_graph(g.nodes, "t", [
        helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "n"]),
        helper.make_tensor_value_info("basis", TensorProto.FLOAT, [hidden, hidden])],
        [helper.make_tensor_value_info(rows, TensorProto.FLOAT, None),
         helper.make_tensor_value_info(projected, TensorProto.FLOAT, None)],
        initializer=g.initializers)
    session = ort.InferenceSession(_finish(graph).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    ids = np.array([[0, 7, 49, 7, 23]], np.int64)
    looked_up, transposed = session.run(None, {"ids": ids,
                                               "basis": np.eye(hidden, dtype=np.float32)})
    dequantized = transposed.T  # [vocab, hidden]
    np.testing.assert_allclose(looked_up[0], dequantized[ids[0]], rtol=1e-6, atol=1e-6)
    # and it is the table, to within its quantization step
    step = (table.max(-1) - table.min(-1)).max() / (2 ** table_bits - 1)
    assert np.abs(looked_up[0] - table[ids[0]]).max() <= step


def test_a_four_bit_table_exports_smaller_and_generates(checkpoints, tmp_path):
    from edgelm.export import ExportOptions, export_model

    sizes = {}
    for bits in (8, 4):
        out = tmp_path / f"t{bits}"
        export_model(checkpoints["llama"], out, ExportOptions(precision="int4", table_bits=bits))
        sizes[bits] = (out / "model.onnx.data").stat().st_size
        manifest = json.loads((out / "edgelm.json").read_text())
        assert manifest["quantization"]["tied_embedding_bits"] == bits
        text = edgelm.Pipeline(out)(PROMPTS[0], max_new_tokens=4)[0]["generated_text"]
        assert text.startswith(PROMPTS[0])
    assert sizes[4] < sizes[8]


def test_table_bits_must_be_four_or_eight():
    from edgelm.export import ExportOptions

    with pytest.raises(edgelm.ConfigError, match="table_bits=6 must be 4 or 8"):
        ExportOptions(precision="int4", table_bits=6)


def test_a_larger_block_fits_each_matrix_and_exports_smaller(checkpoints, tmp_path):
    """--block-size is an upper bound: each MatMulNBits gets the largest power of two up to
    it that divides its rows, so none is padded, and the folder shrinks with fewer scales."""
    import onnx

    from edgelm.export import ExportOptions, export_model

    sizes, blocks = {}, set()
    for block_size in (32, 256):
        out = tmp_path / f"b{block_size}"
        export_model(checkpoints["llama"], out, ExportOptions(precision="int8",
                                                              block_size=block_size))
        sizes[block_size] = (out / "model.onnx.data").stat().st_size
        for node in onnx.load(out / "model.onnx", load_external_data=False).graph.node:
            if node.op_type in ("MatMulNBits", "GatherBlockQuantized"):
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                assert "K" not in attrs or attrs["K"] % attrs["block_size"] == 0, node.name
                if block_size == 256:
                    blocks.add(attrs["block_size"])
        text = edgelm.Pipeline(out)(PROMPTS[0], max_new_tokens=4)[0]["generated_text"]
        assert text.startswith(PROMPTS[0])
    assert blocks and max(blocks) > 32
    assert sizes[256] < sizes[32]
