"""Decoder graphs written from the checkpoint's weights, fused from the start.

torch.onnx and optimum give decoder graphs in which onnxruntime's optimizer
fuses no attention (GPT-2, Llama). Here the graph is written directly, the way
onnxruntime-genai's builder does, with one com.microsoft GroupQueryAttention
node per layer (rotary inside it for Llama), SkipLayerNormalization /
SkipSimplifiedLayerNormalization on the residual stream and one packed QKV
projection. The export is then validated against the PyTorch model.

One graph serves the prompt and every step. Its inputs:

    input_ids               int64 [batch, seq]
    position_ids            int64 [batch, seq]   (learned positions only: GPT-2)
    seqlens_k               int32 [batch]        tokens in the cache after this call, minus 1
    total_sequence_length   int32 []             the longest of those, plus 1
    logits_at               int64 [batch, k]     positions (in this call) whose logits to output
    past_key_values.N.key   float [batch, kv_heads, cache, head_size]  (and .value)

Prompts are right-padded: each row's cache holds its own tokens from position 0,
so attention never reads padding and no mask is needed. The present outputs can
be bound to the past buffers (IO binding) so nothing is copied per token.

GroupQueryAttention on CPU needs head sizes that are multiples of 16. Other
head sizes are zero-padded in the weights (and the rotary pairs kept together),
which leaves the result unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from edgelm.errors import UnsupportedModelError
from edgelm.export.quantize_weights import LinearWriter

OPSET = 17
IR_VERSION = 10  # onnxruntime 1.20+ reads it
HEAD_MULTIPLE = 16  # GroupQueryAttention's CPU kernel
MAX_ROTARY_POSITIONS = 16384  # cos/sin tables beyond this cost more than they serve


@dataclass(frozen=True, kw_only=True)
class DecoderShape:
    """What the runtime needs to drive the graph; stored in the manifest."""

    num_layers: int
    num_heads: int
    kv_heads: int
    head_size: int  # as stored in the cache (padded to a multiple of 16)
    hidden_size: int
    vocab_size: int
    max_positions: int
    position_ids: bool  # whether the graph takes position_ids


class GraphWriter:
    """Nodes and initializers, with unique names; float constants stored as `dtype`."""

    def __init__(self, dtype: type[np.floating] = np.float32) -> None:
        self.dtype = dtype
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def constant(self, name: str, array: np.ndarray) -> str:
        if array.dtype == np.float32:
            array = array.astype(self.dtype)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], *, outputs: int = 1, domain: str = "",
           name: str | None = None, **attrs: Any) -> list[str]:
        self._count += 1
        base = name or f"{op_type}_{self._count}"
        names = [f"{base}/out{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=base, domain=domain,
                                           **attrs))
        return names

    def one(self, op_type: str, inputs: list[str], **kwargs: Any) -> str:
        return self.op(op_type, inputs, **kwargs)[0]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy()


def padded_size(head_size: int) -> int:
    return -(-head_size // HEAD_MULTIPLE) * HEAD_MULTIPLE


def head_slots(head_size: int, padded: int, rotary: bool) -> np.ndarray:
    """Where each real dimension of a head goes in the padded head.

    Rotary rotates dimension i with i + size/2, so both halves move together.
    """
    if not rotary:
        return np.arange(head_size)
    half = head_size // 2
    return np.concatenate([np.arange(half), padded // 2 + np.arange(half)])


def pad_heads_rows(w: np.ndarray, heads: int, head_size: int, padded: int,
                   rotary: bool) -> np.ndarray:
    """w [heads*head_size, ...] -> [heads*padded, ...], zeros in the padding."""
    if padded == head_size:
        return w
    out = np.zeros((heads, padded, *w.shape[1:]), dtype=w.dtype)
    out[:, head_slots(head_size, padded, rotary)] = w.reshape(heads, head_size, *w.shape[1:])
    return out.reshape(heads * padded, *w.shape[1:])


@dataclass(frozen=True)
class _Attention:
    """Packed QKV and output projection weights, [out, in] like nn.Linear."""

    qkv: np.ndarray
    qkv_bias: np.ndarray | None
    out: np.ndarray
    out_bias: np.ndarray | None


class DecoderBuilder:
    """Writes the graph of one decoder family; subclasses read its weights."""

    rotary = False
    epsilon = 1e-5

    def __init__(self, model: torch.nn.Module, config: Any, linear: LinearWriter) -> None:
        self.model, self.config, self.linear = model, config, linear
        self.g = GraphWriter(linear.dtype)
        self.num_heads = int(config.num_attention_heads)
        self.kv_heads = int(getattr(config, "num_key_value_heads", None) or self.num_heads)
        self.hidden = int(config.hidden_size)
        self.head_size = int(getattr(config, "head_dim", None) or self.hidden // self.num_heads)
        self.padded = padded_size(self.head_size)
        self.vocab = int(config.vocab_size)
        self.layers = int(config.num_hidden_layers)
        self._norm_count = 0
        if self.num_heads % self.kv_heads:
            raise UnsupportedModelError(
                f"num_attention_heads={self.num_heads} is not a multiple of "
                f"num_key_value_heads={self.kv_heads}")

    # -- family specific ---------------------------------------------------
    NORM_OPS = ("LayerNormalization", "SkipLayerNormalization")  # plain, with residual
    norm_has_beta = True

    def max_positions(self) -> int:
        return int(self.config.max_position_embeddings)

    def attention_weights(self, layer: int) -> _Attention:
        raise NotImplementedError

    def mlp(self, x: str, layer: int) -> tuple[str, np.ndarray | None]:
        """The MLP's output before its bias, and the bias (added by the next norm)."""
        raise NotImplementedError

    def norms(self, layer: int) -> tuple[Any, Any]:
        """The norm modules before attention and before the MLP of `layer`."""
        raise NotImplementedError

    def final_norm(self) -> Any:
        raise NotImplementedError

    def rotary_tables(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None

    # -- shared ------------------------------------------------------------
    def build(self) -> tuple[onnx.ModelProto, DecoderShape]:
        g = self.g
        head = self.model.get_output_embeddings().weight
        table = self.model.get_input_embeddings().weight
        tied = head.data_ptr() == table.data_ptr()
        # A tied table is written once, for the lookup and the output projection.
        shared = self.linear.shared_table(g, "embed_tokens", _np(table)) if tied else None
        hidden = self.embed("input_ids", shared, table)
        if (tables := self.rotary_tables()) is not None:
            g.constant("cos_cache", tables[0])
            g.constant("sin_cache", tables[1])
        x, residual = self.norm(hidden, None, self.norms(0)[0])
        for layer in range(self.layers):
            attn, bias = self.attention(x, layer)
            x, residual = self.norm(attn, residual, self.norms(layer)[1], bias)
            out, bias = self.mlp(x, layer)
            following = self.norms(layer + 1)[0] if layer + 1 < self.layers \
                else self.final_norm()
            x, residual = self.norm(out, residual, following, bias)
        # Only the asked positions reach the output layer: the last prompt token when
        # generating (a 16-token prompt's logits cost 16x less), every one when scoring.
        at = g.one("Unsqueeze", ["logits_at", g.constant("logits_at.axes",
                                                         np.array([-1], np.int64))])
        x = g.one("GatherND", [x, at], batch_dims=1, name="logits_at.gather")
        if shared is not None:
            logits = self.linear.shared_projection(g, x, shared)
        else:
            logits = self.linear.matmul(g, x, _np(head), name="lm_head")
        g.nodes.append(helper.make_node("Cast", [logits], ["logits"], name="logits",
                                        to=TensorProto.FLOAT))  # float32 whatever the weights
        return self._model(), self.shape()

    def embed(self, ids: str, shared: str | None, table: torch.Tensor) -> str:
        if shared is not None:
            return self.linear.shared_lookup(self.g, shared, ids)
        return self.g.one("Gather", [self.g.constant("embed_tokens", _np(table)), ids],
                          name="embed")

    def norm(self, x: str, skip: str | None, module: Any, bias: np.ndarray | None = None
             ) -> tuple[str, str]:
        """Normalize x (+ skip + bias when given); returns the output and the residual sum."""
        g = self.g
        self._norm_count += 1
        name = f"norm{self._norm_count}"
        params = [g.constant(f"{name}.weight", _np(module.weight))]
        if self.norm_has_beta:
            params.append(g.constant(f"{name}.bias", _np(module.bias)))
        plain, with_skip = self.NORM_OPS
        if skip is None:
            return g.one(plain, [x, *params], epsilon=self.epsilon, axis=-1, stash_type=1), x
        inputs = [x, skip, *params]
        if bias is not None:
            inputs.append(g.constant(f"{name}.skip_bias", bias))
        out, total = f"{name}/out", f"{name}/sum"  # mean and inv_std are not asked for (CUDA)
        g.nodes.append(helper.make_node(with_skip, inputs, [out, "", "", total], name=name,
                                        domain="com.microsoft", epsilon=self.epsilon))
        return out, total

    def attention(self, x: str, layer: int) -> tuple[str, np.ndarray | None]:
        """The attention block's output before its bias, and the bias."""
        g, w = self.g, self.attention_weights(layer)
        qkv = self.linear.matmul(g, x, w.qkv, bias=w.qkv_bias, name=f"layers.{layer}.attn.qkv")
        scale = 1.0 / math.sqrt(self.head_size) if self.scaled() else 1.0
        inputs = [qkv, "", "", f"past_key_values.{layer}.key", f"past_key_values.{layer}.value",
                  "seqlens_k", "total_sequence_length"]
        if self.rotary:
            inputs += ["cos_cache", "sin_cache"]
        out = f"layers.{layer}.attn/out"
        g.nodes.append(helper.make_node(
            "GroupQueryAttention", inputs, [out, f"present.{layer}.key", f"present.{layer}.value"],
            name=f"layers.{layer}.attn", domain="com.microsoft",
            num_heads=self.num_heads, kv_num_heads=self.kv_heads, scale=scale,
            do_rotary=int(self.rotary), rotary_interleaved=0,
        ))
        return self.linear.matmul(g, out, w.out, name=f"layers.{layer}.attn.out"), w.out_bias

    def scaled(self) -> bool:
        return True

    def pack_qkv(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        pad = self.padded, self.rotary
        return np.concatenate([
            pad_heads_rows(q, self.num_heads, self.head_size, *pad),
            pad_heads_rows(k, self.kv_heads, self.head_size, *pad),
            pad_heads_rows(v, self.kv_heads, self.head_size, *pad),
        ])

    def pad_out(self, w: np.ndarray) -> np.ndarray:
        """Output projection [hidden, heads*head] -> [hidden, heads*padded]."""
        return pad_heads_rows(w.T, self.num_heads, self.head_size, self.padded, self.rotary).T

    def shape(self) -> DecoderShape:
        return DecoderShape(
            num_layers=self.layers, num_heads=self.num_heads, kv_heads=self.kv_heads,
            head_size=self.padded, hidden_size=self.hidden, vocab_size=self.vocab,
            max_positions=self.max_positions(), position_ids=not self.rotary,
        )

    def _model(self) -> onnx.ModelProto:
        f, i64, i32 = float_type(self.g.dtype), TensorProto.INT64, TensorProto.INT32
        cache = ["batch", self.kv_heads, "past_sequence_length", self.padded]
        inputs = [helper.make_tensor_value_info("input_ids", i64, ["batch", "sequence"])]
        if not self.rotary:
            inputs.append(helper.make_tensor_value_info("position_ids", i64,
                                                        ["batch", "sequence"]))
        inputs += [helper.make_tensor_value_info("seqlens_k", i32, ["batch"]),
                   helper.make_tensor_value_info("total_sequence_length", i32, []),
                   helper.make_tensor_value_info("logits_at", i64, ["batch", "positions"])]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                 ["batch", "positions", self.vocab])]
        present = ["batch", self.kv_heads, "total_sequence_length", self.padded]
        for layer in range(self.layers):
            for kind in ("key", "value"):
                inputs.append(helper.make_tensor_value_info(
                    f"past_key_values.{layer}.{kind}", f, cache))
                outputs.append(helper.make_tensor_value_info(f"present.{layer}.{kind}", f,
                                                             present))
        graph = helper.make_graph(self.g.nodes, "decoder", inputs, outputs,
                                  initializer=self.g.initializers)
        return _finish(graph)


def float_type(dtype: type[np.floating]) -> int:
    return TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = IR_VERSION  # a newer onnx package writes more than onnxruntime reads
    model.producer_name = "edgelm"
    return model


def build_cache_reorder(shape: DecoderShape, dtype: type[np.floating]) -> onnx.ModelProto:
    """A graph that gathers every cache buffer's rows: beam search on the GPU.

    Inputs `rows` int64 [n] and `cache.N.key/value`; outputs `reordered.N.key/value`,
    row i of each being the input's row rows[i]. On CPU the runtime does this in numpy.
    """
    f = float_type(dtype)
    dims = ["rows", shape.kv_heads, "capacity", shape.head_size]
    out_dims = ["n", shape.kv_heads, "capacity", shape.head_size]
    inputs = [helper.make_tensor_value_info("rows", TensorProto.INT64, ["n"])]
    outputs, nodes = [], []
    for layer in range(shape.num_layers):
        for kind in ("key", "value"):
            name = f"{layer}.{kind}"
            inputs.append(helper.make_tensor_value_info(f"cache.{name}", f, dims))
            outputs.append(helper.make_tensor_value_info(f"reordered.{name}", f, out_dims))
            nodes.append(helper.make_node("Gather", [f"cache.{name}", "rows"],
                                          [f"reordered.{name}"], name=f"gather.{name}", axis=0))
    return _finish(helper.make_graph(nodes, "cache_reorder", inputs, outputs))


class GPT2Builder(DecoderBuilder):
    """GPT2LMHeadModel: learned positions, LayerNorm, Conv1D ([in, out]) weights."""

    _ACTIVATIONS = {"gelu_new": "FastGelu", "gelu_pytorch_tanh": "FastGelu",
                    "gelu_fast": "FastGelu", "gelu": "BiasGelu"}

    def __init__(self, model: torch.nn.Module, config: Any, linear: LinearWriter) -> None:
        super().__init__(model, config, linear)
        self.t = model.transformer
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

    def scaled(self) -> bool:
        return bool(getattr(self.config, "scale_attn_weights", True))

    def embed(self, ids: str, shared: str | None, table: torch.Tensor) -> str:
        tokens = super().embed(ids, shared, table)
        positions = self.g.one("Gather", [self.g.constant("wpe", _np(self.t.wpe.weight)),
                                          "position_ids"])
        return self.g.one("Add", [tokens, positions], name="embed.positions")

    def norms(self, layer: int) -> tuple[Any, Any]:
        block = self.t.h[layer]
        return block.ln_1, block.ln_2

    def final_norm(self) -> Any:
        return self.t.ln_f

    def attention_weights(self, layer: int) -> _Attention:
        attn = self.t.h[layer].attn
        w, b = _np(attn.c_attn.weight).T, _np(attn.c_attn.bias)  # Conv1D: [in, out]
        q, k, v = np.split(w, 3)
        qb, kb, vb = np.split(b, 3)
        bias = self.pack_qkv(qb[:, None], kb[:, None], vb[:, None])[:, 0]
        return _Attention(qkv=self.pack_qkv(q, k, v), qkv_bias=bias,
                          out=self.pad_out(_np(attn.c_proj.weight).T),
                          out_bias=_np(attn.c_proj.bias))

    def mlp(self, x: str, layer: int) -> tuple[str, np.ndarray | None]:
        g, mlp = self.g, self.t.h[layer].mlp
        up = self.linear.matmul(g, x, _np(mlp.c_fc.weight).T, name=f"layers.{layer}.mlp.up")
        bias = g.constant(f"layers.{layer}.mlp.up.bias", _np(mlp.c_fc.bias))
        act = self._ACTIVATIONS[self.config.activation_function]
        h = g.one(act, [up, bias], domain="com.microsoft")
        down = self.linear.matmul(g, h, _np(mlp.c_proj.weight).T, name=f"layers.{layer}.mlp.down")
        return down, _np(mlp.c_proj.bias)


class LlamaBuilder(DecoderBuilder):
    """LlamaForCausalLM: rotary positions, RMSNorm, grouped-query attention, SwiGLU."""

    rotary = True
    NORM_OPS = ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")
    norm_has_beta = False

    def __init__(self, model: torch.nn.Module, config: Any, linear: LinearWriter) -> None:
        super().__init__(model, config, linear)
        self.m = model.model
        self.epsilon = float(config.rms_norm_eps)
        if config.hidden_act != "silu":
            raise UnsupportedModelError(
                f"Llama activation {config.hidden_act!r} is not supported; supported: silu")
        if self.head_size % 2:
            raise UnsupportedModelError(f"rotary needs an even head size, got {self.head_size}")

    def max_positions(self) -> int:
        return min(int(self.config.max_position_embeddings), MAX_ROTARY_POSITIONS)

    def rotary_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """cos/sin [positions, padded/2], computed in float32 exactly as transformers does."""
        rotary = self.m.rotary_emb
        scaling = float(getattr(rotary, "attention_scaling", 1.0))
        positions = torch.arange(self.max_positions(), dtype=torch.float32)
        angles = torch.outer(positions, rotary.inv_freq.float().cpu())
        cos = np.zeros((self.max_positions(), self.padded // 2), np.float32)
        sin = np.zeros_like(cos)
        cos[:, : self.head_size // 2] = _np(angles.cos() * scaling)
        sin[:, : self.head_size // 2] = _np(angles.sin() * scaling)
        return cos, sin

    def norms(self, layer: int) -> tuple[Any, Any]:
        block = self.m.layers[layer]
        return block.input_layernorm, block.post_attention_layernorm

    def final_norm(self) -> Any:
        return self.m.norm

    def attention_weights(self, layer: int) -> _Attention:
        attn = self.m.layers[layer].self_attn

        def bias(linear: Any) -> np.ndarray | None:
            return None if linear.bias is None else _np(linear.bias)[:, None]

        biases = [bias(attn.q_proj), bias(attn.k_proj), bias(attn.v_proj)]
        qkv_bias = None
        if any(b is not None for b in biases):
            filled = [b if b is not None else np.zeros((p.weight.shape[0], 1), np.float32)
                      for b, p in zip(biases, (attn.q_proj, attn.k_proj, attn.v_proj))]
            qkv_bias = self.pack_qkv(*filled)[:, 0]
        return _Attention(
            qkv=self.pack_qkv(_np(attn.q_proj.weight), _np(attn.k_proj.weight),
                              _np(attn.v_proj.weight)),
            qkv_bias=qkv_bias, out=self.pad_out(_np(attn.o_proj.weight)),
            out_bias=None if attn.o_proj.bias is None else _np(attn.o_proj.bias),
        )

    def mlp(self, x: str, layer: int) -> tuple[str, np.ndarray | None]:
        g, mlp = self.g, self.m.layers[layer].mlp
        size = mlp.gate_proj.weight.shape[0]
        gate_up = np.concatenate([_np(mlp.gate_proj.weight), _np(mlp.up_proj.weight)])
        has_bias = mlp.gate_proj.bias is not None
        gu_bias = np.concatenate([_np(mlp.gate_proj.bias), _np(mlp.up_proj.bias)]) \
            if has_bias else None
        both = self.linear.matmul(g, x, gate_up, bias=gu_bias, name=f"layers.{layer}.mlp.gate_up")
        split = g.constant(f"layers.{layer}.mlp.split", np.array([size, size], np.int64))
        gate, up = g.op("Split", [both, split], outputs=2, axis=-1)
        silu = g.one("Mul", [gate, g.one("Sigmoid", [gate])])
        h = g.one("Mul", [silu, up])
        down = self.linear.matmul(g, h, _np(mlp.down_proj.weight), name=f"layers.{layer}.mlp.down")
        return down, None if mlp.down_proj.bias is None else _np(mlp.down_proj.bias)


BUILDERS: dict[str, Callable[..., DecoderBuilder]] = {
    "gpt2": GPT2Builder,
    "llama": LlamaBuilder,
}


def build_decoder(model: torch.nn.Module, config: Any, linear: LinearWriter
                  ) -> tuple[onnx.ModelProto, DecoderShape]:
    builder = BUILDERS[config.model_type](model, config, linear)
    with torch.no_grad():
        return builder.build()
