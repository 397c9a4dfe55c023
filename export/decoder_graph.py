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
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgelm.errors import UnsupportedModelError
from edgelm.export.quantize_weights import LinearWriter

if TYPE_CHECKING:  # torch is imported when a graph is written, not when families register
    import torch

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


def np_weight(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


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
class AttentionWeights:
    """Packed QKV and output projection weights, [out, in] like nn.Linear."""

    qkv: np.ndarray
    qkv_bias: np.ndarray | None
    out: np.ndarray
    out_bias: np.ndarray | None


def write_norm(g: GraphWriter, ops: tuple[str, str], x: str, skip: str | None,
               weight: np.ndarray, beta: np.ndarray | None, epsilon: float,
               bias: np.ndarray | None = None) -> tuple[str, str]:
    """Normalize x (+ skip + bias when given) with ops = (plain, with residual); returns
    the output and the residual sum."""
    name = f"norm{len(g.nodes)}"
    params = [g.constant(f"{name}.weight", weight)]
    if beta is not None:
        params.append(g.constant(f"{name}.bias", beta))
    plain, with_skip = ops
    if skip is None:
        return g.one(plain, [x, *params], epsilon=epsilon, axis=-1, stash_type=1), x
    inputs = [x, skip, *params]
    if bias is not None:
        inputs.append(g.constant(f"{name}.skip_bias", bias))
    out, total = f"{name}/out", f"{name}/sum"  # mean and inv_std are not asked for (CUDA)
    g.nodes.append(helper.make_node(with_skip, inputs, [out, "", "", total], name=name,
                                    domain="com.microsoft", epsilon=epsilon))
    return out, total


class DecoderWriter:
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
        self.rotary_dim = self.head_size  # dimensions of a head that rotary turns
        self.vocab = int(config.vocab_size)
        self.layers = int(config.num_hidden_layers)
        if self.num_heads % self.kv_heads:
            raise UnsupportedModelError(
                f"num_attention_heads={self.num_heads} is not a multiple of "
                f"num_key_value_heads={self.kv_heads}")

    # -- family specific ---------------------------------------------------
    NORM_OPS = ("LayerNormalization", "SkipLayerNormalization")  # plain, with residual
    norm_has_beta = True

    def max_positions(self) -> int:
        return int(self.config.max_position_embeddings)

    def attention_weights(self, layer: int) -> AttentionWeights:
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

    def rotary_inputs(self, layer: int) -> list[str]:
        """The cos and sin tables `layer` rotates with (Gemma 3: two bases)."""
        return ["cos_cache", "sin_cache"]

    def rotary_from(self, module: Any, kind: str = "") -> tuple[np.ndarray, np.ndarray]:
        """cos/sin [positions, columns] from a transformers rotary module (its
        `{kind}inv_freq`), computed in float32 exactly as transformers does. Full rotary:
        padded/2 columns (zeros for the padding); partial: rotary_dim/2, which
        GroupQueryAttention's CPU kernel wants a multiple of 8."""
        import torch

        half = self.rotary_dim // 2
        columns = self.padded // 2 if self.halves_apart else half
        if not self.halves_apart and half % 8:
            raise UnsupportedModelError(
                f"partial rotary over {self.rotary_dim} of {self.head_size} dimensions is not "
                "supported: onnxruntime's GroupQueryAttention needs a multiple of 16")
        scaling = float(getattr(module, f"{kind}attention_scaling", 1.0))
        positions = torch.arange(self.max_positions(), dtype=torch.float32)
        angles = torch.outer(positions, getattr(module, f"{kind}inv_freq").float().cpu())
        cos = np.zeros((self.max_positions(), columns), np.float32)
        sin = np.zeros_like(cos)
        cos[:, :half] = np_weight(angles.cos() * scaling)
        sin[:, :half] = np_weight(angles.sin() * scaling)
        return cos, sin

    def embed_scale(self) -> float | None:
        """A factor the token embeddings are multiplied by (Gemma: sqrt(hidden))."""
        return None

    def norm_weight(self, module: Any) -> np.ndarray:
        return np_weight(module.weight)

    def window(self, layer: int) -> int | None:
        """Sliding-window attention: how many tokens (itself included) a token sees."""
        return None

    def attention_scale(self) -> float:
        """What q.k is multiplied by before the softmax."""
        return 1.0 / math.sqrt(self.head_size)

    def attention_softcap(self) -> float | None:
        """Scores capped as cap * tanh(score / cap) (Gemma 2): GroupQueryAttention's own."""
        return None

    def logit_softcap(self) -> float | None:
        """Logits capped as cap * tanh(logit / cap) (Gemma 2)."""
        return None

    # -- shared ------------------------------------------------------------
    def build(self) -> tuple[onnx.ModelProto, DecoderShape]:
        g = self.g
        head = self.model.get_output_embeddings().weight
        table = self.model.get_input_embeddings().weight
        tied = head.data_ptr() == table.data_ptr()
        # A tied table is written once, for the lookup and the output projection.
        shared = self.linear.shared_table(g, "embed_tokens", np_weight(table)) if tied else None
        hidden = self.embed("input_ids", shared, table)
        if (tables := self.rotary_tables()) is not None:
            g.constant("cos_cache", tables[0])
            g.constant("sin_cache", tables[1])
        x, residual = self.norm(hidden, None, self.norms(0)[0])
        for layer in range(self.layers):
            x, residual = self.block(x, residual, layer)
        # Only the asked positions reach the output layer: the last prompt token when
        # generating (a 16-token prompt's logits cost 16x less), every one when scoring.
        at = g.one("Unsqueeze", ["logits_at", g.constant("logits_at.axes",
                                                         np.array([-1], np.int64))])
        x = g.one("GatherND", [x, at], batch_dims=1, name="logits_at.gather")
        if shared is not None:
            logits = self.linear.shared_projection(g, x, shared)
        else:
            logits = self.linear.matmul(g, x, np_weight(head), name="lm_head")
        if (cap := self.logit_softcap()) is not None:
            cap_value = g.constant("logits.softcap", np.array(cap, np.float32))
            logits = g.one("Mul", [g.one("Tanh", [g.one("Div", [logits, cap_value])]),
                                   cap_value], name="logits.capped")
        g.nodes.append(helper.make_node("Cast", [logits], ["logits"], name="logits",
                                        to=TensorProto.FLOAT))  # float32 whatever the weights
        return self._model(), self.shape()

    def block(self, x: str, residual: str, layer: int) -> tuple[str, str]:
        """One layer: x is its first norm's output, residual the stream before it; returns
        the same pair for the next layer (the final norm's after the last)."""
        attn, bias = self.attention(x, layer)
        x, residual = self.norm(attn, residual, self.norms(layer)[1], bias)
        out, bias = self.mlp(x, layer)
        return self.norm(out, residual, self.next_norm(layer), bias)

    def next_norm(self, layer: int) -> Any:
        return self.norms(layer + 1)[0] if layer + 1 < self.layers else self.final_norm()

    @property
    def halves_apart(self) -> bool:
        """Whether a padded head keeps rotary's two halves apart (full rotary); partial
        rotary's pairs sit in the first rotary_dim dimensions, which padding leaves alone."""
        return self.rotary and self.rotary_dim == self.head_size

    def embed(self, ids: str, shared: str | None, table: torch.Tensor) -> str:
        if shared is not None:
            x = self.linear.shared_lookup(self.g, shared, ids)
        else:
            x = self.g.one("Gather", [self.g.constant("embed_tokens", np_weight(table)), ids],
                           name="embed")
        if (scale := self.embed_scale()) is not None:
            factor = self.g.constant("embed.scale", np.array(scale, np.float32))
            x = self.g.one("Mul", [x, factor], name="embed.scaled")
        return x

    def norm(self, x: str, skip: str | None, module: Any, bias: np.ndarray | None = None
             ) -> tuple[str, str]:
        """Normalize x (+ skip + bias when given); returns the output and the residual sum."""
        beta = np_weight(module.bias) if self.norm_has_beta else None
        return write_norm(self.g, self.NORM_OPS, x, skip, self.norm_weight(module), beta,
                          self.epsilon, bias)

    def attention(self, x: str, layer: int) -> tuple[str, np.ndarray | None]:
        """The attention block's output before its bias, and the bias."""
        g, w = self.g, self.attention_weights(layer)
        qkv = self.linear.matmul(g, x, w.qkv, bias=w.qkv_bias, name=f"layers.{layer}.attn.qkv")
        extra = {} if (cap := self.attention_softcap()) is None else {"softcap": cap}
        inputs = [*self.qkv_inputs(qkv, layer), f"past_key_values.{layer}.key",
                  f"past_key_values.{layer}.value", "seqlens_k", "total_sequence_length"]
        if self.rotary:
            inputs += self.rotary_inputs(layer)
        out = f"layers.{layer}.attn/out"
        window = self.window(layer)
        g.nodes.append(helper.make_node(
            "GroupQueryAttention", inputs, [out, f"present.{layer}.key", f"present.{layer}.value"],
            name=f"layers.{layer}.attn", domain="com.microsoft",
            num_heads=self.num_heads, kv_num_heads=self.kv_heads, scale=self.attention_scale(),
            do_rotary=int(self.rotary), rotary_interleaved=0,
            local_window_size=-1 if window is None else window,  # tokens seen, itself included
            **extra))
        return self.linear.matmul(g, out, w.out, name=f"layers.{layer}.attn.out"), w.out_bias

    def qkv_inputs(self, qkv: str, layer: int) -> list[str]:
        """GroupQueryAttention's query, key and value: packed in one by default."""
        return [qkv, "", ""]

    def pack_qkv(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        pad = self.padded, self.halves_apart
        return np.concatenate([
            pad_heads_rows(q, self.num_heads, self.head_size, *pad),
            pad_heads_rows(k, self.kv_heads, self.head_size, *pad),
            pad_heads_rows(v, self.kv_heads, self.head_size, *pad),
        ])

    def pad_out(self, w: np.ndarray) -> np.ndarray:
        """Output projection [hidden, heads*head] -> [hidden, heads*padded]."""
        return pad_heads_rows(w.T, self.num_heads, self.head_size, self.padded,
                              self.halves_apart).T

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


def build_decoder(writer: type[DecoderWriter], model: torch.nn.Module, config: Any,
                  linear: LinearWriter) -> tuple[onnx.ModelProto, DecoderShape]:
    import torch

    with torch.no_grad():
        return writer(model, config, linear).build()
