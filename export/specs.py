"""One spec per architecture family: what differs between them, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgelm.errors import UnsupportedModelError
from edgelm.types import Task

SPECS: dict[str, ArchSpec] = {}


@dataclass(frozen=True, kw_only=True)
class ArchSpec:
    """What the exporter needs to know about an architecture family."""

    name: str
    model_types: tuple[str, ...]  # config.model_type values it covers
    tasks: tuple[Task, ...]
    optimizer_type: str  # onnxruntime.transformers.optimizer model_type
    tolerance: float = 1e-4  # max |logit| difference allowed for fp32
    position_offset: int = 0  # positions reserved before the first token (RoBERTa: 2)

    def max_length(self, config: Any) -> int:
        return int(config.max_position_embeddings) - self.position_offset


def register(spec: ArchSpec) -> ArchSpec:
    for model_type in spec.model_types:
        SPECS[model_type] = spec
    return spec


ENCODER_TASKS = (Task.TEXT_CLASSIFICATION, Task.FEATURE_EXTRACTION, Task.TOKEN_CLASSIFICATION)

BERT = register(ArchSpec(
    name="bert", model_types=("bert",), tasks=ENCODER_TASKS, optimizer_type="bert",
))
DISTILBERT = register(ArchSpec(
    name="distilbert", model_types=("distilbert",), tasks=ENCODER_TASKS, optimizer_type="bert",
))
ROBERTA = register(ArchSpec(
    name="roberta", model_types=("roberta", "xlm-roberta", "camembert"), tasks=ENCODER_TASKS,
    optimizer_type="bert", position_offset=2,
))

GPT2 = register(ArchSpec(
    name="gpt2", model_types=("gpt2",), tasks=(Task.TEXT_GENERATION,), optimizer_type="",
))
LLAMA = register(ArchSpec(
    name="llama", model_types=("llama",), tasks=(Task.TEXT_GENERATION,), optimizer_type="",
))

# Suffixes of config.architectures, most specific first.
_TASK_BY_SUFFIX = (
    ("ForSequenceClassification", Task.TEXT_CLASSIFICATION),
    ("ForTokenClassification", Task.TOKEN_CLASSIFICATION),
    ("ForCausalLM", Task.TEXT_GENERATION),
    ("LMHeadModel", Task.TEXT_GENERATION),
    ("ForMaskedLM", Task.FEATURE_EXTRACTION),
    ("Model", Task.FEATURE_EXTRACTION),
)


def spec_for(model_type: str) -> ArchSpec:
    if model_type not in SPECS:
        raise UnsupportedModelError(
            f"architecture {model_type!r} is not supported; supported: {', '.join(sorted(SPECS))}"
        )
    return SPECS[model_type]


def named_task(architectures: list[str] | None) -> Task:
    """The task config.architectures names; feature-extraction when it names none."""
    for architecture in architectures or []:
        for suffix, task in _TASK_BY_SUFFIX:
            if architecture.endswith(suffix):
                return task
    return Task.FEATURE_EXTRACTION


def detect_task(config: Any, spec: ArchSpec) -> Task:
    return check_task(named_task(config.architectures), spec)


def check_task(task: Task, spec: ArchSpec) -> Task:
    if task not in spec.tasks:
        allowed = ", ".join(t.value for t in spec.tasks)
        raise UnsupportedModelError(
            f"task {task.value!r} is not supported for {spec.name}; supported: {allowed}"
        )
    return task
