"""Encoder checkpoints to ONNX with torch.onnx (TorchScript tracer).

The traced eager-attention graph is the pattern onnxruntime's transformer
optimizer fuses into Attention / SkipLayerNormalization / BiasGelu.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from edgelm.export.checkpoint import Checkpoint
from edgelm.export.tokenizer_files import gives_token_types
from edgelm.types import Task

OPSET = 17


@dataclass(frozen=True, kw_only=True)
class GraphSignature:
    inputs: list[str]
    outputs: list[str]
    pooling: str | None


class _Head(torch.nn.Module):
    """The model, taking the signature's inputs positionally; subclasses pick its output."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.model, self.input_names = model, input_names


class _Logits(_Head):
    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, args))).logits


class _SpanLogits(_Head):
    """A question-answering head's start and end logits as one [batch, sequence, 2]."""

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        out = self.model(**dict(zip(self.input_names, args)))
        return torch.stack((out.start_logits, out.end_logits), dim=-1)


class _MeanPooledEmbedding(_Head):
    """Mean over the attention mask, then L2 norm, as sentence-transformers does."""

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        inputs = dict(zip(self.input_names, args))
        hidden = self.model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2.0, dim=1)


def signature(checkpoint: Checkpoint) -> GraphSignature:
    """Inputs the model really uses; outputs named by task."""
    accepted = inspect.signature(checkpoint.model.forward).parameters
    inputs = ["input_ids", "attention_mask"]
    if "token_type_ids" in accepted and getattr(checkpoint.config, "type_vocab_size", 0) > 1 \
            and gives_token_types(checkpoint.folder):
        inputs.append("token_type_ids")
    if checkpoint.task is Task.FEATURE_EXTRACTION:
        return GraphSignature(inputs=inputs, outputs=["sentence_embedding"], pooling="mean")
    if checkpoint.task is Task.QUESTION_ANSWERING:
        return GraphSignature(inputs=inputs, outputs=["span_logits"], pooling=None)
    return GraphSignature(inputs=inputs, outputs=["logits"], pooling=None)


def wrap(checkpoint: Checkpoint, sig: GraphSignature) -> torch.nn.Module:
    """The module whose forward takes the signature's inputs positionally."""
    cls: type[_Head] = _Logits
    if sig.pooling == "mean":
        cls = _MeanPooledEmbedding
    elif checkpoint.task is Task.QUESTION_ANSWERING:
        cls = _SpanLogits
    return cls(checkpoint.model, sig.inputs).eval()


def export_encoder(checkpoint: Checkpoint, path: Path) -> GraphSignature:
    sig = signature(checkpoint)
    module = wrap(checkpoint, sig)
    sample = torch.ones((2, 8), dtype=torch.int64)
    axes = {name: {0: "batch", 1: "sequence"} for name in sig.inputs}
    axes.update({name: {0: "batch"} for name in sig.outputs})
    if checkpoint.task in (Task.TOKEN_CLASSIFICATION, Task.QUESTION_ANSWERING):
        axes[sig.outputs[0]] = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, tuple(sample for _ in sig.inputs), str(path),
            input_names=sig.inputs, output_names=sig.outputs, dynamic_axes=axes,
            opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    return sig
