"""`--target mobile`: the ORT-format model and the operators a reduced build needs.

onnxruntime's own converter (onnxruntime.tools.convert_onnx_models_to_ort)
optimizes the graph for ARM ("Fixed" style, all levels: nothing left for the
phone to do at load) and writes `model.ort` and `required_operators.config`,
the list that onnxruntime's build.py takes as --include_ops_by_config for a
reduced-size build. The prebuilt onnxruntime-android / onnxruntime-objc
packages are full builds and run every operator listed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from pathlib import Path

from edgelm.errors import ExportError

ORT_FILE = "model.ort"
OPERATORS_FILE = "required_operators.config"


def write_ort(model: Path, staging: Path) -> list[str]:
    """model.ort and required_operators.config into staging; the operators, as 'domain;op'."""
    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    with tempfile.TemporaryDirectory(dir=staging, prefix=".ort-") as work_dir:
        work = Path(work_dir)  # given one file, the converter writes only its outputs here
        log = io.StringIO()
        chatty = logging.getLogger("ort_format_model.utils")
        level, chatty.level = chatty.level, logging.WARNING
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                convert_onnx_models_to_ort(model, output_dir=work, target_platform="arm",
                                           optimization_styles=[OptimizationStyle.Fixed])
        except Exception as e:
            raise ExportError(f"onnxruntime could not convert the model to ORT format ({e})") \
                from e
        finally:
            chatty.setLevel(level)
        ort_file, operators_file = work / f"{model.stem}.ort", \
            work / f"{model.stem}.{OPERATORS_FILE}"
        if not ort_file.is_file():
            raise ExportError("onnxruntime could not convert the model to ORT format: "
                              + log.getvalue().strip()[-300:])
        shutil.move(ort_file, staging / ORT_FILE)
        shutil.move(operators_file, staging / OPERATORS_FILE)
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
