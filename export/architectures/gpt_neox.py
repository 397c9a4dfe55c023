"""GPT-NeoX (Pythia): rotary on part of each head, q/k/v packed per head, and (by
default) a parallel residual: x + attention(ln1(x)) + mlp(ln2(x))."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edgelm.errors import UnsupportedModelError
from edgelm.export.architectures.registry import Family, register
from edgelm.export.decoder_graph import MAX_ROTARY_POSITIONS, AttentionWeights, DecoderWriter
from edgelm.export.decoder_graph import np_weight as w

if TYPE_CHECKING:
    import torch

    from edgelm.export.quantize_weights import LinearWriter


class GPTNeoXWriter(DecoderWriter):
    rotary = True

    def __init__(self, model: torch.nn.Module, config: Any, linear: LinearWriter) -> None:
        super().__init__(model, config, linear)
        self.t: Any = model.gpt_neox
        self.epsilon = float(config.layer_norm_eps)
        self.rotary_dim = int(self.t.layers[0].attention.rotary_ndims)
        if config.hidden_act != "gelu":
            raise UnsupportedModelError(
                f"gpt_neox activation {config.hidden_act!r} is not supported; supported: gelu")

    def max_positions(self) -> int:
        return min(int(self.config.max_position_embeddings), MAX_ROTARY_POSITIONS)

    def rotary_tables(self) -> tuple[np.ndarray, np.ndarray]:
        return self.rotary_from(self.t.rotary_emb)

    def norms(self, layer: int) -> tuple[Any, Any]:
        block = self.t.layers[layer]
        return block.input_layernorm, block.post_attention_layernorm

    def final_norm(self) -> Any:
        return self.t.final_layer_norm

    def block(self, x: str, residual: str, layer: int) -> tuple[str, str]:
        if not self.config.use_parallel_residual:
            return super().block(x, residual, layer)
        g, ln2 = self.g, self.norms(layer)[1]
        name = f"layers.{layer}.mlp_norm"
        normed = g.one("LayerNormalization", [
            residual, g.constant(f"{name}.weight", w(ln2.weight)),
            g.constant(f"{name}.bias", w(ln2.bias))], epsilon=self.epsilon, axis=-1,
            stash_type=1, name=name)
        attn, attn_bias = self.attention(x, layer)
        out, mlp_bias = self.mlp(normed, layer)
        both = g.one("Add", [attn, out], name=f"layers.{layer}.parallel")
        bias = (attn_bias if attn_bias is not None else 0) + \
            (mlp_bias if mlp_bias is not None else 0)
        return self.norm(both, residual, self.next_norm(layer),
                         bias if isinstance(bias, np.ndarray) else None)

    def attention_weights(self, layer: int) -> AttentionWeights:
        attn = self.t.layers[layer].attention
        size, heads = self.head_size, self.num_heads
        # Rows are [head][q, k, v][dimension]: regroup as q of every head, then k, then v.
        weight = w(attn.query_key_value.weight).reshape(heads, 3, size, -1)
        q, k, v = (weight[:, i].reshape(heads * size, -1) for i in range(3))
        bias = None
        if attn.query_key_value.bias is not None:
            b = w(attn.query_key_value.bias).reshape(heads, 3, size)
            bias = self.pack_qkv(*(b[:, i].reshape(-1, 1) for i in range(3)))[:, 0]
        return AttentionWeights(
            qkv=self.pack_qkv(q, k, v), qkv_bias=bias, out=self.pad_out(w(attn.dense.weight)),
            out_bias=None if attn.dense.bias is None else w(attn.dense.bias))

    def mlp(self, x: str, layer: int) -> tuple[str, np.ndarray | None]:
        g, mlp = self.g, self.t.layers[layer].mlp
        up = self.linear.matmul(g, x, w(mlp.dense_h_to_4h.weight), name=f"layers.{layer}.mlp.up")
        bias = g.constant(f"layers.{layer}.mlp.up.bias", w(mlp.dense_h_to_4h.bias))
        h = g.one("BiasGelu", [up, bias], domain="com.microsoft")
        down = self.linear.matmul(g, h, w(mlp.dense_4h_to_h.weight),
                                  name=f"layers.{layer}.mlp.down")
        return down, w(mlp.dense_4h_to_h.bias)


FAMILY = register(Family(name="gpt-neox", model_types=("gpt_neox",), decoder=GPTNeoXWriter))
