"""Graph fusion (onnxruntime's transformer optimizer) and precision conversion."""

from __future__ import annotations

import logging
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.fusion_options import FusionOptions
from onnxruntime.transformers.optimizer import optimize_model

from edgelm.export.architectures import EncoderRecipe
from edgelm.types import Choice, Precision

log = logging.getLogger(__name__)

# Weights of these are quantized; the embedding table too (QEmbedLayerNormalization:
# a 4x smaller file for MiniLM, embedding cosine to fp32 unchanged at 0.992).
INT8_OP_TYPES = ["MatMul", "Attention", "EmbedLayerNormalization"]


def fuse(source: Path, target: Path, *, recipe: EncoderRecipe, config: Any,
         gpu: bool = False) -> None:
    """Fuse attention, embeddings and GELU (and, for the GPU, the residual layer norms
    and GELU's bias).

    `gpu`: the fusions meant for the CUDA provider's kernels. onnxruntime's CPU kernels
    for two of them are slower than the ops they replace (2 threads, onnxruntime 1.32):
    - SkipLayerNormalization is a scalar loop, ~3x slower than Add + LayerNormalization
      (0.32 vs 0.12 ms at 128x768): 5 ms of BERT-base's 86 ms int8 call on AVX2.
    - BiasGelu computes erf more slowly than Gelu does, though Gelu leaves the bias to
      an Add, which the quantized MatMul before it then takes in: BERT-base's 12 took
      3.1 ms against Gelu's 1.8 ms (AVX-512 VNNI): 3% of the ~41 ms int8 call.
    session.CPU_DISABLED_FUSIONS keeps onnxruntime from making them again at load.
    """
    options = FusionOptions(recipe.optimizer_type)
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = gpu
    options.enable_bias_gelu = gpu
    model = optimize_model(
        str(source), model_type=recipe.optimizer_type,
        num_heads=int(config.num_attention_heads), hidden_size=int(config.hidden_size),
        optimization_options=options, opt_level=0, use_gpu=gpu,
    )
    if recipe.fused_attention and "Attention" not in contrib_op_counts(model.model):
        import onnxruntime

        log.warning("onnxruntime %s's optimizer fused no attention in this %s: the export "
                    "is correct but slower; onnxruntime 1.32 fuses it (pip install -U "
                    "onnxruntime)", onnxruntime.__version__, recipe.optimizer_type)
    model.save_model_to_file(str(target))


def contrib_op_counts(model: Path | onnx.ModelProto) -> dict[str, int]:
    """How many of each com.microsoft (fused) operator the graph holds."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    graph = model.graph
    return dict(sorted(Counter(n.op_type for n in graph.node if n.domain == "com.microsoft").items()))


class KeepFloat(Choice):
    """Node groups that int8 can leave in float: the ones measured most sensitive."""

    FIRST_LAYER = "first-layer"  # every quantizable node of layer 0
    ATTENTION = "attention"  # the fused attention's QKV projection in every layer


def _layer(node: onnx.NodeProto, pattern: str) -> int | None:
    """The encoder layer a node belongs to, from its traced (`pattern`) or fused name."""
    found = re.search(pattern, node.name) or re.fullmatch(r"Attention_(\d+)", node.name)
    return int(found.group(1)) if found else None


def float_nodes(graph: onnx.GraphProto, keep: tuple[KeepFloat, ...], layer_pattern: str
                ) -> list[str]:
    """Names of the nodes that the `keep` groups leave unquantized."""
    if not keep:
        return []
    names = []
    for node in graph.node:
        if node.op_type not in INT8_OP_TYPES:
            continue
        if (KeepFloat.FIRST_LAYER in keep and _layer(node, layer_pattern) == 0) or \
                (KeepFloat.ATTENTION in keep and node.op_type == "Attention"):
            names.append(node.name)
    return names


def to_int8(source: Path, target: Path, keep: tuple[KeepFloat, ...], layer_pattern: str
            ) -> None:
    """Dynamic int8: per-channel signed weights, activations quantized per call."""
    model = onnx.load(str(source))
    excluded = float_nodes(model.graph, keep, layer_pattern)
    if own_quantized_inputs(model, set(excluded)):
        source = source.with_name(f"{source.stem}-own{source.suffix}")
        onnx.save(model, str(source))
    quantize_dynamic(
        str(source), str(target),
        op_types_to_quantize=INT8_OP_TYPES,
        nodes_to_exclude=excluded,
        per_channel=True,
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
    )


def own_quantized_inputs(model: onnx.ModelProto, excluded: set[str]) -> int:
    """Give each node that int8 quantizes its own copy of every initializer that a node it
    leaves in float reads too; returns how many were copied.

    quantize_dynamic quantizes a node's initializers in place, so a float node reading the
    same tensor would read the int8 copy, dequantized at every call, and lose precision.
    torch.onnx stores equal constants once: where norms share values (untrained ones:
    scale 1, shift 0), every LayerNormalization and bias Add read EmbedLayerNormalization's
    tensors (73 DequantizeLinear nodes in BERT-base).
    """
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    quantized = [node for node in graph.node
                 if node.op_type in INT8_OP_TYPES and node.name not in excluded]
    chosen = {id(node) for node in quantized}
    read_in_float = {name for node in graph.node if id(node) not in chosen
                     for name in node.input}
    copied = 0
    for node in quantized:
        for slot, name in enumerate(node.input):
            if name in initializers and name in read_in_float:
                own = onnx.TensorProto()
                own.CopyFrom(initializers[name])
                own.name = f"{name}/{node.name}"
                graph.initializer.append(own)
                node.input[slot] = own.name
                copied += 1
    return copied


def int8_description(keep: tuple[KeepFloat, ...]) -> dict[str, object]:
    """What to_int8 does, for the manifest."""
    return {"method": "dynamic", "weights": "int8 per-channel symmetric",
            "activations": "uint8 per-tensor, per call", "keep_float": [k.value for k in keep]}


def to_fp16(source: Path, target: Path) -> None:
    """Float16 weights and compute, float32 inputs and outputs (for CUDA)."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(source)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(target))


def convert(
    source: Path, target: Path, precision: Precision, keep: tuple[KeepFloat, ...], *,
    layer_pattern: str,
) -> None:
    if precision is Precision.INT8:
        to_int8(source, target, keep, layer_pattern)
    elif precision is Precision.FP16:
        to_fp16(source, target)
    else:
        shutil.copyfile(source, target)
