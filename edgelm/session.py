"""onnxruntime sessions: device resolution, threads, and clear load errors."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import onnxruntime as ort

from edgelm.errors import ConfigError, ModelFolderError, ProviderUnavailableError, first_line
from edgelm.types import Device

log = logging.getLogger(__name__)

_PROVIDERS = {Device.CPU: "CPUExecutionProvider", Device.CUDA: "CUDAExecutionProvider"}

# onnxruntime would fuse the exported Add + LayerNormalization back into
# SkipLayerNormalization at load, whose CPU kernel is ~3x slower (export/optimize.py).
CPU_DISABLED_FUSIONS = ["SkipLayerNormFusion"]


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


def create_session(
    model_path: Path, *, device: Device, threads: int | None = None
) -> ort.InferenceSession:
    """An InferenceSession on `device` with explicit thread counts."""
    if threads is not None and threads < 1:
        raise ConfigError(f"threads={threads} must be >= 1 (or None for all cores)")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors reach the user as ModelFolderError/EdgeLMError
    if threads is not None:
        options.intra_op_num_threads = threads
    providers = [_PROVIDERS[device]]
    if device is Device.CUDA:
        _preload_cuda_libraries()
        providers.append(_PROVIDERS[Device.CPU])
    try:
        disabled = CPU_DISABLED_FUSIONS if device is Device.CPU else []
        return ort.InferenceSession(str(model_path), options, providers=providers,
                                    disabled_optimizers=disabled)
    except Exception as e:  # onnxruntime raises bare RuntimeError subclasses
        raise ModelFolderError(
            f"onnxruntime cannot load {model_path} ({first_line(e, 200)}); export the model again"
        ) from e


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
