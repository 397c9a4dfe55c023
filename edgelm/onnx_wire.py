"""What an ONNX file makes onnxruntime open, read from its protobuf without `onnx`.

The runtime may not import the onnx package, and onnxruntime before 1.24 reads an
initializer's external data wherever its `location` points. So edgelm reads the
protobuf wire format itself: just the messages that can hold a tensor (the graph,
its nodes' attributes and their subgraphs, sparse initializers, functions and
training graphs), and of a tensor just its name, dims and external data. Every
other field is skipped by its length. The walk is bounded in fields and nesting.
Field numbers are those of onnx/onnx.proto3.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from edgelm.errors import ModelFolderError

# Message kinds and, for each, its fields that are messages: number -> kind.
MODEL, GRAPH, NODE, ATTRIBUTE, TENSOR, SPARSE, TRAINING, FUNCTION = range(8)
CHILDREN = {
    MODEL: {7: GRAPH, 20: TRAINING, 25: FUNCTION},
    GRAPH: {1: NODE, 5: TENSOR, 15: SPARSE},
    NODE: {5: ATTRIBUTE},
    ATTRIBUTE: {5: TENSOR, 6: GRAPH, 10: TENSOR, 11: GRAPH, 22: SPARSE, 23: SPARSE},
    SPARSE: {1: TENSOR, 2: TENSOR},
    TRAINING: {1: GRAPH, 2: GRAPH},
    FUNCTION: {7: NODE, 11: ATTRIBUTE},
}
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
# Parent and child kinds that stay in the main graph: its nodes and initializers.
MAIN = {(MODEL, GRAPH), (GRAPH, NODE), (GRAPH, TENSOR)}
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class _Corrupt(Exception):
    pass


@dataclass(frozen=True, kw_only=True)
class ExternalRef:
    """One tensor's external data, as its TensorProto declares it."""

    tensor: str
    location: str | None
    offset: str | None
    length: str | None


@dataclass(frozen=True, kw_only=True)
class Node:
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    ints: dict[str, int]  # its integer attributes (axis, gather_axis)


@dataclass(kw_only=True)
class GraphFacts:
    """The external data of every tensor in the file; the main graph's nodes and weights."""

    external: list[ExternalRef] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    dims: dict[str, tuple[int, ...]] = field(default_factory=dict)  # main-graph initializers

    def embedding_rows(self, ids: str = "input_ids") -> int | None:
        """Rows of the table the graph looks `ids` up in, when the graph says so directly."""
        names = {ids}
        for node in self.nodes:  # the ids, cast or passed through (the graph is sorted)
            if node.op_type in ("Cast", "Identity") and node.inputs[:1] \
                    and node.inputs[0] in names:
                names.update(node.outputs)
        found = [r for n in self.nodes for name in names
                 if (r := _lookup_rows(n, name, self.dims)) is not None]
        return min(found) if found else None


def _lookup_rows(node: Node, ids: str, dims: dict[str, tuple[int, ...]]) -> int | None:
    if node.op_type in ("Gather", "GatherBlockQuantized") and node.inputs[1:2] == (ids,):
        table, axis = node.inputs[0], node.ints.get("axis" if node.op_type == "Gather"
                                                    else "gather_axis", 0)
    elif node.op_type in ("EmbedLayerNormalization", "QEmbedLayerNormalization") \
            and node.inputs[:1] == (ids,) and len(node.inputs) > 2:
        table, axis = node.inputs[2], 0
    else:
        return None
    shape = dims.get(table)
    if not shape or not -len(shape) <= axis < len(shape):
        return None
    return shape[axis]


class _Walker:
    def __init__(self, data: bytes | mmap.mmap, *, max_fields: int, max_depth: int) -> None:
        self.data, self.left, self.max_depth = data, max_fields, max_depth
        self.facts = GraphFacts()

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        result = shift = 0
        while True:
            if pos >= end or shift > 63:
                raise _Corrupt("a truncated or overlong varint")
            byte = self.data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result, pos
            shift += 7

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
        """(number, wire type, value or start, end) of each field of a message."""
        pos = start
        while pos < end:
            self.left -= 1
            if self.left < 0:
                raise _Corrupt("too many protobuf fields")
            tag, pos = self.varint(pos, end)
            number, wire = tag >> 3, tag & 7
            if wire == VARINT:
                value, pos = self.varint(pos, end)
                yield number, wire, value, pos
            elif wire == LENGTH:
                size, pos = self.varint(pos, end)
                if pos + size > end:
                    raise _Corrupt("a field runs past its message")
                yield number, wire, pos, pos + size
                pos += size
            elif wire in (FIXED64, FIXED32):
                pos += 8 if wire == FIXED64 else 4
                if pos > end:
                    raise _Corrupt("a field runs past its message")
            else:
                raise _Corrupt(f"wire type {wire} (groups are not ONNX)")
        if pos != end:
            raise _Corrupt("a message runs past its end")

    def text(self, start: int, end: int) -> str:
        return bytes(self.data[start:end]).decode("utf-8", "replace")

    def walk(self, kind: int, start: int, end: int, depth: int, main: bool) -> None:
        """Visit a message; `main`: it is the main graph, one of its nodes or initializers."""
        if depth > self.max_depth:
            raise _Corrupt(f"messages nested deeper than {self.max_depth}")
        if kind == TENSOR:
            self.tensor(start, end, main)
            return
        children = CHILDREN[kind]
        op_type, inputs, outputs, ints = "", [], [], {}
        for number, wire, a, b in self.fields(start, end):
            child = children.get(number)
            if child is not None:
                if wire != LENGTH:
                    raise _Corrupt(f"field {number} is not a message")
                if main and kind == NODE:
                    ints.update(self.int_attribute(a, b))
                self.walk(child, a, b, depth + 1, main and (kind, child) in MAIN)
            elif main and kind == NODE and wire == LENGTH and number == 1:
                inputs.append(self.text(a, b))
            elif main and kind == NODE and wire == LENGTH and number == 2:
                outputs.append(self.text(a, b))
            elif main and kind == NODE and wire == LENGTH and number == 4:
                op_type = self.text(a, b)
        if main and kind == NODE:
            self.facts.nodes.append(Node(op_type=op_type, inputs=tuple(inputs),
                                        outputs=tuple(outputs), ints=ints))

    def int_attribute(self, start: int, end: int) -> dict[str, int]:
        name, value = "", None
        for number, wire, a, b in self.fields(start, end):
            if number == 1 and wire == LENGTH:
                name = self.text(a, b)
            elif number == 3 and wire == VARINT:
                value = a - (1 << 64) if a >= 1 << 63 else a
        return {name: value} if value is not None else {}

    def tensor(self, start: int, end: int, main: bool) -> None:
        name, dims, location, entries = "", [], 0, []
        for number, wire, a, b in self.fields(start, end):
            if number == 8 and wire == LENGTH:
                name = self.text(a, b)
            elif number == 1 and wire == VARINT:
                dims.append(a)
            elif number == 1 and wire == LENGTH:
                pos = a
                while pos < b:
                    value, pos = self.varint(pos, b)
                    dims.append(value)
            elif number == 13 and wire == LENGTH:
                entries.append(self.entry(a, b))
            elif number == 14 and wire == VARINT:
                location = a
        if main:
            self.facts.dims[name] = tuple(dims)
        keys = dict(entries)  # a repeated key: the last wins, as in protobuf
        locations: list[str | None] = [value for key, value in entries if key == "location"]
        if location == EXTERNAL and not locations:
            locations = [None]
        for where in locations:  # each location given must pass, not only the last
            self.facts.external.append(ExternalRef(
                tensor=name, location=where, offset=keys.get("offset"),
                length=keys.get("length")))

    def entry(self, start: int, end: int) -> tuple[str, str]:
        key = value = ""
        for number, wire, a, b in self.fields(start, end):
            if wire == LENGTH and number == 1:
                key = self.text(a, b)
            elif wire == LENGTH and number == 2:
                value = self.text(a, b)
        return key, value


def read_graph_facts(path: Path, *, max_fields: int, max_depth: int,
                     label: str) -> GraphFacts:
    """The external data and main-graph facts of the ONNX file at `path`."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        if size == 0:
            raise ModelFolderError(f"{label} is empty; export the model again")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data[4:8] == b"ORTM":
                raise ModelFolderError(f"{label} is an ORT-format model; the manifest's "
                                       "model_file must be an .onnx graph")
            walker = _Walker(data, max_fields=max_fields, max_depth=max_depth)
            try:
                walker.walk(MODEL, 0, size, 0, True)
            except _Corrupt as e:
                raise ModelFolderError(f"onnxruntime cannot load {label}: not a valid ONNX "
                                       f"protobuf ({e}); export the model again") from None
    return walker.facts
