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
    TEXT_GENERATION = "text-generation"


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
    """Where an export will run; picks the default precision and graph settings."""

    CPU = "cpu"
    CUDA = "cuda"

    def default_precision(self) -> Precision:
        return Precision.FP16 if self is Target.CUDA else Precision.INT8
