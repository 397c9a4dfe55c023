"""Closed choices shared by the exporter, the runtime and the CLI."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from edgelm.errors import ConfigError

C = TypeVar("C", bound="Choice")


class Choice(str, Enum):
    """A str enum whose parse() names the allowed values on a bad one."""

    @classmethod
    def parse(cls: type[C], value: str | Choice) -> C:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(c.value for c in cls)
            raise ConfigError(f"{cls.__name__.lower()} {value!r} is not one of: {allowed}") from None

    @classmethod
    def values(cls) -> list[str]:
        return [c.value for c in cls]


class Task(Choice):
    TEXT_CLASSIFICATION = "text-classification"
    FEATURE_EXTRACTION = "feature-extraction"
    TOKEN_CLASSIFICATION = "token-classification"
    QUESTION_ANSWERING = "question-answering"
    TEXT_GENERATION = "text-generation"
    TEXT2TEXT_GENERATION = "text2text-generation"

    @classmethod
    def _missing_(cls, value: object) -> Task | None:
        """transformers' names for the same encoder-decoder task."""
        return cls.TEXT2TEXT_GENERATION if value in ("summarization", "translation") else None


class ScoreFunction(Choice):
    """How a classifier's logits become scores, as transformers' function_to_apply."""

    SOFTMAX = "softmax"  # one label per text
    SIGMOID = "sigmoid"  # each label on its own: multi-label heads, one-logit rerankers
    NONE = "none"  # the logits themselves: regression heads

    @classmethod
    def of(cls, problem_type: str | None, labels: int) -> ScoreFunction:
        """transformers' default for a head with this problem_type and label count."""
        if problem_type == "regression":
            return cls.NONE
        if problem_type == "multi_label_classification" or labels == 1:
            return cls.SIGMOID
        return cls.SOFTMAX


class Precision(Choice):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    INT4 = "int4"


class Device(Choice):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Target(Choice):
    """Where an export will run: picks the default precision and what is written.

    cpu: x86-64 or any CPU; arm64/rpi4/rpi5: ARM boards (the same settings today:
    int8, whose MatMulNBits/QAttention kernels onnxruntime has for NEON, and graphs
    saved without host-specific layouts, finished by the device's onnxruntime at
    load); mobile: the same, plus the ORT-format model and its operator list;
    cuda: fp16 for the CUDA provider.
    """

    CPU = "cpu"
    ARM64 = "arm64"
    RPI4 = "rpi4"
    RPI5 = "rpi5"
    MOBILE = "mobile"
    CUDA = "cuda"

    def default_precision(self) -> Precision:
        return Precision.FP16 if self is Target.CUDA else Precision.INT8

    def is_edge(self) -> bool:
        """A board or phone: loads there keep onnxruntime's packed weights on disk."""
        return self in (Target.ARM64, Target.RPI4, Target.RPI5, Target.MOBILE)
