"""Gemma (1): Llama with embeddings scaled by sqrt(hidden), RMSNorm scaling by (1 + weight)
and a tanh-GELU gate."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgelm.export.architectures.llama import LlamaWriter
from edgelm.export.architectures.registry import Family, register
from edgelm.export.decoder_graph import np_weight as w


class GemmaWriter(LlamaWriter):
    ACTIVATIONS = ("gelu_pytorch_tanh",)

    def embed_scale(self) -> float:
        return math.sqrt(self.hidden)

    def norm_weight(self, module: Any) -> np.ndarray:
        return w(module.weight) + np.float32(1.0)


FAMILY = register(Family(name="gemma", model_types=("gemma",), decoder=GemmaWriter))
