"""Load a Hugging Face checkpoint folder safely: safetensors, no remote code."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgelm.errors import ConfigError, ExportError, first_line
from edgelm.export.architectures import Family, identify
from edgelm.export.libraries import transformers
from edgelm.manifest import update_digest
from edgelm.types import Task

_AUTO_CLASS = {
    Task.TEXT_CLASSIFICATION: "AutoModelForSequenceClassification",
    Task.TOKEN_CLASSIFICATION: "AutoModelForTokenClassification",
    Task.QUESTION_ANSWERING: "AutoModelForQuestionAnswering",
    Task.FEATURE_EXTRACTION: "AutoModel",
    Task.TEXT_GENERATION: "AutoModelForCausalLM",
    Task.TEXT2TEXT_GENERATION: "AutoModelForSeq2SeqLM",
}
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    folder: Path
    config: Any
    family: Family
    task: Task
    model: torch.nn.Module
    sha256: str


def check_folder(folder: Path, *, trust_pickle: bool) -> list[Path]:
    """The weight files of a checkpoint folder; a clear error for anything else."""
    if not folder.exists():
        raise ConfigError(f"{folder} does not exist; pass a Hugging Face checkpoint folder")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is a file; pass the checkpoint folder that holds config.json")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder} has no config.json; pass a Hugging Face checkpoint folder")
    safe = sorted(folder.glob("*.safetensors"))
    if safe:
        return safe
    pickles = sorted(folder.glob("pytorch_model*.bin"))
    if pickles and not trust_pickle:
        raise ConfigError(
            f"{folder} has only pickle weights ({pickles[0].name}), which can run code when "
            "loaded; convert them to safetensors, or pass --trust-pickle if you trust the source"
        )
    if not pickles:
        raise ConfigError(f"{folder} has no weights (model.safetensors); the checkpoint is incomplete")
    return pickles


def hash_files(paths: list[Path]) -> str:
    """One sha256 over the files' names and contents, in name order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        update_digest(digest, path)
    return digest.hexdigest()


def load_checkpoint(folder: Path, *, task: Task | None, trust_pickle: bool = False) -> Checkpoint:
    """Load the checkpoint in float32 with eager attention (the pattern ORT fuses)."""
    weights = check_folder(folder, trust_pickle=trust_pickle)
    found = identify(folder, task)
    config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=False)
    task = found.task
    auto = getattr(transformers, _AUTO_CLASS[task])
    try:
        model = auto.from_pretrained(
            folder, config=config, attn_implementation="eager", dtype=torch.float32,
            trust_remote_code=False, use_safetensors=not trust_pickle or None,
        )
    except Exception as e:  # safetensors, torch and transformers each raise their own
        raise ExportError(f"cannot load the weights in {folder} ({first_line(e)})") from e
    return Checkpoint(
        folder=folder, config=model.config, family=found.family, task=task, model=model.eval(),
        sha256=checkpoint_sha256(folder, weights),
    )


def checkpoint_sha256(folder: Path, weights: list[Path] | None = None) -> str:
    """What a manifest records as source_sha256: config.json and the weight files."""
    if weights is None:
        weights = check_folder(folder, trust_pickle=True)
    return hash_files([folder / "config.json", *weights])
