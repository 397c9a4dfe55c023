"""Qwen3: Qwen2 without the QKV bias and with an RMSNorm on each query and key head
before rotary (q_norm, k_norm), written between the packed projection and a
GroupQueryAttention that takes query, key and value apart."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgelm.export.architectures.llama import LlamaWriter
from edgelm.export.architectures.registry import Family, register
from edgelm.export.decoder_graph import head_slots


class Qwen3Writer(LlamaWriter):
    def qkv_inputs(self, qkv: str, layer: int) -> list[str]:
        g, attn = self.g, self.m.layers[layer].self_attn
        q_size, kv_size = self.num_heads * self.padded, self.kv_heads * self.padded
        sizes = g.constant(f"layers.{layer}.attn.split", np.array([q_size, kv_size, kv_size],
                                                                  np.int64))
        q, k, v = g.op("Split", [qkv, sizes], outputs=3, axis=-1)
        return [self.head_norm(q, self.num_heads, attn.q_norm, f"layers.{layer}.attn.q_norm"),
                self.head_norm(k, self.kv_heads, attn.k_norm, f"layers.{layer}.attn.k_norm"),
                v]

    def head_norm(self, x: str, heads: int, module: Any, name: str) -> str:
        """RMSNorm over each head's real dimensions.

        A padded head has zeros in its extra dimensions, which would enter the mean of
        squares: over P dimensions instead of H, rms_P^2 = rms_H^2 * H / P. Normalizing
        with epsilon * H / P and scaling the weight by sqrt(H / P) gives exactly the
        unpadded result, and the padding stays zero (its weights are zero).
        """
        g, size, padded = self.g, self.head_size, self.padded
        ratio = size / padded
        weight = np.zeros(padded, np.float32)
        weight[head_slots(size, padded, self.halves_apart)] = self.norm_weight(module) * \
            np.float32(math.sqrt(ratio))
        epsilon = float(getattr(module, "variance_epsilon", None) or module.eps)
        per_head = g.constant(f"{name}.shape", np.array([0, 0, heads, padded], np.int64))
        flat = g.constant(f"{name}.flat", np.array([0, 0, heads * padded], np.int64))
        x = g.one("Reshape", [x, per_head])
        x = g.one("SimplifiedLayerNormalization", [x, g.constant(f"{name}.weight", weight)],
                  axis=-1, epsilon=epsilon * ratio, stash_type=1,
                  name=name)
        return g.one("Reshape", [x, flat])


FAMILY = register(Family(name="qwen3", model_types=("qwen3",), decoder=Qwen3Writer))
