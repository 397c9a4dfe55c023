"""`export_model`: one sequence for every model.

load -> graph -> fuse -> precision -> validate -> write. What a stage does
depends on the kind of graph (EncoderExport traces, fuses and converts;
DecoderExport writes its graph fused at its precision); the sequence does not.
Each stage is announced through `progress(message)` as it starts (logged at INFO
when no callback is given); the caller draws it.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, cast

from edgelm.errors import ConfigError
from edgelm.export import precision as precisions
from edgelm.export.atomic import atomic_folder, check_target
from edgelm.export.checkpoint import Checkpoint, check_folder, load_checkpoint
from edgelm.export.decoder_export import DecoderExport
from edgelm.export.encoder_export import EncoderExport
from edgelm.export.folder import write_manifest
from edgelm.export.optimize import KeepFloat
from edgelm.export.quantize_weights import check_block_size
from edgelm.export.seq2seq_export import Seq2SeqExport
from edgelm.export.tokenizer_files import write_tokenizer
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
    table_bits: int = 8  # int4/int8 decoders: bits of a tied embedding / output table

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
        if self.table_bits not in (4, 8) or isinstance(self.table_bits, bool):
            raise ConfigError(f"table_bits={self.table_bits!r} must be 4 or 8")


def export_model(
    model_dir: str | Path,
    output: str | Path,
    options: ExportOptions = ExportOptions(),
    *,
    progress: Progress | None = None,
) -> Manifest:
    """Export a checkpoint folder into a self-contained, validated ONNX folder."""
    from edgelm.export.architectures import identify

    step = progress or (lambda message: log.info(message))
    model_dir, output = Path(model_dir), Path(output)
    check_folder(model_dir, trust_pickle=options.trust_pickle)
    found = identify(model_dir, options.task)  # refused here, before torch loads anything
    precision = cast(Precision, options.precision)  # never None after __post_init__
    kind = precisions.ENCODER if found.family.encoder else \
        precisions.SEQ2SEQ if found.family.seq2seq else precisions.DECODER
    precisions.check(kind, precision, options.target, bool(options.keep_float))
    check_target(output, force=options.force)
    step(f"loading {model_dir}")
    checkpoint = load_checkpoint(model_dir, task=options.task, trust_pickle=options.trust_pickle)
    with atomic_folder(output, force=options.force) as staging, \
            tempfile.TemporaryDirectory(dir=staging, prefix=".work-") as work_dir:
        manifest = _build(checkpoint, options, precision, staging, Path(work_dir), step)
    step(f"wrote {output}")
    return manifest


def _build(checkpoint: Checkpoint, options: ExportOptions, precision: Precision,
           staging: Path, work: Path, step: Progress) -> Manifest:
    export: EncoderExport | DecoderExport | Seq2SeqExport
    if checkpoint.family.seq2seq is not None:
        export = Seq2SeqExport(checkpoint, precision, options.target, staging,
                               block_size=options.block_size, table_bits=options.table_bits)
    elif checkpoint.family.decoder is not None:
        export = DecoderExport(checkpoint, precision, options.target, staging,
                               block_size=options.block_size, table_bits=options.table_bits)
    else:
        export = EncoderExport(checkpoint, precision, options.target, options.keep_float,
                               staging, work)
    for message, action in export.stages():
        step(message)
        action()
    tokenizer = write_tokenizer(checkpoint.folder, staging)
    step("validating against PyTorch")
    validation = export.validate(tokenizer)
    step("writing the manifest")
    return write_manifest(staging, checkpoint, precision, target=options.target,
                          validation=validation, **export.manifest_fields(tokenizer))
