"""The one registry of architecture families, read without importing torch.

Each family module registers one `Family` owning everything about it: the
`model_type`s it covers, its tasks, its fp32 tolerance, and either how its
traced encoder graph is fused and quantized (`EncoderRecipe`) or the class
that writes its decoder graph (a `DecoderWriter` subclass).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgelm.errors import ConfigError, UnsupportedModelError
from edgelm.types import Task

if TYPE_CHECKING:
    from edgelm.export.decoder_graph import DecoderWriter
    from edgelm.export.seq2seq_graph import Seq2SeqWriter

ENCODER_TASKS = (Task.TEXT_CLASSIFICATION, Task.FEATURE_EXTRACTION, Task.TOKEN_CLASSIFICATION,
                 Task.QUESTION_ANSWERING)
DECODER_TASKS = (Task.TEXT_GENERATION,)
SEQ2SEQ_TASKS = (Task.TEXT2TEXT_GENERATION,)


@dataclass(frozen=True, kw_only=True)
class EncoderRecipe:
    """How a traced encoder graph is fused and quantized."""

    optimizer_type: str = "bert"  # onnxruntime.transformers.optimizer's model_type
    position_offset: int = 0  # positions reserved before the first token (RoBERTa: 2)
    # Where a node's layer index sits in its traced name (for --keep-float first-layer).
    layer_pattern: str = r"layer\.(\d+)/"
    # Whether onnxruntime's optimizer fuses each layer's attention into one Attention
    # node (quantized as QAttention); where it does not, its MatMuls are quantized alone.
    fused_attention: bool = True


@dataclass(frozen=True, kw_only=True)
class Family:
    """What the exporter needs to know about an architecture family."""

    name: str
    model_types: tuple[str, ...]  # config.model_type values it covers
    tolerance: float = 1e-4  # max |logit| difference allowed for fp32
    encoder: EncoderRecipe | None = None
    decoder: type[DecoderWriter] | None = None
    seq2seq: type[Seq2SeqWriter] | None = None  # encoder-decoders (T5, BART, Marian)
    tasks: tuple[Task, ...] = field(default=())

    def __post_init__(self) -> None:
        if [self.encoder, self.decoder, self.seq2seq].count(None) != 2:
            raise TypeError(f"family {self.name}: give exactly one of encoder=, decoder= "
                            "and seq2seq=")
        if not self.tasks:
            object.__setattr__(self, "tasks", DECODER_TASKS if self.decoder else
                               SEQ2SEQ_TASKS if self.seq2seq else ENCODER_TASKS)

    def max_length(self, config: Any) -> int:
        offset = self.encoder.position_offset if self.encoder else 0
        return int(config.max_position_embeddings) - offset


FAMILIES: dict[str, Family] = {}  # by model_type


def register(family: Family) -> Family:
    for model_type in family.model_types:
        if model_type in FAMILIES:
            raise ValueError(f"model_type {model_type!r} registered twice")
        FAMILIES[model_type] = family
    return family


def family_for(model_type: str) -> Family:
    if model_type not in FAMILIES:
        raise UnsupportedModelError(
            f"architecture {model_type!r} is not supported; supported: "
            f"{', '.join(sorted(FAMILIES))}")
    return FAMILIES[model_type]


# Suffixes of config.architectures, most specific first. Any other head is refused:
# exporting only its body would silently drop what it was fine-tuned for.
_TASK_BY_SUFFIX = (
    ("ForSequenceClassification", Task.TEXT_CLASSIFICATION),
    ("ForTokenClassification", Task.TOKEN_CLASSIFICATION),
    ("ForQuestionAnswering", Task.QUESTION_ANSWERING),
    ("ForCausalLM", Task.TEXT_GENERATION),
    ("LMHeadModel", Task.TEXT_GENERATION),
    ("ForConditionalGeneration", Task.TEXT2TEXT_GENERATION),
    ("MTModel", Task.TEXT2TEXT_GENERATION),  # MarianMTModel
)


def named_task(architectures: list[str] | None) -> Task:
    """The task config.architectures names: its head's, or feature-extraction for a bare body."""
    for architecture in architectures or []:
        for suffix, task in _TASK_BY_SUFFIX:
            if architecture.endswith(suffix):
                return task
    heads = [a for a in architectures or [] if "For" in a]
    if heads:
        supported = ", ".join(t.value for t in (*ENCODER_TASKS, *DECODER_TASKS,
                                                *SEQ2SEQ_TASKS))
        raise UnsupportedModelError(
            f"{heads[0]}'s head is not supported (supported tasks: {supported}); pass "
            "--task feature-extraction to export the model's body without its head")
    return Task.FEATURE_EXTRACTION


def check_task(task: Task, family: Family) -> Task:
    if task not in family.tasks:
        allowed = ", ".join(t.value for t in family.tasks)
        raise UnsupportedModelError(
            f"task {task.value!r} is not supported for {family.name}; supported: {allowed}")
    return task


@dataclass(frozen=True)
class Identified:
    """What config.json alone says about a checkpoint."""

    family: Family
    task: Task
    config: dict[str, Any]


def identify(model_dir: Path, task: Task | None = None) -> Identified:
    """The family and task of a checkpoint folder, from its config.json alone.

    Cheap (no torch), so an unsupported checkpoint is refused at once.
    """
    path = model_dir / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read {path} ({e.strerror}); pass a Hugging Face "
                          "checkpoint folder") from e
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} is not a JSON object")
    family = family_for(str(raw.get("model_type", "<none>")))
    architectures = raw.get("architectures")
    if not isinstance(architectures, list):
        architectures = None
    found = task if task is not None else named_task(architectures)
    return Identified(family, check_task(found, family), raw)
