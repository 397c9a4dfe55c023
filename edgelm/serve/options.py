"""What `edgelm serve` takes, checked once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgelm.errors import ConfigError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")  # a model name: never a path


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """Server options; `names` gives the folders' model names in order (else folder names)."""

    host: str = "127.0.0.1"
    port: int = 8000
    threads: int | None = None  # per model's session; None: onnxruntime's default
    max_batch: int = 8  # rows of a generation batch / texts of an encoder batch
    max_context: int | None = None  # cache positions per row; None: model max, <= 2048
    batch_window_ms: float = 5.0  # encoders wait this long for more requests to batch
    max_body_bytes: int = 1 << 20
    max_queue: int = 256  # waiting requests per model before 429
    api_key: str | None = None
    names: tuple[str, ...] = field(default_factory=tuple)
    trust_folder: bool = False  # relax the folders' file checks (edgelm.folder)
    packed_cache: bool | None = True  # onnxruntime's packed weights kept on disk (packed_cache)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        problems = []
        for key, low in (("port", 0), ("max_batch", 1), ("max_body_bytes", 1024),
                         ("max_queue", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"{key}={value!r} must be an integer >= {low}")
        if self.port > 65535:
            problems.append(f"port={self.port} must be at most 65535")
        if self.max_context is not None and (not isinstance(self.max_context, int)
                                             or self.max_context < 2):
            problems.append(f"max_context={self.max_context!r} must be an integer >= 2")
        if not 0 <= self.batch_window_ms <= 1000:
            problems.append(f"batch_window_ms={self.batch_window_ms!r} must be in [0, 1000]")
        if self.api_key is not None and not self.api_key.strip():
            problems.append("api_key must not be empty")
        for name in self.names:
            if not NAME.fullmatch(name) or ".." in name:
                problems.append(f"model name {name!r} must be 1-128 letters, digits or ._:/- "
                                "starting with a letter or digit, without '..'")
        if len(set(self.names)) != len(self.names):
            problems.append(f"model names {list(self.names)} must be distinct")
        if problems:
            raise ConfigError("; ".join(problems))
