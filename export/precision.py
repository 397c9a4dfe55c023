"""Which precision does what, for each kind of graph: the one table.

Encoders are traced in float32, fused, then converted (onnxruntime's dynamic int8
quantization, or float16). Decoder graphs are written at their precision from
the start (MatMulNBits blocks for int8/int4), their activations float16 on CUDA.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edgelm.errors import ConfigError
from edgelm.types import Precision, Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    weights: str  # what the weights become, for the log and the docs
    refused: str = ""  # why this precision is refused for this kind, if it is
    cuda_warning: str = ""  # said when exporting it for --target cuda
    keep_float: bool = False  # whether --keep-float applies


ENCODER, DECODER, SEQ2SEQ = "encoder", "decoder", "seq2seq"
_SEQ2SEQ_HALF = ("fp16 encoder-decoders (and --target cuda) are not built yet: their "
                 "attention would be validated on a GPU; use fp32, int8 or int4 on the CPU")

TABLE: dict[tuple[str, Precision], Rule] = {
    (ENCODER, Precision.FP32): Rule("float32"),
    (ENCODER, Precision.FP16): Rule("float16, inputs and outputs float32"),
    (ENCODER, Precision.INT8): Rule(
        "int8 per channel, activations uint8 per call (dynamic)", keep_float=True,
        cuda_warning="int8 encoders are usually slower than fp16 on CUDA (onnxruntime#10267: "
                     "dynamic int8 has no fast CUDA kernels); fp16 is --target cuda's default"),
    (ENCODER, Precision.INT4): Rule(
        "", refused="precision 'int4' is for decoders (text-generation); use int8 for encoders"),
    (DECODER, Precision.FP32): Rule("float32"),
    (DECODER, Precision.FP16): Rule("float16"),
    (DECODER, Precision.INT8): Rule("int8 blocks (MatMulNBits), activations float"),
    (DECODER, Precision.INT4): Rule("int4 blocks (MatMulNBits), activations float"),
    (SEQ2SEQ, Precision.FP32): Rule("float32"),
    (SEQ2SEQ, Precision.FP16): Rule("", refused=_SEQ2SEQ_HALF),
    (SEQ2SEQ, Precision.INT8): Rule("int8 blocks (MatMulNBits), activations float"),
    (SEQ2SEQ, Precision.INT4): Rule("int4 blocks (MatMulNBits), activations float"),
}


def check(kind: str, precision: Precision, target: Target, keep_float: bool) -> Rule:
    """The rule for this export; ConfigError when it is refused."""
    rule = TABLE[kind, precision]
    if rule.refused:
        raise ConfigError(rule.refused)
    if kind == SEQ2SEQ and target is Target.CUDA:
        raise ConfigError(_SEQ2SEQ_HALF)
    if keep_float and not rule.keep_float:
        raise ConfigError(f"--keep-float applies to int8 encoders; drop it for {kind}s "
                          f"at {precision.value}")
    if target is Target.CUDA and rule.cuda_warning:
        log.warning(rule.cuda_warning)
    return rule


def activations(precision: Precision, target: Target) -> type[np.floating]:
    """A decoder's activation and cache dtype: float16 for fp16, and on CUDA for every
    precision but fp32 (the GPU's GroupQueryAttention is float16-only)."""
    half = precision is Precision.FP16 or (target is Target.CUDA
                                           and precision is not Precision.FP32)
    return np.float16 if half else np.float32
