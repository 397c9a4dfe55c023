"""Llama, and the shared writer of the families built like it: rotary positions,
RMSNorm, grouped-query attention, a gated MLP (Qwen2/3, Mistral, Phi-3, Gemma)."""

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


class LlamaWriter(DecoderWriter):
    """LlamaForCausalLM, and the base of the families that differ from it in a few places."""

    rotary = True
    NORM_OPS = ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")
    norm_has_beta = False
    # hidden_act -> the gate's activation, written as ops on the gate
    ACTIVATIONS = ("silu",)

    def __init__(self, model: torch.nn.Module, config: Any, linear: LinearWriter) -> None:
        super().__init__(model, config, linear)
        self.m: Any = model.model
        self.epsilon = float(config.rms_norm_eps)
        act = self.activation_name()
        if act not in self.ACTIVATIONS:
            raise UnsupportedModelError(
                f"{config.model_type} activation {act!r} is not supported; supported: "
                f"{', '.join(self.ACTIVATIONS)}")
        if self.head_size % 2:
            raise UnsupportedModelError(f"rotary needs an even head size, got {self.head_size}")

    def activation_name(self) -> str:
        return str(self.config.hidden_act)

    def max_positions(self) -> int:
        return min(int(self.config.max_position_embeddings), MAX_ROTARY_POSITIONS)

    def rotary_tables(self) -> tuple[np.ndarray, np.ndarray]:
        return self.rotary_from(self.m.rotary_emb)

    def window(self, layer: int) -> int | None:
        """config.sliding_window, on the layers config.layer_types marks as sliding."""
        size = getattr(self.config, "sliding_window", None)
        if not size:
            return None
        kinds = getattr(self.config, "layer_types", None)
        if kinds is not None and kinds[layer] != "sliding_attention":
            return None
        return int(size)

    def norms(self, layer: int) -> tuple[Any, Any]:
        block = self.m.layers[layer]
        return block.input_layernorm, block.post_attention_layernorm

    def final_norm(self) -> Any:
        return self.m.norm

    def projections(self, layer: int) -> tuple[Any, Any, Any, Any]:
        """The q, k, v and output nn.Linear of `layer`."""
        attn = self.m.layers[layer].self_attn
        return attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj

    def attention_weights(self, layer: int) -> AttentionWeights:
        q, k, v, o = self.projections(layer)
        return AttentionWeights(
            qkv=self.pack_qkv(w(q.weight), w(k.weight), w(v.weight)),
            qkv_bias=self.packed_bias(q.bias, k.bias, v.bias, q.weight, k.weight),
            out=self.pad_out(w(o.weight)),
            out_bias=None if o.bias is None else w(o.bias),
        )

    def packed_bias(self, q: Any, k: Any, v: Any, q_weight: Any, kv_weight: Any
                    ) -> np.ndarray | None:
        """The q, k and v biases packed as the weights are (zeros for a missing one)."""
        if q is None and k is None and v is None:
            return None
        rows = (q_weight.shape[0], kv_weight.shape[0], kv_weight.shape[0])
        filled = [w(b)[:, None] if b is not None else np.zeros((n, 1), np.float32)
                  for b, n in zip((q, k, v), rows)]
        return self.pack_qkv(*filled)[:, 0]

    def gate_up(self, layer: int) -> tuple[np.ndarray, np.ndarray | None, Any]:
        """The gate and up projections stacked ([2 * inner, hidden]), their bias, and down."""
        mlp = self.m.layers[layer].mlp
        weight = np.concatenate([w(mlp.gate_proj.weight), w(mlp.up_proj.weight)])
        bias = None if mlp.gate_proj.bias is None else \
            np.concatenate([w(mlp.gate_proj.bias), w(mlp.up_proj.bias)])
        return weight, bias, mlp.down_proj

    def gate(self, x: str) -> str:
        """The activation applied to the gate half."""
        g = self.g
        if self.activation_name() == "silu":
            return g.one("Mul", [x, g.one("Sigmoid", [x])])
        # gelu_pytorch_tanh: FastGelu is the same tanh approximation.
        return g.one("FastGelu", [x], domain="com.microsoft")

    def mlp(self, x: str, layer: int) -> tuple[str, np.ndarray | None]:
        g = self.g
        weight, bias, down = self.gate_up(layer)
        size = weight.shape[0] // 2
        both = self.linear.matmul(g, x, weight, bias=bias, name=f"layers.{layer}.mlp.gate_up")
        split = g.constant(f"layers.{layer}.mlp.split", np.array([size, size], np.int64))
        gate, up = g.op("Split", [both, split], outputs=2, axis=-1)
        h = g.one("Mul", [self.gate(gate), up])
        out = self.linear.matmul(g, h, w(down.weight), name=f"layers.{layer}.mlp.down")
        return out, None if down.bias is None else w(down.bias)


FAMILY = register(Family(name="llama", model_types=("llama",), decoder=LlamaWriter))
