"""Drives the decoder graph: prefill, steps, and a KV cache that is never copied.

The cache (see cache.py) is sized to the request (longest prompt +
max_new_tokens). Rows are right-padded, so row b's tokens sit at positions
0..length[b]-1 of its cache and no attention mask is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from edgelm.errors import ConfigError
from edgelm.generation.cache import DeviceCache, HostCache, KVCache, RowGather
from edgelm.manifest import DecoderInfo
from edgelm.session import running


@dataclass
class DecodeState:
    """One request's decoding state: its cache and each row's token count."""

    cache: KVCache
    lengths: np.ndarray  # int32 [rows]: tokens in the cache
    # Per-row inputs that never change while decoding (an encoder-decoder's cross-attention
    # keys and values and source mask): fed on every call, rows selected with the cache.
    memory: dict[str, np.ndarray] = field(default_factory=dict)
    # The session's binding of the cache's buffers, made at the first call and kept while
    # they stay the same (a GPU cache swaps its buffers when it reorders rows): binding
    # the 2 x layers buffers anew took ~0.4 ms of SmolLM2's ~7.7 ms step.
    _binding: tuple[dict[str, ort.OrtValue], ort.IOBinding] | None = field(
        default=None, init=False, repr=False, compare=False)

    def bound_to(self, session: ort.InferenceSession) -> ort.IOBinding:
        """An IOBinding of `session` with this state's cache bound as past and present."""
        values = self.cache.values
        if self._binding is None or self._binding[0] is not values:
            io = session.io_binding()
            io.bind_output("logits")  # first: get_outputs() keeps the binding order
            for name, value in values.items():
                io.bind_ortvalue_input(f"past_key_values.{name}", value)
                io.bind_ortvalue_output(f"present.{name}", value)
            self._binding = (values, io)
        return self._binding[1]

    def select(self, rows: np.ndarray) -> DecodeState:
        """The state whose row i is this state's row rows[i] (beam expansion)."""
        return DecodeState(self.cache.select(rows), self.lengths[rows],
                           {k: v[rows] for k, v in self.memory.items()})


class DecoderRunner:
    """Runs prefill and single-token steps of one decoder session."""

    def __init__(self, session: ort.InferenceSession, info: DecoderInfo) -> None:
        self.session, self.info = session, info
        self.gather: RowGather | None = None  # set: the cache lives on the session's GPU
        self.memory: dict[str, np.ndarray] = {}  # per-row inputs of every prefill (seq2seq)
        inputs = {i.name: i.type for i in session.get_inputs()}
        self._logits_at = "logits_at" in inputs  # folders exported before it compute all
        self.dtype = np.float16 if inputs["past_key_values.0.key"] == "tensor(float16)" \
            else np.float32
        logits = next(o for o in session.get_outputs() if o.name == "logits")
        vocab = logits.shape[-1] if logits.shape else None
        # Logits are written into an array made here when their shape is known up front
        # (logits_at, float32, a fixed vocabulary): reading them back through get_outputs()
        # wraps every output, the cache's too, and took ~0.23 ms of SmolLM2's ~7 ms step.
        self._logits_vocab = vocab if self._logits_at and isinstance(vocab, int) and \
            logits.type == "tensor(float)" else None

    def check_memory(self, rows: int, capacity: int) -> None:
        """Refuse a request whose cache and logits could not fit in this machine's memory
        (or the process's address-space limit), before anything is allocated."""
        info, itemsize = self.info, np.dtype(self.dtype).itemsize
        cache = rows * capacity * info.num_layers * 2 * info.kv_heads * info.head_size * itemsize
        copies = 8 + (0 if self._logits_at else capacity)  # per step; all positions without
        need = cache + rows * info.vocab_size * 4 * copies  # logits_at's gather
        have = memory_bytes()
        if have is not None and need > have:
            raise ConfigError(
                f"{rows} sequences of up to {capacity} tokens need about {need / 2**30:.1f} GiB "
                f"for the cache and logits, more than the {have / 2**30:.1f} GiB this process "
                "may use; lower num_beams, num_return_sequences, max_new_tokens or the number "
                "of prompts")

    def new_cache(self, rows: int, capacity: int) -> KVCache:
        if self.gather is not None:
            return DeviceCache.zeros(self.info, rows, capacity, self.dtype, self.gather)
        return HostCache.zeros(self.info, rows, capacity, self.dtype)

    def prefill(self, prompts: list[list[int]], capacity: int, *, pad_id: int = 0,
                every_position: bool = False) -> tuple[np.ndarray, DecodeState]:
        """Right-padded prompts through the graph, and the state after them.

        Logits [rows, vocab] at each row's last token; with every_position, [rows, width,
        vocab] (scoring, validation).
        """
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
        state = DecodeState(cache=self.new_cache(len(prompts), capacity), lengths=lengths,
                            memory=self.memory)
        positions = np.broadcast_to(np.arange(width, dtype=np.int64), ids.shape)
        at = positions if every_position else (lengths - 1).astype(np.int64)[:, None]
        logits = self._run(state, ids, positions, lengths - 1, width, at)
        return (logits if every_position else logits[:, 0]), state

    def step(self, state: DecodeState, tokens: np.ndarray) -> np.ndarray:
        """Logits [rows, vocab] after appending one token to each row."""
        if int(state.lengths.max()) >= state.cache.capacity:
            raise ConfigError(f"the cache holds {state.cache.capacity} tokens and is full")
        ids = tokens.astype(np.int64).reshape(-1, 1)
        positions = state.lengths.astype(np.int64).reshape(-1, 1)
        logits = self._run(state, ids, positions, state.lengths, int(state.lengths.max()) + 1,
                           np.zeros((len(ids), 1), np.int64))
        state.lengths = state.lengths + 1
        return logits[:, 0]

    def _run(self, state: DecodeState, ids: np.ndarray, positions: np.ndarray,
             seqlens_k: np.ndarray, total: int, at: np.ndarray) -> np.ndarray:
        """Logits [rows, len(at[0]), vocab] at positions `at` of this call."""
        io = state.bound_to(self.session)
        io.bind_cpu_input("input_ids", ids)
        if self.info.position_ids:
            io.bind_cpu_input("position_ids", np.ascontiguousarray(positions))
        io.bind_cpu_input("seqlens_k", seqlens_k.astype(np.int32))
        io.bind_cpu_input("total_sequence_length", np.array(total, dtype=np.int32))
        if self._logits_at:
            io.bind_cpu_input("logits_at", np.ascontiguousarray(at))
        for name, array in state.memory.items():
            io.bind_cpu_input(name, array)
        # a new array each call: the caller keeps the last one
        vocab = self._logits_vocab if self.gather is None else None  # on the GPU: its own
        if vocab is not None:
            logits = np.empty((len(ids), at.shape[1], vocab), np.float32)
            io.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(logits))
        else:
            io.bind_output("logits")
        with running("the decoder graph"):
            self.session.run_with_iobinding(io)
        if vocab is not None:
            return logits
        logits = io.get_outputs()[0].numpy()
        every = np.arange(logits.shape[1])
        if not self._logits_at and not (at.shape[1] == len(every) and (at == every).all()):
            # every position computed (encoder-decoders; decoders exported before
            # logits_at): keep those asked for, unless that is all of them (a step)
            logits = np.take_along_axis(logits, at[:, :, None], axis=1)
        return logits


def memory_bytes() -> int | None:
    """Physical memory, or the address-space limit when lower; None when unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return total
    return total if soft == resource.RLIM_INFINITY else min(total, soft)
