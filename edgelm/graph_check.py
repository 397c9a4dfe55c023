"""The manifest checked against the graph it describes, once, at load.

A manifest and its graph come from one export, or from anyone. A mismatch (more labels
than the head has logits, an input edgelm would not feed, a cache shaped unlike the
decoder section, token ids past the embedding table) would otherwise fail at call
time with onnxruntime's error or, worse, give a wrong answer. Dimensions the graph
leaves symbolic are checked on each call instead (pipelines/base.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgelm.errors import ModelFolderError
from edgelm.manifest import DecoderInfo, Manifest
from edgelm.onnx_wire import GraphFacts
from edgelm.types import Task

ENCODER_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}
FLOATS = {"tensor(float)", "tensor(float16)"}
DECODER_TYPES = {"input_ids": "tensor(int64)", "position_ids": "tensor(int64)",
                 "seqlens_k": "tensor(int32)", "total_sequence_length": "tensor(int32)",
                 "logits_at": "tensor(int64)", "encoder_attention_mask": "tensor(int32)"}
HEAD_RANK = {Task.TEXT_CLASSIFICATION: 2, Task.TOKEN_CLASSIFICATION: 3,
             Task.QUESTION_ANSWERING: 3,
             Task.FEATURE_EXTRACTION: 2}


@dataclass(frozen=True)
class Port:
    """One graph input or output as onnxruntime declares it."""

    name: str
    type: str
    shape: tuple[int | str | None, ...]

    def dim(self, axis: int) -> int | None:
        """The static size of `axis`, or None when symbolic or absent."""
        value = self.shape[axis] if -len(self.shape) <= axis < len(self.shape) else None
        return value if isinstance(value, int) else None


def ports(args: Any) -> dict[str, Port]:
    return {a.name: Port(a.name, a.type, tuple(a.shape or ())) for a in args}


def check_graph(manifest: Manifest, session: Any, facts: GraphFacts, *, vocab: int,
                label: str) -> None:
    """Raise one ModelFolderError naming every field the graph contradicts.

    `vocab`: one past the largest id the folder's tokenizer can produce.
    """
    inputs, outputs = ports(session.get_inputs()), ports(session.get_outputs())
    problems = _names(manifest, inputs, outputs)
    if not problems:
        if manifest.decoder is not None:
            problems += _decoder(manifest.decoder, inputs, outputs, manifest.seq2seq is not None)
        else:
            problems += _encoder(manifest, inputs, outputs[manifest.outputs[0]])
    problems += _vocabulary(manifest, facts, vocab)
    if problems:
        raise ModelFolderError(f"{label}: the manifest does not match the graph: "
                               + "; ".join(problems) + "; export the model again")


def _names(manifest: Manifest, inputs: dict[str, Port], outputs: dict[str, Port]) -> list[str]:
    problems = []
    if set(manifest.inputs) != set(inputs):
        problems.append(f"inputs={sorted(manifest.inputs)} but the graph takes {sorted(inputs)}")
    missing = [o for o in manifest.outputs if o not in outputs]
    if missing:
        problems.append(f"outputs names {missing}, which the graph lacks (it has "
                        f"{sorted(outputs)})")
    generates = manifest.task in (Task.TEXT_GENERATION, Task.TEXT2TEXT_GENERATION)
    if generates != (manifest.decoder is not None):
        problems.append(f"task={manifest.task.value} needs a decoder section exactly when "
                        "it generates text")
    if (manifest.task is Task.TEXT2TEXT_GENERATION) != (manifest.seq2seq is not None):
        problems.append(f"task={manifest.task.value} needs a seq2seq section exactly when "
                        "it is text2text-generation")
    return problems


def _encoder(manifest: Manifest, inputs: dict[str, Port], head: Port) -> list[str]:
    problems = []
    unknown = sorted(set(inputs) - ENCODER_INPUTS)
    if unknown or "input_ids" not in inputs:
        problems.append(f"inputs={sorted(inputs)}: an encoder takes input_ids and optionally "
                        f"attention_mask and token_type_ids, not {unknown or 'no input_ids'}")
    for port in inputs.values():
        if port.type != "tensor(int64)" or len(port.shape) != 2:
            problems.append(f"input {port.name} is {port.type} of rank {len(port.shape)}, "
                            "not int64 [batch, sequence]")
    rank = HEAD_RANK[manifest.task]
    if head.type not in FLOATS or len(head.shape) != rank:
        problems.append(f"outputs[0]={head.name!r} is {head.type} of rank {len(head.shape)}; "
                        f"{manifest.task.value} needs float of rank {rank}")
    width = head.dim(-1)
    if manifest.task is not Task.FEATURE_EXTRACTION:
        if not manifest.labels:
            problems.append(f"labels is empty; {manifest.task.value} needs one per logit")
        elif width is not None and width != len(manifest.labels):
            problems.append(f"labels has {len(manifest.labels)} entries but the graph's "
                            f"{head.name!r} has {width} logits")
    return problems


def cache_names(info: DecoderInfo, prefix: str) -> list[str]:
    return [f"{prefix}.{layer}.{kind}" for layer in range(info.num_layers)
            for kind in ("key", "value")]


def _decoder(info: DecoderInfo, inputs: dict[str, Port], outputs: dict[str, Port],
             seq2seq: bool = False) -> list[str]:
    problems = []
    wanted = {"input_ids", "seqlens_k", "total_sequence_length",
              *cache_names(info, "past_key_values")} | ({"position_ids"} if info.position_ids
                                                        else set())
    if seq2seq:  # the encoder's outputs and the source mask
        wanted |= {"encoder_attention_mask", *cache_names(info, "cross")}
    missing, extra = sorted(wanted - set(inputs)), sorted(set(inputs) - wanted - {"logits_at"})
    if missing or extra:
        problems.append(f"decoder (num_layers={info.num_layers}, position_ids="
                        f"{info.position_ids}) needs inputs {missing} the graph lacks"
                        if missing else f"the graph takes inputs {extra} that the decoder "
                        "section does not describe")
    absent = [n for n in ["logits", *cache_names(info, "present")] if n not in outputs]
    if absent:
        problems.append(f"decoder (num_layers={info.num_layers}) needs outputs {absent}")
    if problems:
        return problems
    for name, port in inputs.items():
        if name in DECODER_TYPES and port.type != DECODER_TYPES[name]:
            problems.append(f"input {name} is {port.type}, not {DECODER_TYPES[name]}")
    caches = [inputs[n] for n in cache_names(info, "past_key_values")] + \
        [outputs[n] for n in cache_names(info, "present")]
    if len({p.type for p in caches}) != 1 or caches[0].type not in FLOATS:
        problems.append(f"the cache tensors must share one float type, got "
                        f"{sorted({p.type for p in caches})}")
    for port in caches:
        heads, size = port.dim(1), port.dim(3)
        if len(port.shape) != 4 or heads not in (None, info.kv_heads) \
                or size not in (None, info.head_size):
            problems.append(f"{port.name} is {list(port.shape)}, not [batch, decoder.kv_heads="
                            f"{info.kv_heads}, length, decoder.head_size={info.head_size}]")
            break
    logits = outputs["logits"]
    if logits.type not in FLOATS or len(logits.shape) != 3 \
            or logits.dim(-1) not in (None, info.vocab_size):
        problems.append(f"logits is {logits.type} {list(logits.shape)}, not float [batch, "
                        f"positions, decoder.vocab_size={info.vocab_size}]")
    return problems


def _vocabulary(manifest: Manifest, facts: GraphFacts, vocab: int) -> list[str]:
    """Every id the tokenizer, the padding or the decoder can feed has an embedding row."""
    problems, rows = [], facts.embedding_rows()
    if manifest.decoder is not None:  # generated ids are fed back: all must have a row
        size = manifest.decoder.vocab_size
        if rows is not None and rows < size:
            problems.append(f"decoder.vocab_size={size} but the embedding table has {rows} rows")
        rows = size if rows is None else min(rows, size)
    if rows is not None and vocab > rows:
        problems.append(f"the tokenizer has ids up to {vocab - 1} but the embedding table "
                        f"has {rows} rows")
    if rows is not None and not -rows <= manifest.pad_token_id < rows:
        problems.append(f"pad_token_id={manifest.pad_token_id} is outside the embedding "
                        f"table's {rows} rows")
    return problems
