"""The text-generation branch of `export_model`: graph, tokenizer, validation, manifest."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import onnx

from edgelm.errors import ConfigError
from edgelm.export.checkpoint import Checkpoint
from edgelm.export.decoder_graph import build_cache_reorder, build_decoder
from edgelm.export.folder import MODEL_FILE, write_manifest
from edgelm.export.optimize import contrib_op_counts
from edgelm.export.quantize_weights import writer_for
from edgelm.export.tokenizer_files import pad_token_id, write_tokenizer
from edgelm.export.validate_decoder import validate_decoder
from edgelm.manifest import DecoderInfo, Manifest
from edgelm.types import Precision, Target

if TYPE_CHECKING:
    from edgelm.export.pipeline import ExportOptions

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


def build_decoder_folder(checkpoint: Checkpoint, options: ExportOptions, staging: Path,
                         step: Callable[[str], None]) -> Manifest:
    if options.keep_float:
        raise ConfigError("--keep-float applies to int8 encoders; drop it for decoders")
    step(f"building the {checkpoint.spec.name} decoder graph ({options.precision.value} "
         "weights, GroupQueryAttention, KV cache)")
    # On CUDA, activations and the cache are float16 whatever the weights (the GPU's
    # GroupQueryAttention is fp16-only); fp32 stays fp32 when asked for.
    half = options.precision is Precision.FP16 or (
        options.target is Target.CUDA and options.precision is not Precision.FP32)
    writer = writer_for(options.precision, block_size=options.block_size,
                        dtype=np.float16 if half else np.float32)
    proto, shape = build_decoder(checkpoint.model, checkpoint.config, writer)
    path = staging / MODEL_FILE
    step(f"saving {MODEL_FILE} and {WEIGHTS_FILE}")
    onnx.save(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=WEIGHTS_FILE, size_threshold=1024)
    onnx.save(build_cache_reorder(shape, writer.dtype), str(staging / CACHE_REORDER_FILE))
    tokenizer = write_tokenizer(checkpoint.folder, staging)
    eos = eos_token_ids(checkpoint.folder, checkpoint.config)
    pad = pad_token_id(tokenizer, checkpoint.config)  # only a filler in finished rows
    bos = getattr(checkpoint.config, "bos_token_id", None)
    info = DecoderInfo(**asdict(shape), eos_token_ids=eos,
                       bos_token_id=None if bos is None else int(bos),
                       cache_reorder_file=CACHE_REORDER_FILE)
    step("validating against PyTorch (logits with and without the cache, greedy tokens)")
    prompts = [tokenizer.encode(p).ids or [0] for p in SAMPLE_PROMPTS]
    validation = validate_decoder(path, checkpoint.model, info, options.precision,
                                  tolerance=checkpoint.spec.tolerance, prompts=prompts,
                                  text=tokenizer.encode(SAMPLE_TEXT).ids)
    step("writing the manifest")
    return write_manifest(
        staging, checkpoint, options.precision, target=options.target,
        inputs=[i.name for i in proto.graph.input], outputs=[o.name for o in proto.graph.output],
        max_length=shape.max_positions, pad_token_id=pad, fused_ops=contrib_op_counts(proto),
        validation=validation, quantization=dict(writer.quantization), decoder=info,
    )
