"""The export layer: checkpoint -> fused, quantized, validated ONNX folder.

The only part of edgelm that imports torch, transformers and onnx tooling. It
is installed with the `export` extra as `edgelm.export`. torch and transformers
are imported when an export starts, not here: `edgelm.export.architectures`
identifies (or refuses) a checkpoint from its config.json alone, at once.
"""

from __future__ import annotations

import importlib.util
import logging as _logging
from typing import Any

from edgelm.errors import MissingDependencyError

for _package in ("torch", "transformers", "onnx"):
    if importlib.util.find_spec(_package) is None:
        raise MissingDependencyError(_package, "export")

for _name in ("onnxruntime.transformers", "fusion_embedlayer", "onnx_model", "fusion_utils"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)
# onnxruntime.quantization advises pre-processing through the root logger on every call.
_logging.getLogger().addFilter(lambda record: "pre-processing" not in record.getMessage())

__all__ = ["ExportOptions", "export_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from edgelm.export import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'edgelm.export' has no attribute {name!r}")
