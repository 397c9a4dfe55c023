"""`--target mobile`: the ORT-format model and the operators a reduced build needs.

What onnxruntime's converter (onnxruntime.tools.convert_onnx_models_to_ort,
"Fixed" style, ARM target) does, with edgelm's own session choices: the graph
is optimized at every level now, so the phone has nothing left to do at load,
and saved as `model.ort`; `required_operators.config` lists its operators, the
file onnxruntime's build.py takes as --include_ops_by_config for a reduced-size
build. The converter itself offers no way to keep an optimizer off, and its
SkipLayerNormFusion would bring back the slow CPU SkipLayerNormalization
(edgelm.session). The prebuilt onnxruntime-android / onnxruntime-objc packages
are full builds and run every operator listed.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from edgelm.errors import ExportError
from edgelm.session import CPU_DISABLED_FUSIONS

ORT_FILE = "model.ort"
OPERATORS_FILE = "required_operators.config"
# Layout-specific for x86 (the converter leaves it off for ARM too).
_NOT_FOR_ARM = ["NchwcTransformer"]


def write_ort(model: Path, staging: Path) -> list[str]:
    """model.ort and required_operators.config into staging; the operators, as 'domain;op'."""
    import onnxruntime as ort
    from onnxruntime.tools.ort_format_model import create_config_from_models

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(staging / ORT_FILE)
    options.add_session_config_entry("session.save_model_format", "ORT")
    options.add_session_config_entry("session.qdqisint8allowed", "1")  # as for ARM
    options.log_severity_level = 3
    log = io.StringIO()
    chatty = logging.getLogger("ort_format_model.utils")  # logs every operator at INFO
    level, chatty.level = chatty.level, logging.WARNING
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"],
                                 disabled_optimizers=[*_NOT_FOR_ARM, *CPU_DISABLED_FUSIONS])
            create_config_from_models([staging / ORT_FILE], staging / OPERATORS_FILE,
                                      enable_type_reduction=False)
    except Exception as e:
        raise ExportError(f"onnxruntime could not convert the model to ORT format ({e}) "
                          + log.getvalue().strip()[-300:]) from e
    finally:
        chatty.setLevel(level)
    return operators(staging / OPERATORS_FILE)


def operators(config: Path) -> list[str]:
    """'domain;op' for every operator a required_operators.config lists."""
    found = []
    for line in config.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        domain, _, ops = line.split(";")
        found += [f"{domain};{op}" for op in ops.split(",")]
    return sorted(found)
