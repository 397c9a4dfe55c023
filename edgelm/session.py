"""onnxruntime sessions: device resolution, threads, and clear load errors."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterator

import onnxruntime as ort

from edgelm import packed_cache
from edgelm.errors import (
    ConfigError,
    EdgeLMError,
    ModelFolderError,
    ProviderUnavailableError,
    first_line,
)
from edgelm.limits import LIMITS
from edgelm.types import Device

log = logging.getLogger(__name__)

_PROVIDERS = {Device.CPU: "CPUExecutionProvider", Device.CUDA: "CUDAExecutionProvider"}

# onnxruntime would fuse the exported Add + LayerNormalization back into
# SkipLayerNormalization at load, and Add + Gelu into BiasGelu, whose CPU kernels are
# slower than the ops they replace (export/optimize.py).
CPU_DISABLED_FUSIONS = ["SkipLayerNormFusion", "BiasGeluFusion"]


def resolve_device(device: str | Device) -> Device:
    """'auto' becomes cuda when its provider is usable, else cpu."""
    device = Device.parse(device)
    available = ort.get_available_providers()
    if device is Device.AUTO:
        chosen = Device.CUDA if _PROVIDERS[Device.CUDA] in available else Device.CPU
        log.debug("device auto -> %s (providers: %s)", chosen.value, available)
        return chosen
    if device is Device.CUDA and _PROVIDERS[Device.CUDA] not in available:
        raise ProviderUnavailableError(
            f"device 'cuda' needs onnxruntime's CUDAExecutionProvider, found only {available}; "
            "install the gpu extra: pip uninstall -y onnxruntime && pip install 'edgelm[gpu]'"
        )
    return device


def check_threads(threads: Any) -> None:
    """None (all cores) or a count from 1 to the cap (LIMITS.thread_cap())."""
    cap = LIMITS.thread_cap()
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= cap:
        raise ConfigError(
            f"threads={threads!r} must be an integer from 1 to {cap} "
            f"({LIMITS.threads_per_core} per core of this machine's {os.cpu_count()} cores, at "
            f"most {LIMITS.max_threads}); leave it out to use all cores")


def create_session(
    model_path: Path, *, device: Device, threads: int | None = None,
    packed_identity: str | None = None, model_bytes: int = 0,
) -> ort.InferenceSession:
    """An InferenceSession on `device` with explicit thread counts.

    The path must be one edgelm.folder.ModelFolder.graph checked (the exporter's own
    graphs aside): onnxruntime opens it and its external data as they are.
    packed_identity: on CPU, load through the packed-weights cache (edgelm.packed_cache)
    under this identity of the folder's verified files; model_bytes, the size of the
    graph and its data, bounds the disk an entry may take.
    """
    check_threads(threads)
    disabled = CPU_DISABLED_FUSIONS if device is Device.CPU else []

    def open_session(path: Path, save_to: Path | None) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors reach the user as ModelFolderError/EdgeLMError
        # Parse it as ONNX whatever its bytes say: edgelm checked it as an ONNX protobuf.
        options.add_session_config_entry("session.load_model_format", "ONNX")
        if threads is not None:
            options.intra_op_num_threads = threads
        if save_to is not None:
            options.optimized_model_filepath = str(save_to)
            for key, value in packed_cache.SAVE_CONFIG.items():
                options.add_session_config_entry(key, value)
        providers = [_PROVIDERS[device]]
        if device is Device.CUDA:
            _preload_cuda_libraries()
            providers.append(_PROVIDERS[Device.CPU])
        return ort.InferenceSession(str(path), options, providers=providers,
                                    disabled_optimizers=disabled)

    if packed_identity is not None and device is Device.CPU:
        entry = packed_cache.entry_for(packed_identity, disabled)
        if entry is not None:
            session = packed_cache.open_packed(entry, model_path, model_bytes, open_session)
            if session is not None:
                return session
    try:
        return open_session(model_path, None)
    except Exception as e:  # onnxruntime raises bare RuntimeError subclasses
        raise ModelFolderError(
            f"onnxruntime cannot load {model_path} ({first_line(e, 200)}); export the model again"
        ) from e


@contextlib.contextmanager
def running(model: Path | str) -> Iterator[None]:
    """onnxruntime's errors while running `model`, as one line.

    Wraps only the session call: a graph that does not match its manifest or its inputs
    (out-of-range ids, wrong shapes) and allocation failures end up here.
    """
    try:
        yield
    except EdgeLMError:
        raise
    except MemoryError as e:
        raise ConfigError(f"out of memory running {model}; pass fewer or shorter texts, or "
                          "a smaller batch_size") from e
    except Exception as e:  # onnxruntime's own exception classes derive from Exception
        if "alloc" in str(e).lower():
            size = re.search(r"buffer of size (\d+)", str(e))
            asked = f"a node asked for {int(size.group(1)) / 2**30:.1f} GiB" if size \
                else first_line(e, 200)
            raise ConfigError(f"onnxruntime ran out of memory running {model} ({asked}); pass "
                              "fewer or shorter texts, or a smaller batch_size") from e
        raise ModelFolderError(f"onnxruntime failed running {model} ({first_line(e, 200)}); "
                               "the graph does not match its manifest: export the model "
                               "again") from e


@contextlib.contextmanager
def memory_errors(what: str) -> Iterator[None]:
    """A MemoryError (numpy's, or onnxruntime's turned into one) as a one-line ConfigError."""
    try:
        yield
    except MemoryError as e:
        raise ConfigError(f"out of memory {what}; ask for less (fewer or shorter texts, "
                          "fewer beams or sequences, fewer new tokens)") from e


@functools.cache
def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from their pip packages (nvidia-*), so torch is not needed."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as e:  # a system CUDA install still works without the pip packages
        log.debug("onnxruntime.preload_dlls: %s", e)
