"""Phi-3 / Phi-4-mini: Llama with the q, k and v projections packed in one qkv_proj and
gate and up in one gate_up_proj (already in the order the graph wants); Phi-4-mini's
partial rotary (the first partial_rotary_factor of each head) is GroupQueryAttention's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edgelm.errors import UnsupportedModelError
from edgelm.export.architectures.llama import LlamaWriter
from edgelm.export.architectures.registry import Family, register
from edgelm.export.decoder_graph import AttentionWeights
from edgelm.export.decoder_graph import np_weight as w

if TYPE_CHECKING:
    import torch

    from edgelm.export.quantize_weights import LinearWriter


class Phi3Writer(LlamaWriter):
    def __init__(self, model: torch.nn.Module, config: Any, linear: LinearWriter) -> None:
        super().__init__(model, config, linear)
        factor = float((getattr(config, "rope_parameters", None) or {}).get(
            "partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0)))
        self.rotary_dim = int(self.head_size * factor)
        if self.rotary_dim % 2 or not 0 < self.rotary_dim <= self.head_size:
            raise UnsupportedModelError(
                f"phi3 with partial_rotary_factor={factor} (rotary over {self.rotary_dim} of "
                f"{self.head_size} dimensions) is not supported")

    def max_positions(self) -> int:
        """longrope switches to its long factors past original_max_position_embeddings: the
        graph's rotary table holds the short ones, so a sequence ends there."""
        limit = super().max_positions()
        original = getattr(self.config, "original_max_position_embeddings", None)
        kind = (getattr(self.config, "rope_parameters", None) or {}).get("rope_type")
        return min(limit, int(original)) if original and kind == "longrope" else limit

    def attention_weights(self, layer: int) -> AttentionWeights:
        attn = self.m.layers[layer].self_attn
        q_rows = self.num_heads * self.head_size
        kv_rows = self.kv_heads * self.head_size
        q, k, v = np.split(w(attn.qkv_proj.weight), [q_rows, q_rows + kv_rows])
        return AttentionWeights(qkv=self.pack_qkv(q, k, v), qkv_bias=None,
                                out=self.pad_out(w(attn.o_proj.weight)), out_bias=None)

    def gate_up(self, layer: int) -> tuple[np.ndarray, np.ndarray | None, Any]:
        mlp = self.m.layers[layer].mlp
        return w(mlp.gate_up_proj.weight), None, mlp.down_proj


FAMILY = register(Family(name="phi3", model_types=("phi3",), decoder=Phi3Writer))
