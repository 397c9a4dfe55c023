"""The encoder's stages of the export: trace, fuse, convert, validate."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from edgelm.export import optimize
from edgelm.export.checkpoint import Checkpoint
from edgelm.export.encoder_graph import GraphSignature, export_encoder
from edgelm.export.folder import MODEL_FILE
from edgelm.export.tokenizer_files import max_length, pad_token_id
from edgelm.export.validate import compare
from edgelm.manifest import Validation
from edgelm.types import Precision, ScoreFunction, Target, Task


class EncoderExport:
    """Traced by torch.onnx in float32, fused by onnxruntime's optimizer, then converted."""

    def __init__(self, checkpoint: Checkpoint, precision: Precision, target: Target,
                 keep_float: tuple[optimize.KeepFloat, ...], staging: Path, work: Path) -> None:
        self.checkpoint, self.precision, self.target = checkpoint, precision, target
        self.keep_float, self.staging, self.work = keep_float, staging, work
        assert checkpoint.family.encoder is not None
        self.recipe = checkpoint.family.encoder
        self.sig: GraphSignature | None = None
        self.limit = 0

    def stages(self) -> list[tuple[str, Callable[[], None]]]:
        """(message, action) in order: traced, fused, then converted."""
        checkpoint, precision = self.checkpoint, self.precision.value
        verb = "quantizing" if self.precision is Precision.INT8 else "converting"
        return [(f"exporting {checkpoint.family.name} ({checkpoint.task.value}) to ONNX",
                 self._trace),
                ("fusing attention, layer norms and GELU", self._fuse),
                (f"{verb} to {precision}", self._convert)]

    def _trace(self) -> None:
        self.sig = export_encoder(self.checkpoint, self.work / "raw.onnx")

    def _fuse(self) -> None:
        optimize.fuse(self.work / "raw.onnx", self.work / "fused.onnx", recipe=self.recipe,
                      config=self.checkpoint.config, gpu=self.target is Target.CUDA)

    def _convert(self) -> None:
        optimize.convert(self.work / "fused.onnx", self.staging / MODEL_FILE, self.precision,
                         self.keep_float, layer_pattern=self.recipe.layer_pattern)

    def validate(self, tokenizer: Any) -> Validation:
        assert self.sig is not None
        family, config = self.checkpoint.family, self.checkpoint.config
        self.limit = max_length(self.checkpoint.folder, family.max_length(config))
        return compare(self.staging / MODEL_FILE, self.checkpoint, self.sig, self.precision,
                       max_length=self.limit)

    def manifest_fields(self, tokenizer: Any) -> dict[str, Any]:
        assert self.sig is not None
        return dict(
            inputs=self.sig.inputs, outputs=self.sig.outputs, max_length=self.limit,
            pad_token_id=pad_token_id(tokenizer, self.checkpoint.config),
            labels=_labels(self.checkpoint), pooling=self.sig.pooling,
            score_function=_score_function(self.checkpoint),
            fused_ops=optimize.contrib_op_counts(self.staging / MODEL_FILE),
            quantization=optimize.int8_description(self.keep_float)
            if self.precision is Precision.INT8 else {},
        )


def _score_function(checkpoint: Checkpoint) -> ScoreFunction | None:
    if checkpoint.task is not Task.TEXT_CLASSIFICATION:
        return None
    config = checkpoint.config
    return ScoreFunction.of(getattr(config, "problem_type", None), int(config.num_labels))


def _labels(checkpoint: Checkpoint) -> list[str]:
    if checkpoint.task is Task.QUESTION_ANSWERING:
        return ["start", "end"]  # the columns of span_logits
    if checkpoint.task not in (Task.TEXT_CLASSIFICATION, Task.TOKEN_CLASSIFICATION):
        return []
    id2label = checkpoint.config.id2label
    return [str(id2label[i]) for i in range(len(id2label))]
