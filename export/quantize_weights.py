"""How linear layers and the tied embedding are written at each precision.

The decoder builder asks for `matmul(x, W)`; the writer emits a float MatMul or
a MatMulNBits (blockwise weight-only int8 or int4, asymmetric, packed by
onnxruntime's own quantizer; activations are quantized per block inside the
kernel, accuracy_level 4).

Measured on SmolLM2-135M (perplexity 7.94 in PyTorch on a Wikipedia
paragraph): dynamic int8 (DynamicQuantizeMatMul, one activation scale per
tensor) broke the model, 0% top-1 agreement, because its activations carry
outliers; blockwise int8 gave 8.29, int4 symmetric 9.28, int4 asymmetric 9.03.

A tied embedding is stored once: the projection's MatMulNBits weight is also
read by GatherBlockQuantized for the lookup. 8-bit by default, the output layer
being the most sensitive; `table_bits=4` halves what it costs per token, which
decides the speed of models whose table is a large share of their weights
(Qwen2.5-0.5B: 28%, Gemma 2 2B: 22%): see benchmarks/results/families_decode.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelm.errors import ConfigError

Graph = Any  # decoder_graph.GraphWriter (kept untyped here to avoid a cycle)


def check_block_size(block_size: object) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or \
            block_size < 16 or block_size & (block_size - 1):
        raise ConfigError(f"block_size={block_size!r} must be a power of two >= 16")


def block_for(block_size: int, k: int) -> int:
    """The block of a weight whose rows hold `k` values: `block_size`, or where that does
    not divide the rows the largest power of two below it that does (at least 16; failing
    that `block_size`, the last block padded). A padded block costs what a full one does:
    blocks of 128 on SmolLM2's 576-wide rows would read and multiply 640."""
    block = block_size
    while block > 16 and k % block:
        block //= 2
    return block if k % block == 0 else block_size


class LinearWriter:
    """Float: MatMul on the transposed weight; bias as a separate Add.

    `dtype` is the graph's float type (float16 for CUDA exports): weights, scales
    and activations are stored and computed in it.
    """

    quantization: dict[str, object] = {}

    def __init__(self, dtype: type[np.floating] = np.float32) -> None:
        self.dtype = dtype

    def matmul(self, g: Graph, x: str, w: np.ndarray, *, bias: np.ndarray | None = None,
               name: str) -> str:
        out = g.one("MatMul", [x, g.constant(f"{name}.weight", np.ascontiguousarray(w.T))],
                    name=name)
        if bias is not None:
            out = g.one("Add", [out, g.constant(f"{name}.bias", bias)], name=f"{name}.add_bias")
        return out

    # The tied table is stored transposed, [hidden, vocab]: the projection's layout.
    def shared_table(self, g: Graph, name: str, table: np.ndarray) -> str:
        return g.constant(f"{name}.weight_t", np.ascontiguousarray(table.T))

    def shared_lookup(self, g: Graph, table: str, ids: str) -> str:
        columns = g.one("Gather", [table, ids], axis=1, name="embed.lookup")  # [h, B, S]
        return g.one("Transpose", [columns], perm=[1, 2, 0], name="embed")

    def shared_projection(self, g: Graph, x: str, table: str) -> str:
        return g.one("MatMul", [x, table], name="lm_head")


class NBitsWriter(LinearWriter):
    """Blockwise weight-only quantization (MatMulNBits)."""

    def __init__(self, bits: int, *, block_size: int = 32, table_bits: int = 8,
                 accuracy_level: int = 4,
                 dtype: type[np.floating] = np.float32) -> None:
        super().__init__(dtype)
        if bits not in (4, 8) or table_bits not in (4, 8):
            raise ConfigError(f"bits={bits} and table_bits={table_bits} must be 4 or 8")
        self.table_bits = table_bits
        check_block_size(block_size)
        self.bits, self.block_size, self.accuracy_level = bits, block_size, accuracy_level
        self.quantization = {
            "method": "weight-only blockwise (MatMulNBits)", "bits": bits,
            "block_size": block_size, "symmetric": False, "accuracy_level": accuracy_level,
            "tied_embedding_bits": table_bits,
        }
        self._tables: dict[str, tuple[int, int]] = {}  # table name -> (vocab, hidden)

    def _pack(self, w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from onnxruntime.capi import _pybind_state as ort_c

        n, k = w.shape
        block = block_for(self.block_size, k)
        blocks = -(-k // block)
        per_byte = 8 // bits
        packed = np.zeros((n, blocks, block // per_byte), dtype=np.uint8)
        scales = np.zeros((n * blocks,), dtype=np.float32)
        zero_points = np.zeros((n * -(-blocks // per_byte),), dtype=np.uint8)
        quantize = getattr(ort_c, f"quantize_matmul_{bits}bits")
        quantize(packed, np.ascontiguousarray(w.T), scales, zero_points, block, n, k, False)
        return packed, scales, zero_points

    def _node(self, g: Graph, x: str, names: list[str], n: int, k: int, bits: int,
              bias: str = "", name: str = "") -> str:
        inputs = [x, *names] + (["", bias] if bias else [])
        return g.one("MatMulNBits", inputs, domain="com.microsoft", name=name, K=k, N=n,
                     bits=bits, block_size=block_for(self.block_size, k),
                     accuracy_level=self.accuracy_level)

    def matmul(self, g: Graph, x: str, w: np.ndarray, *, bias: np.ndarray | None = None,
               name: str) -> str:
        packed, scales, zero_points = self._pack(w, self.bits)
        names = [g.constant(f"{name}.weight_q", packed), g.constant(f"{name}.scales", scales),
                 g.constant(f"{name}.zero_points", zero_points)]
        bias_name = g.constant(f"{name}.bias", bias) if bias is not None else ""
        return self._node(g, x, names, *w.shape, self.bits, bias_name, name)

    def shared_table(self, g: Graph, name: str, table: np.ndarray) -> str:
        packed, scales, zero_points = self._pack(table, self.table_bits)
        g.constant(f"{name}.scales", scales)
        g.constant(f"{name}.zero_points", zero_points)
        self._tables[name] = table.shape
        return g.constant(f"{name}.weight_q", packed)

    def _parts(self, table: str) -> tuple[str, str, str, tuple[int, int]]:
        base = table.removesuffix(".weight_q")
        return table, f"{base}.scales", f"{base}.zero_points", self._tables[base]

    def shared_lookup(self, g: Graph, table: str, ids: str) -> str:
        """Rows of the projection's packed weight, dequantized: the table as a 2-D
        [vocab, packed bytes] (4-bit: two values a byte, zero points packed alike)."""
        data, scales, zero_points, (vocab, hidden) = self._parts(table)
        block = block_for(self.block_size, hidden)
        blocks = -(-hidden // block)
        per_byte = 8 // self.table_bits
        width = blocks * block  # the last block is padded

        def rows_of(name: str, columns: int) -> str:
            shape = g.constant(f"{name}.rows", np.array([vocab, columns], np.int64))
            return g.one("Reshape", [name, shape])

        lookup = g.one("GatherBlockQuantized", [
            rows_of(data, width // per_byte), ids, rows_of(scales, blocks),
            rows_of(zero_points, -(-blocks // per_byte)),
        ], domain="com.microsoft", gather_axis=0, quantize_axis=1,
            block_size=block, bits=self.table_bits,
            name="embed" if width == hidden else "embed.lookup")
        if width == hidden:
            return lookup
        zero, end = (g.constant(f"embed.{n}", np.array([v], np.int64))
                     for n, v in (("start", 0), ("end", hidden)))
        return g.one("Slice", [lookup, zero, end, g.constant("embed.axis", np.array([-1], np.int64))],
                     name="embed")

    def shared_projection(self, g: Graph, x: str, table: str) -> str:
        data, scales, zero_points, (vocab, hidden) = self._parts(table)
        return self._node(g, x, [data, scales, zero_points], vocab, hidden, self.table_bits,
                          name="lm_head")


def writer_for(precision: Any, *, block_size: int = 32, table_bits: int = 8,
               dtype: type[np.floating] = np.float32) -> LinearWriter:
    """The writer for `precision`, its activations in `dtype` (the caller picks float16 for
    fp16 and CUDA)."""
    from edgelm.types import Precision

    if precision is Precision.INT8:
        return NBitsWriter(8, block_size=block_size, table_bits=table_bits, dtype=dtype)
    if precision is Precision.INT4:
        return NBitsWriter(4, block_size=block_size, table_bits=table_bits, dtype=dtype)
    return LinearWriter(dtype)
