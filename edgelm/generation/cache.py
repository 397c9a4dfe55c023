"""The KV cache: one preallocated buffer per layer and kind, never copied per token.

Each buffer is [rows, kv_heads, capacity, head_size], bound with IO binding as
both the graph's past input and its present output: GroupQueryAttention writes
each new token's keys in place. On CPU the buffers are numpy arrays and beam
search moves rows in numpy; on CUDA they live on the device and a small gather
graph written by the export (`cache_reorder.onnx`) moves rows there, so the
cache never crosses to the host.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgelm.errors import ConfigError
from edgelm.manifest import DecoderInfo


def buffer_names(info: DecoderInfo) -> list[str]:
    return [f"{layer}.{kind}" for layer in range(info.num_layers) for kind in ("key", "value")]


class HostCache:
    """Buffers in host memory (CPU execution)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        self.values = {name: ort.OrtValue.ortvalue_from_numpy(a) for name, a in arrays.items()}
        self.capacity = next(iter(arrays.values())).shape[2]

    @classmethod
    def zeros(cls, info: DecoderInfo, rows: int, capacity: int, dtype: type[np.floating]
              ) -> HostCache:
        shape = (rows, info.kv_heads, capacity, info.head_size)
        return cls({name: np.zeros(shape, dtype=dtype) for name in buffer_names(info)})

    def select(self, rows: np.ndarray) -> HostCache:
        """A cache whose row i is this cache's row rows[i] (beam expansion)."""
        return HostCache({name: np.ascontiguousarray(a[rows]) for name, a in self.arrays.items()})

    def reorder(self, rows: np.ndarray) -> None:
        """Row i becomes row rows[i], in place (the buffers stay bound); callers skip the
        identity."""
        for a in self.arrays.values():
            a[:] = a[rows]

    def head(self, rows: int) -> HostCache:
        """A cache over this one's first `rows` rows, sharing its memory (no copy): a
        running batch lives in the head of buffers sized for the largest batch."""
        return HostCache({name: a[:rows] for name, a in self.arrays.items()})

    def put(self, row: int, source: HostCache, source_row: int, length: int) -> None:
        """Copy the first `length` positions of `source`'s row `source_row` into `row`
        (a request joining a running batch, or a row moving to fill a hole)."""
        if length > self.capacity:
            raise ConfigError(f"a row of {length} tokens does not fit a cache of "
                              f"{self.capacity}")
        for name, a in self.arrays.items():
            a[row, :, :length] = source.arrays[name][source_row, :, :length]


class RowGather:
    """Runs the export's cache_reorder graph on the GPU."""

    def __init__(self, path: Path) -> None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(path), options, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])

    def __call__(self, source: dict[str, ort.OrtValue], rows: np.ndarray,
                 target: dict[str, ort.OrtValue]) -> None:
        io = self.session.io_binding()
        io.bind_cpu_input("rows", rows.astype(np.int64))
        for name, value in source.items():
            io.bind_ortvalue_input(f"cache.{name}", value)
            io.bind_ortvalue_output(f"reordered.{name}", target[name])
        self.session.run_with_iobinding(io)


class DeviceCache:
    """Buffers in CUDA memory; rows move with a gather on the device."""

    def __init__(self, values: dict[str, ort.OrtValue], gather: RowGather) -> None:
        self.values, self.gather = values, gather
        first = next(iter(values.values()))
        self.shape = tuple(first.shape())
        self.dtype = np.float16 if first.data_type() == "tensor(float16)" else np.float32
        self.capacity = self.shape[2]
        self._spare: dict[str, ort.OrtValue] | None = None  # reorder's double buffer

    @classmethod
    def zeros(cls, info: DecoderInfo, rows: int, capacity: int, dtype: type[np.floating],
              gather: RowGather) -> DeviceCache:
        zeros = np.zeros((rows, info.kv_heads, capacity, info.head_size), dtype=dtype)
        return cls({name: ort.OrtValue.ortvalue_from_numpy(zeros, "cuda", 0)
                    for name in buffer_names(info)}, gather)

    def _empty(self, rows: int) -> dict[str, ort.OrtValue]:
        shape = [rows, *self.shape[1:]]
        return {name: ort.OrtValue.ortvalue_from_shape_and_type(shape, self.dtype, "cuda", 0)
                for name in self.values}

    def select(self, rows: np.ndarray) -> DeviceCache:
        target = self._empty(len(rows))
        self.gather(self.values, rows, target)
        return DeviceCache(target, self.gather)

    def reorder(self, rows: np.ndarray) -> None:
        """Row i becomes row rows[i]: gathered into the spare buffers, which are swapped in."""
        if self._spare is None:
            self._spare = self._empty(self.shape[0])
        self.gather(self.values, rows, self._spare)
        self.values, self._spare = self._spare, self.values


KVCache = HostCache | DeviceCache
