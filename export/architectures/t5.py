"""T5, T5 v1.1 and Flan-T5: pre-norm RMS layers without biases, relative position
bias from the first layer of each stack shared by all, unscaled attention; v1.1 has
a gated GELU feed-forward and an untied head."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelm.export.architectures.registry import Family, register
from edgelm.export.decoder_graph import np_weight
from edgelm.export.seq2seq_graph import Projections, Seq2SeqWriter, linear_parts

DEFAULT_POSITIONS = 512  # T5 has no position limit; what it was trained with


class T5Writer(Seq2SeqWriter):
    pre_norm = True
    NORM_OPS = ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")
    norm_has_beta = False

    def __init__(self, model: Any, config: Any, linear: Any) -> None:
        super().__init__(model, config, linear)
        self.epsilon = float(config.layer_norm_epsilon)

    def head_size(self, side: str) -> int:
        return int(self.config.d_kv)  # heads * d_kv may differ from d_model

    def heads(self, side: str) -> int:
        return int(self.config.num_heads)

    def activation(self) -> str:
        return str(self.config.dense_act_fn)

    def stack(self, side: str) -> Any:
        return getattr(self.model, side)

    def layers(self, side: str) -> list[Any]:
        return list(self.stack(side).block)

    def max_source_positions(self) -> int:
        return int(getattr(self.config, "n_positions", None) or DEFAULT_POSITIONS)

    max_target_positions = max_source_positions

    def embed_scale(self) -> float | None:
        return None

    def position_table(self, side: str) -> np.ndarray | None:
        return None

    def embedding_norm(self, side: str) -> Any:
        return None

    def final_norm(self, side: str) -> Any:
        return self.stack(side).final_layer_norm

    def self_attention(self, layer: Any) -> Projections:
        a = layer.layer[0].SelfAttention
        return linear_parts(a.q, a.k, a.v, a.o)

    def cross_attention(self, layer: Any) -> Projections:
        a = layer.layer[1].EncDecAttention
        return linear_parts(a.q, a.k, a.v, a.o)

    def sublayer_norms(self, layer: Any, side: str) -> list[Any]:
        return [sub.layer_norm for sub in layer.layer]

    def feed_forward(self, x: str, layer: Any, name: str) -> tuple[str, np.ndarray | None]:
        ff, g = layer.layer[-1].DenseReluDense, self.g
        if hasattr(ff, "wi_0"):  # gated: act(wi_0 x) * wi_1 x
            both = self.linear.matmul(g, x, np.concatenate([np_weight(ff.wi_0.weight),
                                                           np_weight(ff.wi_1.weight)]),
                                      name=f"{name}.wi")
            size = g.constant(f"{name}.split", np.array([ff.wi_0.weight.shape[0]] * 2, np.int64))
            gate, up = g.op("Split", [both, size], outputs=2, axis=-1)
            h = g.one("Mul", [self.act(gate), up])
        else:
            h = self.act(self.linear.matmul(g, x, np_weight(ff.wi.weight), name=f"{name}.wi"))
        return self.linear.matmul(g, h, np_weight(ff.wo.weight), name=f"{name}.wo"), None

    def attention_scale(self, head_size: int) -> float:
        return 1.0  # T5 folds the scale into its initialization

    def bias_table(self, side: str) -> np.ndarray | None:
        import torch

        attention = self.layers(side)[0].layer[0].SelfAttention
        reach = int(self.config.relative_attention_max_distance)
        distance = torch.arange(-reach, reach + 1)
        buckets = attention._relative_position_bucket(
            distance, bidirectional=side == "encoder",
            num_buckets=int(self.config.relative_attention_num_buckets), max_distance=reach)
        return np_weight(attention.relative_attention_bias(buckets))  # [2 * reach + 1, heads]

    def logits_bias(self) -> np.ndarray | None:
        return None

    def output_scale(self) -> float | None:
        scale = getattr(self.config, "scale_decoder_outputs", None)
        if scale is None:
            scale = getattr(self.config, "tie_word_embeddings", True)
        return self.hidden ** -0.5 if scale else None


FAMILY = register(Family(name="t5", model_types=("t5",), seq2seq=T5Writer))
