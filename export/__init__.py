"""The export layer: checkpoint -> fused, quantized, validated ONNX folder.

The only part of edgelm that imports torch, transformers and onnx tooling. It
is installed with the `export` extra as `edgelm.export`.
"""

from __future__ import annotations

import importlib.util

from edgelm.errors import MissingDependencyError

for _package in ("torch", "transformers", "onnx"):
    if importlib.util.find_spec(_package) is None:
        raise MissingDependencyError(_package, "export")

import logging as _logging  # noqa: E402

import transformers as _transformers  # noqa: E402

_transformers.utils.logging.disable_progress_bar()
_transformers.utils.logging.set_verbosity_error()
for _name in ("onnxruntime.transformers", "fusion_embedlayer", "onnx_model", "fusion_utils"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)
# onnxruntime.quantization advises pre-processing through the root logger on every call.
_logging.getLogger().addFilter(lambda record: "pre-processing" not in record.getMessage())

from edgelm.export.pipeline import ExportOptions, export_model  # noqa: E402

__all__ = ["ExportOptions", "export_model"]
