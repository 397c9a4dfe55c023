"""The decoder's stages of the export: a graph written fused at its precision, validated."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import onnx

from edgelm.export import precision as precisions
from edgelm.export.checkpoint import Checkpoint
from edgelm.export.decoder_graph import DecoderShape, build_cache_reorder, build_decoder
from edgelm.export.folder import MODEL_FILE
from edgelm.export.optimize import contrib_op_counts
from edgelm.export.quantize_weights import LinearWriter, writer_for
from edgelm.export.tokenizer_files import pad_token_id
from edgelm.export.validate_decoder import validate_decoder
from edgelm.manifest import DecoderInfo, Validation
from edgelm.types import Precision, Target

CACHE_REORDER_FILE = "cache_reorder.onnx"
# Weights live beside the graph in model.onnx.data, which onnxruntime memory-maps
# instead of parsing them out of the protobuf: GPT-2 124M int8 loads in 0.39 s
# instead of 0.72 s, at 273 MB peak instead of 330 MB (measured here).
WEIGHTS_FILE = f"{MODEL_FILE}.data"
SAMPLE_TEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. It is "
    "named after the engineer Gustave Eiffel, whose company designed and built the tower "
    "from 1887 to 1889. def add(a, b):\n    return a + b\n Café, naïve, 東京, 12345."
)
SAMPLE_PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
)


def eos_token_ids(folder: Path, config: Any) -> list[int]:
    """generation_config.json's eos ids (one or several), else config.json's."""
    from transformers import GenerationConfig

    try:
        found = GenerationConfig.from_pretrained(folder).eos_token_id
    except (OSError, ValueError):
        found = None
    if found is None:
        found = getattr(config, "eos_token_id", None)
    if found is None:
        return []
    return [int(i) for i in (found if isinstance(found, (list, tuple)) else [found])]


class DecoderExport:
    """One graph for the prompt and every step, written by the family's DecoderWriter
    with its attention fused and its weights at their precision from the start."""

    def __init__(self, checkpoint: Checkpoint, precision: Precision, target: Target,
                 staging: Path, *, block_size: int = 32, table_bits: int = 8) -> None:
        self.checkpoint, self.precision, self.target = checkpoint, precision, target
        self.staging = staging
        self.writer: LinearWriter = writer_for(
            precision, block_size=block_size, table_bits=table_bits,
            dtype=precisions.activations(precision, target))
        self.proto: onnx.ModelProto | None = None
        self.shape: DecoderShape | None = None
        self.info: DecoderInfo | None = None

    def stages(self) -> list[tuple[str, Callable[[], None]]]:
        """(message, action) in order: the graph is written fused at its precision."""
        name, precision = self.checkpoint.family.name, self.precision.value
        return [(f"building the {name} decoder graph ({precision} weights, "
                 "GroupQueryAttention, KV cache)", self._build),
                (f"saving {MODEL_FILE} and {WEIGHTS_FILE}", self._save)]

    def _build(self) -> None:
        family = self.checkpoint.family
        assert family.decoder is not None
        self.proto, self.shape = build_decoder(family.decoder, self.checkpoint.model,
                                               self.checkpoint.config, self.writer)

    def _save(self) -> None:
        assert self.proto is not None and self.shape is not None
        onnx.save(self.proto, str(self.staging / MODEL_FILE), save_as_external_data=True,
                  all_tensors_to_one_file=True, location=WEIGHTS_FILE, size_threshold=1024)
        onnx.save(build_cache_reorder(self.shape, self.writer.dtype),
                  str(self.staging / CACHE_REORDER_FILE))

    def validate(self, tokenizer: Any) -> Validation:
        assert self.shape is not None
        config, folder = self.checkpoint.config, self.checkpoint.folder
        bos = getattr(config, "bos_token_id", None)
        self.info = DecoderInfo(**asdict(self.shape), eos_token_ids=eos_token_ids(folder, config),
                                bos_token_id=None if bos is None else int(bos),
                                cache_reorder_file=CACHE_REORDER_FILE)
        prompts = [tokenizer.encode(p).ids or [0] for p in SAMPLE_PROMPTS]
        return validate_decoder(self.staging / MODEL_FILE, self.checkpoint.model, self.info,
                                self.precision, tolerance=self.checkpoint.family.tolerance,
                                prompts=prompts, text=tokenizer.encode(SAMPLE_TEXT).ids)

    def manifest_fields(self, tokenizer: Any) -> dict[str, Any]:
        assert self.proto is not None and self.shape is not None
        return dict(
            inputs=[i.name for i in self.proto.graph.input],
            outputs=[o.name for o in self.proto.graph.output],
            max_length=self.shape.max_positions,
            pad_token_id=pad_token_id(tokenizer, self.checkpoint.config),  # a filler only
            fused_ops=contrib_op_counts(self.proto),
            quantization=dict(self.writer.quantization), decoder=self.info,
        )
