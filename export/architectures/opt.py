"""OPT: GPT-2's pre-norm layout with separate q/k/v projections, ReLU, and learned
positions stored two rows after the start of their table."""

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

POSITION_OFFSET = 2  # OPTLearnedPositionalEmbedding: row p + 2 holds position p


class OPTWriter(DecoderWriter):
    def __init__(self, model: torch.nn.Module, config: Any, linear: LinearWriter) -> None:
        super().__init__(model, config, linear)
        self.d: Any = model.model.decoder
        self.head_size = self.hidden // self.num_heads
        if not config.do_layer_norm_before or self.d.project_in is not None:
            raise UnsupportedModelError(
                "OPT with post-layer norms or a projected embedding (opt-350m) is not "
                "supported; supported: the pre-norm OPT shapes (125m, 1.3b and larger)")
        if config.activation_function != "relu":
            raise UnsupportedModelError(
                f"OPT activation {config.activation_function!r} is not supported; "
                "supported: relu")

    def embed(self, ids: str, shared: str | None, table: torch.Tensor) -> str:
        tokens = super().embed(ids, shared, table)
        rows = w(self.d.embed_positions.weight)[POSITION_OFFSET:]
        positions = self.g.one("Gather", [self.g.constant("embed_positions", rows),
                                          "position_ids"])
        return self.g.one("Add", [tokens, positions], name="embed.positions")

    def max_positions(self) -> int:
        return int(self.config.max_position_embeddings)

    def norms(self, layer: int) -> tuple[Any, Any]:
        block = self.d.layers[layer]
        return block.self_attn_layer_norm, block.final_layer_norm

    def final_norm(self) -> Any:
        return self.d.final_layer_norm

    def attention_weights(self, layer: int) -> AttentionWeights:
        attn = self.d.layers[layer].self_attn
        q, k, v = attn.q_proj, attn.k_proj, attn.v_proj
        bias = self.pack_qkv(w(q.bias)[:, None], w(k.bias)[:, None], w(v.bias)[:, None])[:, 0]
        return AttentionWeights(
            qkv=self.pack_qkv(w(q.weight), w(k.weight), w(v.weight)), qkv_bias=bias,
            out=self.pad_out(w(attn.out_proj.weight)), out_bias=w(attn.out_proj.bias))

    def mlp(self, x: str, layer: int) -> tuple[str, np.ndarray | None]:
        g, block = self.g, self.d.layers[layer]
        up = self.linear.matmul(g, x, w(block.fc1.weight), bias=w(block.fc1.bias),
                                name=f"layers.{layer}.mlp.up")
        down = self.linear.matmul(g, g.one("Relu", [up]), w(block.fc2.weight),
                                  name=f"layers.{layer}.mlp.down")
        return down, w(block.fc2.bias)


FAMILY = register(Family(name="opt", model_types=("opt",), decoder=OPTWriter))
