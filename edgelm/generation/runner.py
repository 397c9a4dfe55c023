"""Drives the decoder graph: prefill, steps, and a KV cache that is never copied.

The cache is one preallocated buffer per layer and kind, sized to the request
(longest prompt + max_new_tokens), bound with IO binding as both the graph's
past input and its present output: GroupQueryAttention writes each new token's
keys in place. Rows are right-padded, so row b's tokens sit at positions
0..length[b]-1 of its cache and no attention mask is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from edgelm.errors import ConfigError
from edgelm.manifest import DecoderInfo


class KVCache:
    """Per-layer key and value buffers [rows, kv_heads, capacity, head_size]."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        self.values = {name: ort.OrtValue.ortvalue_from_numpy(a) for name, a in arrays.items()}
        self.capacity = next(iter(arrays.values())).shape[2]

    @classmethod
    def zeros(cls, info: DecoderInfo, rows: int, capacity: int) -> KVCache:
        shape = (rows, info.kv_heads, capacity, info.head_size)
        return cls({f"{layer}.{kind}": np.zeros(shape, dtype=np.float32)
                    for layer in range(info.num_layers) for kind in ("key", "value")})

    def select(self, rows: np.ndarray) -> KVCache:
        """A cache whose row i is this cache's row rows[i] (beam expansion)."""
        return KVCache({name: np.ascontiguousarray(a[rows]) for name, a in self.arrays.items()})

    def reorder(self, rows: np.ndarray) -> None:
        """Row i becomes row rows[i], in place (the buffers stay bound)."""
        if np.array_equal(rows, np.arange(len(rows))):
            return
        for a in self.arrays.values():
            a[:] = a[rows]


@dataclass
class DecodeState:
    """One request's decoding state: its cache and each row's token count."""

    cache: KVCache
    lengths: np.ndarray  # int32 [rows]: tokens in the cache


class DecoderRunner:
    """Runs prefill and single-token steps of one decoder session."""

    def __init__(self, session: ort.InferenceSession, info: DecoderInfo) -> None:
        self.session, self.info = session, info
        self._inputs = {i.name for i in session.get_inputs()}

    def prefill(self, prompts: list[list[int]], capacity: int, *, pad_id: int = 0
                ) -> tuple[np.ndarray, DecodeState]:
        """Logits [rows, width, vocab] for right-padded prompts, and the state after them."""
        if any(not p for p in prompts):
            raise ConfigError("a prompt encodes to no tokens; pass non-empty text")
        width = max(len(p) for p in prompts)
        if capacity > self.info.max_positions:
            raise ConfigError(
                f"prompt ({width} tokens) + max_new_tokens needs {capacity} positions; "
                f"the model has {self.info.max_positions}: shorten the prompt or max_new_tokens")
        ids = np.full((len(prompts), width), pad_id, dtype=np.int64)
        for row, p in enumerate(prompts):
            ids[row, : len(p)] = p
        lengths = np.array([len(p) for p in prompts], dtype=np.int32)
        state = DecodeState(cache=KVCache.zeros(self.info, len(prompts), capacity), lengths=lengths)
        positions = np.broadcast_to(np.arange(width, dtype=np.int64), ids.shape)
        logits = self._run(state, ids, positions, lengths - 1, width)
        return logits, state

    def step(self, state: DecodeState, tokens: np.ndarray) -> np.ndarray:
        """Logits [rows, vocab] after appending one token to each row."""
        if int(state.lengths.max()) >= state.cache.capacity:
            raise ConfigError(f"the cache holds {state.cache.capacity} tokens and is full")
        ids = tokens.astype(np.int64).reshape(-1, 1)
        positions = state.lengths.astype(np.int64).reshape(-1, 1)
        logits = self._run(state, ids, positions, state.lengths, int(state.lengths.max()) + 1)
        state.lengths = state.lengths + 1
        return logits[:, -1]

    def _run(self, state: DecodeState, ids: np.ndarray, positions: np.ndarray,
             seqlens_k: np.ndarray, total: int) -> np.ndarray:
        io = self.session.io_binding()
        io.bind_cpu_input("input_ids", ids)
        if "position_ids" in self._inputs:
            io.bind_cpu_input("position_ids", np.ascontiguousarray(positions))
        io.bind_cpu_input("seqlens_k", seqlens_k.astype(np.int32))
        io.bind_cpu_input("total_sequence_length", np.array(total, dtype=np.int32))
        io.bind_output("logits")  # first: get_outputs() keeps the binding order
        for name, value in state.cache.values.items():
            io.bind_ortvalue_input(f"past_key_values.{name}", value)
            io.bind_ortvalue_output(f"present.{name}", value)
        self.session.run_with_iobinding(io)
        return io.get_outputs()[0].numpy()
