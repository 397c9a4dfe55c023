"""Reach optional layers lazily, with a one-line error naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgelm.errors import MissingDependencyError


def load_export() -> ModuleType:
    """edgelm.export, or MissingDependencyError naming `pip install 'edgelm[export]'`."""
    try:
        return importlib.import_module("edgelm.export")
    except MissingDependencyError:
        raise
    except ModuleNotFoundError as e:
        raise MissingDependencyError(e.name or "torch", "export") from e
