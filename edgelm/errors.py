"""Every error edgelm raises on purpose.

    EdgeLMError
    ├── ConfigError (ValueError)           a bad option or input value
    ├── MissingDependencyError (ImportError)  an optional extra is not installed
    ├── UnsupportedModelError              an architecture or task we cannot export
    ├── ModelFolderError                   an exported folder that cannot be used
    ├── ProviderUnavailableError           the requested device has no provider
    └── ExportError                        an export that could not finish
        └── ValidationError                the ONNX model disagrees with PyTorch

Messages are one line: what failed, the value, what is allowed, and the fix.
"""

from __future__ import annotations


class EdgeLMError(Exception):
    """Base of all edgelm errors."""


class ConfigError(EdgeLMError, ValueError):
    """A bad option or input value."""


class MissingDependencyError(EdgeLMError, ImportError):
    """An optional extra is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; it comes with the '{extra}' extra: "
            f"pip install 'edgelm[{extra}]'"
        )
        self.package = package
        self.extra = extra


class UnsupportedModelError(EdgeLMError):
    """An architecture or task edgelm cannot export."""


class ModelFolderError(EdgeLMError):
    """An exported folder that is missing, corrupt or tampered with."""


class ProviderUnavailableError(EdgeLMError):
    """The requested device has no usable onnxruntime execution provider."""


class ExportError(EdgeLMError):
    """An export that could not finish."""


class ValidationError(ExportError):
    """The exported model disagrees with PyTorch beyond the tolerance."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type when empty), for one-line errors."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]


def check_integer(name: str, value: object, low: int, high: int | None = None) -> int:
    """`value` if it is an int (not a bool) in [low, high], else a one-line ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low \
            or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"from {low} to {high}"
        raise ConfigError(f"{name}={value!r} must be an integer {bound}")
    return value
