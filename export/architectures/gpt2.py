"""GPT-2: learned positions, LayerNorm, Conv1D ([in, out]) weights, GELU."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edgelm.errors import UnsupportedModelError
from edgelm.export.architectures.registry import Family, register
from edgelm.export.decoder_graph import AttentionWeights, DecoderWriter
from edgelm.export.decoder_graph import np_weight as w

if TYPE_CHECKING:
    import torch

    from edgelm.export.quantize_weights import LinearWriter


class GPT2Writer(DecoderWriter):
    """GPT2LMHeadModel: learned positions, LayerNorm, Conv1D ([in, out]) weights."""

    _ACTIVATIONS = {"gelu_new": "FastGelu", "gelu_pytorch_tanh": "FastGelu",
                    "gelu_fast": "FastGelu", "gelu": "BiasGelu"}

    def __init__(self, model: torch.nn.Module, config: Any, linear: LinearWriter) -> None:
        super().__init__(model, config, linear)
        self.t: Any = model.transformer
        self.epsilon = float(config.layer_norm_epsilon)
        act = config.activation_function
        if act not in self._ACTIVATIONS:
            raise UnsupportedModelError(
                f"GPT-2 activation {act!r} is not supported; supported: "
                f"{', '.join(sorted(self._ACTIVATIONS))}")
        if getattr(config, "scale_attn_by_inverse_layer_idx", False) or \
                getattr(config, "reorder_and_upcast_attn", False):
            raise UnsupportedModelError(
                "GPT-2 with scale_attn_by_inverse_layer_idx or reorder_and_upcast_attn is "
                "not supported")

    def attention_scale(self) -> float:
        return super().attention_scale() if getattr(self.config, "scale_attn_weights", True) \
            else 1.0

    def embed(self, ids: str, shared: str | None, table: torch.Tensor) -> str:
        tokens = super().embed(ids, shared, table)
        positions = self.g.one("Gather", [self.g.constant("wpe", w(self.t.wpe.weight)),
                                          "position_ids"])
        return self.g.one("Add", [tokens, positions], name="embed.positions")

    def norms(self, layer: int) -> tuple[Any, Any]:
        block = self.t.h[layer]
        return block.ln_1, block.ln_2

    def final_norm(self) -> Any:
        return self.t.ln_f

    def attention_weights(self, layer: int) -> AttentionWeights:
        attn = self.t.h[layer].attn
        weight, b = w(attn.c_attn.weight).T, w(attn.c_attn.bias)  # Conv1D: [in, out]
        q, k, v = np.split(weight, 3)
        qb, kb, vb = np.split(b, 3)
        bias = self.pack_qkv(qb[:, None], kb[:, None], vb[:, None])[:, 0]
        return AttentionWeights(qkv=self.pack_qkv(q, k, v), qkv_bias=bias,
                          out=self.pad_out(w(attn.c_proj.weight).T),
                          out_bias=w(attn.c_proj.bias))

    @staticmethod
    def mlp_weight(module: Any) -> np.ndarray:
        """An MLP projection's weight as [out, in] (GPT-2's Conv1D stores [in, out])."""
        return w(module.weight).T

    def mlp(self, x: str, layer: int) -> tuple[str, np.ndarray | None]:
        g, mlp = self.g, self.t.h[layer].mlp
        up = self.linear.matmul(g, x, self.mlp_weight(mlp.c_fc), name=f"layers.{layer}.mlp.up")
        bias = g.constant(f"layers.{layer}.mlp.up.bias", w(mlp.c_fc.bias))
        act = self._ACTIVATIONS[self.config.activation_function]
        h = g.one(act, [up, bias], domain="com.microsoft")
        down = self.linear.matmul(g, h, self.mlp_weight(mlp.c_proj),
                                  name=f"layers.{layer}.mlp.down")
        return down, w(mlp.c_proj.bias)


FAMILY = register(Family(name="gpt2", model_types=("gpt2",), decoder=GPT2Writer))
