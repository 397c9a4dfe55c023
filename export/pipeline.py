"""`export_model`: load -> export -> fuse -> convert -> validate -> write.

Each step is announced through `progress(message)` as it starts (logged at INFO when
no callback is given); the caller draws it.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, cast

from edgelm.errors import ConfigError
from edgelm.export import optimize
from edgelm.export.atomic import atomic_folder, check_target
from edgelm.export.checkpoint import Checkpoint, check_folder, load_checkpoint
from edgelm.export.decoder_export import build_decoder_folder
from edgelm.export.encoder_graph import export_encoder
from edgelm.export.folder import MODEL_FILE, write_manifest
from edgelm.export.optimize import KeepFloat
from edgelm.export.quantize_weights import check_block_size
from edgelm.export.tokenizer_files import max_length, pad_token_id, write_tokenizer
from edgelm.export.validate import compare
from edgelm.manifest import Manifest
from edgelm.types import Precision, Target, Task

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    precision: Precision | None = None  # None: the target's default (int8 on CPU, fp16 on CUDA)
    target: Target = Target.CPU
    task: Task | None = None
    force: bool = False
    trust_pickle: bool = False
    keep_float: tuple[KeepFloat, ...] = ()  # int8 encoders only: node groups left in float
    block_size: int = 32  # int4/int8 decoders: weights per quantization block

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", Target.parse(self.target))
        object.__setattr__(self, "precision", Precision.parse(
            self.precision or self.target.default_precision()))
        object.__setattr__(self, "keep_float", tuple(KeepFloat.parse(k) for k in self.keep_float))
        if self.keep_float and self.precision is not Precision.INT8:
            raise ConfigError("keep_float applies to int8 only; drop it or use --precision int8")
        if self.task is not None:
            object.__setattr__(self, "task", Task.parse(self.task))
        check_block_size(self.block_size)


def export_model(
    model_dir: str | Path,
    output: str | Path,
    options: ExportOptions = ExportOptions(),
    *,
    progress: Progress | None = None,
) -> Manifest:
    """Export a checkpoint folder into a self-contained, validated ONNX folder."""
    step = progress or (lambda message: log.info(message))
    model_dir, output = Path(model_dir), Path(output)
    check_folder(model_dir, trust_pickle=options.trust_pickle)
    check_target(output, force=options.force)
    step(f"loading {model_dir}")
    checkpoint = load_checkpoint(model_dir, task=options.task, trust_pickle=options.trust_pickle)
    with atomic_folder(output, force=options.force) as staging, \
            tempfile.TemporaryDirectory(dir=staging, prefix=".work-") as work_dir:
        work = Path(work_dir)
        manifest = _build(checkpoint, options, staging, work, step)
    step(f"wrote {output}")
    return manifest


def _build(
    checkpoint: Checkpoint, options: ExportOptions, staging: Path, work: Path, step: Progress
) -> Manifest:
    if checkpoint.task is Task.TEXT_GENERATION:
        return build_decoder_folder(checkpoint, options, staging, step)
    if options.precision is Precision.INT4:
        raise ConfigError("precision 'int4' is for decoders (text-generation); "
                          "use int8 for encoders")
    if options.target is Target.CUDA and options.precision is Precision.INT8:
        log.warning("int8 encoders are usually slower than fp16 on CUDA (onnxruntime#10267: "
                    "dynamic int8 has no fast CUDA kernels); fp16 is --target cuda's default")
    step(f"exporting {checkpoint.spec.name} ({checkpoint.task.value}) to ONNX")
    sig = export_encoder(checkpoint, work / "raw.onnx")
    step("fusing attention, layer norms and GELU")
    optimize.fuse(work / "raw.onnx", work / "fused.onnx", spec=checkpoint.spec,
                  config=checkpoint.config, gpu=options.target is Target.CUDA)
    precision = cast(Precision, options.precision)  # never None after __post_init__
    step(f"{'quantizing' if precision is Precision.INT8 else 'converting'} to {precision.value}")
    optimize.convert(work / "fused.onnx", staging / MODEL_FILE, options.precision,
                     options.keep_float)
    tokenizer = write_tokenizer(checkpoint.folder, staging)
    limit = max_length(checkpoint.folder, checkpoint.spec.max_length(checkpoint.config))
    step("validating against PyTorch")
    validation = compare(staging / MODEL_FILE, checkpoint, sig, options.precision,
                         max_length=limit)
    step("writing the manifest")
    return write_manifest(
        staging, checkpoint, options.precision, target=options.target, inputs=sig.inputs, outputs=sig.outputs,
        max_length=limit, pad_token_id=pad_token_id(tokenizer, checkpoint.config),
        labels=_labels(checkpoint), pooling=sig.pooling,
        fused_ops=optimize.contrib_op_counts(staging / MODEL_FILE), validation=validation,
        quantization=optimize.int8_description(options.keep_float)
        if options.precision is Precision.INT8 else {},
    )


def _labels(checkpoint: Checkpoint) -> list[str]:
    if checkpoint.task not in (Task.TEXT_CLASSIFICATION, Task.TOKEN_CLASSIFICATION):
        return []
    id2label = checkpoint.config.id2label
    return [str(id2label[i]) for i in range(len(id2label))]
