"""The manifest `edgelm.json`: the only contract between export and runtime.

It is versioned. The runtime reads any format up to FORMAT_VERSION, refuses a
newer one, checks every listed file's sha256, and refuses paths that leave the
folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgelm.errors import ModelFolderError
from edgelm.types import Precision, Target, Task

FORMAT_VERSION = 1
MANIFEST_NAME = "edgelm.json"


@dataclass(frozen=True, kw_only=True)
class Validation:
    """How the exported graph compares with PyTorch on generated inputs."""

    max_abs_diff: float
    top1_agreement: float | None  # None for embeddings (no classes to agree on)
    tolerance: float | None  # None: quantized, reported but not enforced
    cases: list[str]  # e.g. "batch=2,len=16"
    cosine_min: float | None = None


@dataclass(frozen=True, kw_only=True)
class DecoderInfo:
    """How to drive a text-generation graph (see export/decoder_graph.py)."""

    num_layers: int
    num_heads: int
    kv_heads: int
    head_size: int  # as stored in the cache
    hidden_size: int
    vocab_size: int
    max_positions: int
    position_ids: bool  # the graph takes position_ids (learned positions)
    eos_token_ids: list[int] = field(default_factory=list)
    bos_token_id: int | None = None
    cache_reorder_file: str | None = None  # gathers cache rows on the GPU (beam search)


@dataclass(frozen=True, kw_only=True)
class MobileInfo:
    """--target mobile: the ORT-format model and the operators it needs."""

    ort_file: str
    operators_file: str  # onnxruntime build.py --include_ops_by_config takes it
    operators: list[str]  # "domain;op"


@dataclass(frozen=True, kw_only=True)
class Manifest:
    task: Task
    architecture: str
    precision: Precision
    inputs: list[str]
    outputs: list[str]
    max_length: int
    pad_token_id: int
    edgelm_version: str
    format_version: int = FORMAT_VERSION
    target: Target = Target.CPU
    model_file: str = "model.onnx"
    labels: list[str] = field(default_factory=list)
    pooling: str | None = None
    fused_ops: dict[str, int] = field(default_factory=dict)
    validation: Validation | None = None
    quantization: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    source_sha256: str = ""
    decoder: DecoderInfo | None = None
    mobile: MobileInfo | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["task"] = Task(data["task"])
        data["precision"] = Precision(data["precision"])
        data["target"] = Target(data.get("target", Target.CPU.value))
        if data.get("validation") is not None:
            data["validation"] = Validation(**data["validation"])
        if data.get("decoder") is not None:
            data["decoder"] = DecoderInfo(**data["decoder"])
        if data.get("mobile") is not None:
            data["mobile"] = MobileInfo(**data["mobile"])
        return cls(**data)


def update_digest(digest: Any, path: Path) -> None:
    """Feed a file to a hashlib digest in 1 MiB chunks."""
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    update_digest(digest, path)
    return digest.hexdigest()


def inside(folder: Path, relative: str) -> Path:
    """The path of `relative` in `folder`, refusing anything that escapes it."""
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ModelFolderError(f"manifest path {relative!r} points outside {folder}")
    return path


def read_manifest(folder: str | Path, *, verify: bool = True) -> Manifest:
    """Read and check `folder/edgelm.json`; with verify, check every file's sha256."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is not a folder; pass the folder `edgelm export` wrote")
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ModelFolderError(f"{folder} has no {MANIFEST_NAME}; export it with `edgelm export`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        version = int(data.get("format_version", 0))
    except (ValueError, UnicodeDecodeError, AttributeError) as e:
        raise ModelFolderError(f"{path} is not valid JSON ({e}); export the model again") from e
    if version > FORMAT_VERSION:
        raise ModelFolderError(
            f"{path} has format version {version}, newer than this edgelm reads "
            f"({FORMAT_VERSION}); upgrade edgelm: pip install -U edgelm"
        )
    try:
        manifest = Manifest.from_dict(data)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFolderError(f"{path} is incomplete or corrupt ({e}); export the model again") from e
    if verify:
        verify_files(folder, manifest)
    return manifest


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Raise ModelFolderError naming every missing or altered file."""
    problems = []
    reorder = manifest.decoder.cache_reorder_file if manifest.decoder else None
    for relative in [manifest.model_file, *manifest.files, *([reorder] if reorder else [])]:
        inside(folder, relative)
    for relative, expected in manifest.files.items():
        path = inside(folder, relative)
        if not path.is_file():
            problems.append(f"{relative} is missing")
        elif sha256_file(path) != expected:
            problems.append(f"{relative} does not match its sha256 (altered or truncated)")
    if problems:
        raise ModelFolderError(f"{folder}: " + "; ".join(problems) + "; export the model again")
