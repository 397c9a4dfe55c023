"""Encoder-decoder graphs (T5, BART, Marian) written from the checkpoint's weights.

optimum exports these as three float graphs (encoder, decoder, decoder with past)
in which no attention is fused. Here two graphs are written, fused from the start:

    encoder.onnx
        input_ids, attention_mask   int64 [batch, source]
        -> cross.N.key, cross.N.value   [batch, heads, source, head_size]

    The encoder's output goes straight into every decoder layer's cross-attention
    key and value projections (one GEMM for all layers), so those are computed
    once per input and never per token.

    model.onnx (the decoder: its first call and every later step)
        input_ids, position_ids     int64 [batch, seq]
        seqlens_k                   int32 [batch]   tokens in the cache after this call, minus 1
        total_sequence_length       int32 []        the longest of those, plus 1
        encoder_attention_mask      int32 [batch, source]
        cross.N.key/value           (the encoder's outputs)
        past_key_values.N.key/value float [batch, heads, cache, head_size]
        -> logits [batch, seq, vocab], present.N.key/value

Self-attention is GroupQueryAttention over an in-place cache, as for decoders
(decoder_graph.py); cross-attention and the encoder's attention are
MultiHeadAttention with the source's padding mask. T5's relative position bias
is their attention_bias input, looked up from a table over relative distances:
T5's buckets stop changing at max_distance, so a table of 2 * max_distance + 1
rows gives the bias of any distance exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgelm.errors import UnsupportedModelError
from edgelm.export.decoder_graph import (
    DecoderShape,
    GraphWriter,
    _finish,
    float_type,
    np_weight,
    pad_heads_rows,
    padded_size,
    write_norm,
)
from edgelm.export.quantize_weights import LinearWriter

if TYPE_CHECKING:
    import torch

# Activation name (config) -> how it is written
_ACTIVATIONS = ("relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "swish", "silu")

Sublayer = tuple[Callable[[str], tuple[str, np.ndarray | None]], Any]  # (write, its norm)


@dataclass(frozen=True, kw_only=True)
class Seq2SeqShape:
    """What the runtime needs beyond the decoder's shape; stored in the manifest."""

    decoder: DecoderShape
    cross_heads: int
    cross_head_size: int  # as stored in cross.N.key/value (not padded)
    max_source_positions: int
    decoder_start_token_id: int


@dataclass(frozen=True)
class Projections:
    """An attention block's q, k, v and output weights [out, in] and biases."""

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    o: np.ndarray
    q_bias: np.ndarray | None = None
    k_bias: np.ndarray | None = None
    v_bias: np.ndarray | None = None
    o_bias: np.ndarray | None = None


def linear_parts(q: Any, k: Any, v: Any, o: Any) -> Projections:
    def bias(m: Any) -> np.ndarray | None:
        return None if getattr(m, "bias", None) is None else np_weight(m.bias)

    return Projections(np_weight(q.weight), np_weight(k.weight), np_weight(v.weight),
                       np_weight(o.weight), bias(q), bias(k), bias(v), bias(o))


class Seq2SeqWriter:
    """Writes both graphs of one family; BART's layout by default (post-norm, learned
    or sinusoidal positions, biases), T5 overrides what differs."""

    pre_norm = False  # norm before each sublayer (T5) or after its residual sum (BART)
    NORM_OPS = ("LayerNormalization", "SkipLayerNormalization")
    norm_has_beta = True
    position_offset = 0  # BART's learned positions start at row 2

    def __init__(self, model: torch.nn.Module, config: Any, linear: LinearWriter) -> None:
        self.model, self.config, self.linear = model, config, linear
        self.g = GraphWriter(linear.dtype)
        self.hidden = int(config.d_model)
        self.vocab = int(config.vocab_size)
        self.epsilon = 1e-5
        self.enc_heads = int(self.heads("encoder"))
        self.dec_heads = int(self.heads("decoder"))
        self.enc_head_size = self.head_size("encoder")
        self.dec_head_size = self.head_size("decoder")
        self.padded = padded_size(self.dec_head_size)
        act = self.activation()
        if act not in _ACTIVATIONS:
            raise UnsupportedModelError(f"{config.model_type} activation {act!r} is not "
                                        f"supported; supported: {', '.join(_ACTIVATIONS)}")

    # -- family specific (BART's) --------------------------------------------
    def heads(self, side: str) -> int:
        return int(getattr(self.config, f"{side}_attention_heads"))

    def head_size(self, side: str) -> int:
        return self.hidden // self.heads(side)

    def activation(self) -> str:
        return str(self.config.activation_function)

    def stack(self, side: str) -> Any:
        return getattr(self.model.model, side)

    def layers(self, side: str) -> list[Any]:
        return list(self.stack(side).layers)

    def max_source_positions(self) -> int:
        return int(self.config.max_position_embeddings)

    def max_target_positions(self) -> int:
        return int(self.config.max_position_embeddings)

    def embed_scale(self) -> float | None:
        return math.sqrt(self.hidden) if getattr(self.config, "scale_embedding", False) else None

    def position_table(self, side: str) -> np.ndarray | None:
        return np_weight(self.stack(side).embed_positions.weight)

    def embedding_norm(self, side: str) -> Any:
        return getattr(self.stack(side), "layernorm_embedding", None)

    def final_norm(self, side: str) -> Any:
        return None

    def self_attention(self, layer: Any) -> Projections:
        a = layer.self_attn
        return linear_parts(a.q_proj, a.k_proj, a.v_proj, a.out_proj)

    def cross_attention(self, layer: Any) -> Projections:
        a = layer.encoder_attn
        return linear_parts(a.q_proj, a.k_proj, a.v_proj, a.out_proj)

    def sublayer_norms(self, layer: Any, side: str) -> list[Any]:
        """The norms of a layer's sublayers in order: attention, (cross,) feed-forward."""
        cross = [layer.encoder_attn_layer_norm] if side == "decoder" else []
        return [layer.self_attn_layer_norm, *cross, layer.final_layer_norm]

    def feed_forward(self, x: str, layer: Any, name: str) -> tuple[str, np.ndarray | None]:
        h = self.linear.matmul(self.g, x, np_weight(layer.fc1.weight),
                               bias=np_weight(layer.fc1.bias), name=f"{name}.fc1")
        out = self.linear.matmul(self.g, self.act(h), np_weight(layer.fc2.weight),
                                 name=f"{name}.fc2")
        return out, np_weight(layer.fc2.bias)

    def attention_scale(self, head_size: int) -> float:
        return 1.0 / math.sqrt(head_size)

    def bias_table(self, side: str) -> np.ndarray | None:
        """T5: [2 * max_distance + 1, heads], the bias of relative distance d at row
        d + max_distance (clipped to the table)."""
        return None

    def logits_bias(self) -> np.ndarray | None:
        bias = getattr(self.model, "final_logits_bias", None)
        return None if bias is None else np_weight(bias).reshape(-1)

    def output_scale(self) -> float | None:
        return None

    def decoder_start_token_id(self) -> int:
        start = self.config.decoder_start_token_id
        if start is None:
            raise UnsupportedModelError("config.json has no decoder_start_token_id")
        return int(start)

    # -- shared ----------------------------------------------------------------
    def act(self, x: str) -> str:
        g, name = self.g, self.activation()
        if name == "relu":
            return g.one("Relu", [x])
        if name == "gelu":
            return g.one("Gelu", [x], domain="com.microsoft")
        if name in ("swish", "silu"):
            return g.one("Mul", [x, g.one("Sigmoid", [x])])
        return g.one("FastGelu", [x], domain="com.microsoft")  # the tanh approximations

    def norm(self, x: str, skip: str | None, module: Any, bias: np.ndarray | None = None
             ) -> tuple[str, str]:
        beta = np_weight(module.bias) if self.norm_has_beta else None
        return write_norm(self.g, self.NORM_OPS, x, skip, np_weight(module.weight), beta,
                          self.epsilon, bias)

    def build(self) -> tuple[onnx.ModelProto, onnx.ModelProto, Seq2SeqShape]:
        import torch

        with torch.no_grad():
            encoder = self.build_encoder()
            self.g = GraphWriter(self.linear.dtype)
            decoder = self.build_decoder()
        return encoder, decoder, self.shape()

    def run_stack(self, hidden: str, sublayers: list[Sublayer], final: Any) -> str:
        """The residual stream through the sublayers, pre- or post-norm."""
        if not self.pre_norm:
            for write, norm in sublayers:
                out, bias = write(hidden)
                hidden, _ = self.norm(out, hidden, norm, bias)
            return hidden if final is None else self.norm(hidden, None, final)[0]
        x, residual = self.norm(hidden, None, sublayers[0][1])
        for i, (write, _) in enumerate(sublayers):
            out, bias = write(x)
            after = sublayers[i + 1][1] if i + 1 < len(sublayers) else final
            x, residual = self.norm(out, residual, after, bias)
        return x

    def embed(self, side: str, ids: str, positions: str | None, table: tuple[str, bool]
              ) -> str:
        """Token embeddings (scaled) plus position embeddings: rows `positions` of the
        table, or (positions None: the encoder) its first rows, one per source token."""
        g = self.g
        x = self.linear.shared_lookup(g, table[0], ids) if table[1] else \
            g.one("Gather", [table[0], ids])
        if (scale := self.embed_scale()) is not None:
            x = g.one("Mul", [x, g.constant(f"{side}.embed.scale",
                                            np.array(scale, np.float32))])
        if (positions_table := self.position_table(side)) is not None:
            rows = g.constant(f"{side}.embed_positions", positions_table)
            if positions is None:  # a Slice: onnxruntime rewrites Gather(Range) wrongly
                offset = g.constant(f"{side}.positions.offset",
                                    np.array([self.position_offset], np.int64))
                end = g.one("Add", [g.one("Shape", [ids], start=1, end=2), offset])
                x = g.one("Add", [x, g.one("Slice", [rows, offset, end])])
            else:
                if self.position_offset:
                    positions = g.one("Add", [positions, g.constant(
                        f"{side}.positions.offset", np.array(self.position_offset, np.int64))])
                x = g.one("Add", [x, g.one("Gather", [rows, positions])])
        if (norm := self.embedding_norm(side)) is not None:
            x = self.norm(x, None, norm)[0]
        return x

    def token_table(self, side: str) -> tuple[str, bool]:
        """The embedding table of `side` in the current graph, and whether it is stored as
        the output projection (when the checkpoint ties them: then in the projection's
        layout and precision, read by the lookup). A table both stacks share has the same
        name and bytes in both graphs, and the export stores it once."""
        table = self.stack(side).embed_tokens.weight
        if table.data_ptr() == self.model.get_output_embeddings().weight.data_ptr():
            return self.linear.shared_table(self.g, "embed_tokens", np_weight(table)), True
        other = self.stack("decoder" if side == "encoder" else "encoder").embed_tokens.weight
        name = "embed_tokens" if other.data_ptr() == table.data_ptr() else f"{side}.embed_tokens"
        return self.g.constant(name, np_weight(table)), False

    def position_bias(self, side: str, table: np.ndarray, query: str, keys: str) -> str:
        """attention_bias [batch or 1, heads, queries, keys] from positions."""
        g = self.g
        reach = (table.shape[0] - 1) // 2
        rows = g.constant(f"{side}.relative_bias", table)
        lo = g.constant(f"{side}.relative_bias.lo", np.array(-reach, np.int64))
        hi = g.constant(f"{side}.relative_bias.hi", np.array(reach, np.int64))
        distance = g.one("Sub", [keys, query])  # key position - query position
        index = g.one("Add", [g.one("Clip", [distance, lo, hi]), hi])
        bias = g.one("Gather", [rows, index])  # [..., queries, keys, heads]
        return g.one("Transpose", [bias], perm=[0, 3, 1, 2])

    def mha(self, name: str, q: str, k: str, v: str, mask: str, bias: str | None,
            heads: int, head_size: int) -> str:
        out = f"{name}/out"
        self.g.nodes.append(helper.make_node(
            "MultiHeadAttention", [q, k, v, "", mask, bias or ""], [out], name=name,
            domain="com.microsoft", num_heads=heads,
            scale=self.attention_scale(head_size)))
        return out

    # -- the encoder -------------------------------------------------------------
    def build_encoder(self) -> onnx.ModelProto:
        g = self.g
        hidden = self.embed("encoder", "input_ids", None, self.token_table("encoder"))
        mask = g.one("Cast", ["attention_mask"], to=TensorProto.INT32)
        bias = None
        if (table := self.bias_table("encoder")) is not None:  # queries [1, source, 1]
            length = g.one("Squeeze", [g.one("Shape", ["input_ids"], start=1, end=2)])
            positions = g.one("Range", [g.constant("zero", np.array(0, np.int64)), length,
                                        g.constant("step", np.array(1, np.int64))])
            query = g.one("Unsqueeze", [positions, g.constant("axes.0.2",
                                                              np.array([0, 2], np.int64))])
            bias = self.position_bias("encoder", table, query, positions)  # [1, heads, q, k]
        sublayers: list[Sublayer] = []
        for i, layer in enumerate(self.layers("encoder")):
            norms = self.sublayer_norms(layer, "encoder")
            sublayers += [(self._encoder_attention(layer, i, mask, bias), norms[0]),
                          (self._feed_forward(layer, f"encoder.{i}"), norms[1])]
        hidden = self.run_stack(hidden, sublayers, self.final_norm("encoder"))
        outputs = self._cross_projections(hidden)
        f, i64 = float_type(g.dtype), TensorProto.INT64
        inputs = [helper.make_tensor_value_info(n, i64, ["batch", "source"])
                  for n in ("input_ids", "attention_mask")]
        cross = ["batch", self.dec_heads, "source", self.dec_head_size]
        graph = helper.make_graph(g.nodes, "encoder", inputs,
                                  [helper.make_tensor_value_info(n, f, cross) for n in outputs],
                                  initializer=g.initializers)
        return _finish(graph)

    def _encoder_attention(self, layer: Any, i: int, mask: str, bias: str | None
                           ) -> Callable[[str], tuple[str, np.ndarray | None]]:
        def write(x: str) -> tuple[str, np.ndarray | None]:
            p, name = self.self_attention(layer), f"encoder.{i}.attn"
            qkv = self.linear.matmul(self.g, x, np.concatenate([p.q, p.k, p.v]),
                                     bias=_cat(p.q_bias, p.k_bias, p.v_bias, p.q.shape[0]),
                                     name=f"{name}.qkv")
            size = self.g.constant(f"{name}.split", np.array([p.q.shape[0]] * 3, np.int64))
            q, k, v = self.g.op("Split", [qkv, size], outputs=3, axis=-1)
            out = self.mha(name, q, k, v, mask, bias, self.enc_heads, self.enc_head_size)
            return self.linear.matmul(self.g, out, p.o, name=f"{name}.out"), p.o_bias
        return write

    def _feed_forward(self, layer: Any, name: str
                      ) -> Callable[[str], tuple[str, np.ndarray | None]]:
        return lambda x: self.feed_forward(x, layer, name)

    def _cross_projections(self, hidden: str) -> list[str]:
        """Every decoder layer's cross keys and values from the encoder's output: one GEMM,
        then [batch, source, 2 * layers, heads, size] -> 2 * layers outputs."""
        g = self.g
        parts = [self.cross_attention(layer) for layer in self.layers("decoder")]
        weight = np.concatenate([w for p in parts for w in (p.k, p.v)])
        biases = [b for p in parts for b in (p.k_bias, p.v_bias)]
        bias = None if all(b is None for b in biases) else np.concatenate(
            [b if b is not None else np.zeros(self.hidden, np.float32) for b in biases])
        kv = self.linear.matmul(g, hidden, weight, bias=bias, name="cross.kv")
        count = 2 * len(parts)
        split = g.one("Reshape", [kv, g.constant("cross.shape", np.array(
            [0, 0, count, self.dec_heads, self.dec_head_size], np.int64))])
        stacked = g.one("Transpose", [split], perm=[2, 0, 3, 1, 4])
        names = [f"cross.{layer}.{kind}" for layer in range(len(parts))
                 for kind in ("key", "value")]
        pieces = g.op("Split", [stacked], outputs=count, axis=0) if count > 1 else [stacked]
        axes = g.constant("cross.axes", np.array([0], np.int64))
        for piece, name in zip(pieces, names):
            g.nodes.append(helper.make_node("Squeeze", [piece, axes], [name], name=name))
        return names

    # -- the decoder ---------------------------------------------------------------
    def build_decoder(self) -> onnx.ModelProto:
        g = self.g
        tokens = self.token_table("decoder")
        hidden = self.embed("decoder", "input_ids", "position_ids", tokens)
        bias = None
        if (table := self.bias_table("decoder")) is not None:
            total = g.one("Cast", ["total_sequence_length"], to=TensorProto.INT64)
            keys = g.one("Range", [g.constant("zero", np.array(0, np.int64)), total,
                                   g.constant("step", np.array(1, np.int64))])
            query = g.one("Unsqueeze", ["position_ids", g.constant("axes.-1",
                                                                   np.array([-1], np.int64))])
            bias = self.position_bias("decoder", table, query, keys)  # [batch, heads, q, k]
        sublayers: list[Sublayer] = []
        for i, layer in enumerate(self.layers("decoder")):
            norms = self.sublayer_norms(layer, "decoder")
            sublayers += [(self._self_attention(layer, i, bias), norms[0]),
                          (self._cross_attention(layer, i), norms[1]),
                          (self._feed_forward(layer, f"decoder.{i}"), norms[2])]
        x = self.run_stack(hidden, sublayers, self.final_norm("decoder"))
        if (scale := self.output_scale()) is not None:
            x = g.one("Mul", [x, g.constant("output.scale", np.array(scale, np.float32))])
        if tokens[1]:
            logits = self.linear.shared_projection(g, x, tokens[0])
        else:
            head = np_weight(self.model.get_output_embeddings().weight)
            logits = self.linear.matmul(g, x, head, name="lm_head")
        if (extra := self.logits_bias()) is not None and np.any(extra):
            logits = g.one("Add", [logits, g.constant("final_logits_bias", extra)])
        g.nodes.append(helper.make_node("Cast", [logits], ["logits"], name="logits",
                                        to=TensorProto.FLOAT))
        return self._decoder_model()

    def _self_attention(self, layer: Any, i: int, bias: str | None
                        ) -> Callable[[str], tuple[str, np.ndarray | None]]:
        def write(x: str) -> tuple[str, np.ndarray | None]:
            p, name, g = self.self_attention(layer), f"decoder.{i}.self_attn", self.g
            heads, size = self.dec_heads, self.dec_head_size

            def pad(rows: np.ndarray) -> np.ndarray:
                return pad_heads_rows(rows, heads, size, self.padded, False)

            qkv = np.concatenate([pad(p.q), pad(p.k), pad(p.v)])
            packed_bias = _cat(p.q_bias, p.k_bias, p.v_bias, p.q.shape[0])
            if packed_bias is not None:  # padded per head, as the weights' rows
                packed_bias = np.concatenate([pad(b) for b in np.split(packed_bias, 3)])
            qkv_out = self.linear.matmul(g, x, qkv, bias=packed_bias, name=f"{name}.qkv")
            out = f"{name}/out"
            inputs = [qkv_out, "", "", f"past_key_values.{i}.key", f"past_key_values.{i}.value",
                      "seqlens_k", "total_sequence_length"]
            if bias is not None:
                inputs += ["", "", "", bias]
            g.nodes.append(helper.make_node(
                "GroupQueryAttention", inputs, [out, f"present.{i}.key", f"present.{i}.value"],
                name=name, domain="com.microsoft", num_heads=heads, kv_num_heads=heads,
                scale=self.attention_scale(size), do_rotary=0))
            o = pad_heads_rows(p.o.T, heads, size, self.padded, False).T
            return self.linear.matmul(g, out, o, name=f"{name}.out"), p.o_bias
        return write

    def _cross_attention(self, layer: Any, i: int
                         ) -> Callable[[str], tuple[str, np.ndarray | None]]:
        def write(x: str) -> tuple[str, np.ndarray | None]:
            p, name = self.cross_attention(layer), f"decoder.{i}.cross_attn"
            q = self.linear.matmul(self.g, x, p.q, bias=p.q_bias, name=f"{name}.q")
            out = self.mha(name, q, f"cross.{i}.key", f"cross.{i}.value",
                           "encoder_attention_mask", None, self.dec_heads, self.dec_head_size)
            return self.linear.matmul(self.g, out, p.o, name=f"{name}.out"), p.o_bias
        return write

    def _decoder_model(self) -> onnx.ModelProto:
        f, i64, i32 = float_type(self.g.dtype), TensorProto.INT64, TensorProto.INT32
        layers = len(self.layers("decoder"))
        vi = helper.make_tensor_value_info
        inputs = [vi("input_ids", i64, ["batch", "sequence"]),
                  vi("position_ids", i64, ["batch", "sequence"]),
                  vi("seqlens_k", i32, ["batch"]),
                  vi("total_sequence_length", i32, []),
                  vi("encoder_attention_mask", i32, ["batch", "source"])]
        outputs = [vi("logits", TensorProto.FLOAT, ["batch", "sequence", self.vocab])]
        cache = ["batch", self.dec_heads, "past_sequence_length", self.padded]
        present = ["batch", self.dec_heads, "total_sequence_length", self.padded]
        cross = ["batch", self.dec_heads, "source", self.dec_head_size]
        for layer in range(layers):
            for kind in ("key", "value"):
                inputs.append(vi(f"cross.{layer}.{kind}", f, cross))
                inputs.append(vi(f"past_key_values.{layer}.{kind}", f, cache))
                outputs.append(vi(f"present.{layer}.{kind}", f, present))
        graph = helper.make_graph(self.g.nodes, "decoder", inputs, outputs,
                                  initializer=self.g.initializers)
        return _finish(graph)

    def shape(self) -> Seq2SeqShape:
        decoder = DecoderShape(
            num_layers=len(self.layers("decoder")), num_heads=self.dec_heads,
            kv_heads=self.dec_heads, head_size=self.padded, hidden_size=self.hidden,
            vocab_size=self.vocab, max_positions=self.max_target_positions(),
            position_ids=True)
        return Seq2SeqShape(decoder=decoder, cross_heads=self.dec_heads,
                            cross_head_size=self.dec_head_size,
                            max_source_positions=self.max_source_positions(),
                            decoder_start_token_id=self.decoder_start_token_id())


def _cat(q: np.ndarray | None, k: np.ndarray | None, v: np.ndarray | None, size: int
         ) -> np.ndarray | None:
    """q, k and v biases end to end (zeros for a missing one), or None when all are."""
    if q is None and k is None and v is None:
        return None
    return np.concatenate([b if b is not None else np.zeros(size, np.float32)
                           for b in (q, k, v)])


def build_seq2seq(writer: type[Seq2SeqWriter], model: torch.nn.Module, config: Any,
                  linear: LinearWriter) -> tuple[onnx.ModelProto, onnx.ModelProto, Seq2SeqShape]:
    return writer(model, config, linear).build()
