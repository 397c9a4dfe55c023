"""GPT-Neo: GPT-2's layout with nn.Linear projections (q/k/v without bias), attention
scores left unscaled, and local layers that see the last window_size tokens
(GroupQueryAttention's local_window_size) alternating with global ones."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelm.export.architectures.gpt2 import GPT2Writer
from edgelm.export.architectures.registry import Family, register
from edgelm.export.decoder_graph import AttentionWeights
from edgelm.export.decoder_graph import np_weight as w


class GPTNeoWriter(GPT2Writer):
    def attention_scale(self) -> float:
        return 1.0  # GPTNeoSelfAttention does not divide by sqrt(head_size)

    def window(self, layer: int) -> int | None:
        local = self.config.attention_layers[layer] == "local"
        return int(self.config.window_size) if local else None

    def attention_weights(self, layer: int) -> AttentionWeights:
        attn = self.t.h[layer].attn.attention
        return AttentionWeights(
            qkv=self.pack_qkv(w(attn.q_proj.weight), w(attn.k_proj.weight),
                              w(attn.v_proj.weight)),
            qkv_bias=None, out=self.pad_out(w(attn.out_proj.weight)),
            out_bias=w(attn.out_proj.bias))

    @staticmethod
    def mlp_weight(module: Any) -> np.ndarray:
        return w(module.weight)  # nn.Linear: already [out, in]


FAMILY = register(Family(name="gpt-neo", model_types=("gpt_neo",), decoder=GPTNeoWriter))
