"""The text-generation branch of `export_model`: graph, tokenizer, validation, manifest."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import onnx

from edgelm.errors import ConfigError
from edgelm.export.checkpoint import Checkpoint
from edgelm.export.decoder_graph import build_decoder
from edgelm.export.folder import MODEL_FILE, write_manifest
from edgelm.export.optimize import contrib_op_counts
from edgelm.export.quantize_weights import writer_for
from edgelm.export.tokenizer_files import pad_token_id, write_tokenizer
from edgelm.export.validate_decoder import validate_decoder
from edgelm.manifest import DecoderInfo, Manifest
from edgelm.types import Precision

if TYPE_CHECKING:
    from edgelm.export.pipeline import ExportOptions

PROTOBUF_LIMIT = 1_900_000_000  # bytes; larger graphs keep their weights in model.onnx.data
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


def build_decoder_folder(checkpoint: Checkpoint, options: ExportOptions, staging: Path,
                         step: Callable[[str], None]) -> Manifest:
    if options.precision is Precision.FP16:
        raise ConfigError("fp16 decoders are not supported yet; use fp32, int8 or int4")
    if options.keep_float:
        raise ConfigError("--keep-float applies to int8 encoders; drop it for decoders")
    step(f"writing the {checkpoint.spec.name} decoder graph ({options.precision.value}, "
         "GroupQueryAttention, KV cache)")
    writer = writer_for(options.precision, block_size=options.block_size)
    proto, shape = build_decoder(checkpoint.model, checkpoint.config, writer)
    path = staging / MODEL_FILE
    large = proto.ByteSize() > PROTOBUF_LIMIT
    onnx.save(proto, str(path), save_as_external_data=large, all_tensors_to_one_file=True,
              location=f"{MODEL_FILE}.data")
    tokenizer = write_tokenizer(checkpoint.folder, staging)
    eos = eos_token_ids(checkpoint.folder, checkpoint.config)
    pad = pad_token_id(tokenizer, checkpoint.config)  # only a filler in finished rows
    bos = getattr(checkpoint.config, "bos_token_id", None)
    info = DecoderInfo(**asdict(shape), eos_token_ids=eos,
                       bos_token_id=None if bos is None else int(bos))
    step("validating against PyTorch (logits with and without the cache, greedy tokens)")
    prompts = [tokenizer.encode(p).ids or [0] for p in SAMPLE_PROMPTS]
    validation = validate_decoder(path, checkpoint.model, info, options.precision,
                                  tolerance=checkpoint.spec.tolerance, prompts=prompts,
                                  text=tokenizer.encode(SAMPLE_TEXT).ids)
    step("writing the manifest")
    return write_manifest(
        staging, checkpoint, options.precision,
        inputs=[i.name for i in proto.graph.input], outputs=[o.name for o in proto.graph.output],
        max_length=shape.max_positions, pad_token_id=pad, fused_ops=contrib_op_counts(proto),
        validation=validation, quantization=dict(writer.quantization), decoder=info,
    )
