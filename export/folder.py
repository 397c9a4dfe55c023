"""What every exported folder gets: the model file's name and a manifest that lists
every file with its sha256, written last."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgelm import __version__
from edgelm.export.checkpoint import Checkpoint
from edgelm.export.mobile import OPERATORS_FILE, ORT_FILE, write_ort
from edgelm.manifest import MANIFEST_NAME, Manifest, MobileInfo, sha256_file
from edgelm.types import Precision, Target

MODEL_FILE = "model.onnx"


def write_manifest(staging: Path, checkpoint: Checkpoint, precision: Precision, *,
                   target: Target = Target.CPU, **fields: Any) -> Manifest:
    """The manifest of the finished files in `staging`, written into it.

    For --target mobile the ORT-format model is made here, from the validated graph.
    """
    if target is Target.MOBILE:
        fields["mobile"] = MobileInfo(ort_file=ORT_FILE, operators_file=OPERATORS_FILE,
                                      operators=write_ort(staging / MODEL_FILE, staging))
    files = sorted(p for p in staging.iterdir() if p.is_file())
    manifest = Manifest(
        task=checkpoint.task, architecture=checkpoint.config.model_type, precision=precision,
        edgelm_version=__version__, model_file=MODEL_FILE, source_sha256=checkpoint.sha256,
        files={p.name: sha256_file(p) for p in files}, target=target, **fields,
    )
    (staging / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    return manifest
