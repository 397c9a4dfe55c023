"""What `edgelm bench` is asked to measure, and what one worker process reports."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgelm.errors import ConfigError
from edgelm.types import Device, Precision, Target, Task

ENCODER_PRECISIONS = (Precision.FP32, Precision.INT8)
DECODER_PRECISIONS = (Precision.FP32, Precision.INT8, Precision.INT4)


def _positive(name: str, values: tuple[int, ...]) -> None:
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ConfigError(f"{name}={list(values)} must be one or more integers >= 1")


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    precisions: tuple[Precision, ...] | None = None  # None: see default_precisions
    onnx: tuple[Path, ...] = ()  # exported folders measured as they are
    data: Path | None = None  # JSONL/CSV with text and label: task accuracy
    text: Path | None = None  # plain text: decoder perplexity and token agreement
    batch_sizes: tuple[int, ...] = (1, 8)
    seq_lens: tuple[int, ...] = (16, 128)  # encoders: tokens per text; decoders: prompt tokens
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    device: Device = Device.CPU
    rounds: int = 3  # bursts per variant and grid point, the variants taking turns
    runs: int = 10  # timed calls per burst, after one untimed call
    pause_s: float = 0.5  # after each burst, for spinning threads to settle
    new_tokens: int = 32  # decoders: tokens generated per call
    beams: int = 4
    baseline: bool = True  # measure PyTorch (needs the export extra)

    def __post_init__(self) -> None:
        if self.precisions is not None:
            object.__setattr__(self, "precisions", tuple(Precision.parse(p)
                                                         for p in self.precisions))
        object.__setattr__(self, "device", Device.parse(self.device))
        if self.device is Device.AUTO:
            raise ConfigError("bench measures one device: pass --device cpu or --device cuda")
        _positive("batch_sizes", self.batch_sizes)
        _positive("seq_lens", self.seq_lens)
        _positive("threads", (self.threads,))
        _positive("rounds", (self.rounds,))
        _positive("runs", (self.runs,))
        if isinstance(self.new_tokens, bool) or not isinstance(self.new_tokens, int) or \
                self.new_tokens < 2:
            raise ConfigError(f"new_tokens={self.new_tokens!r} must be an integer >= 2 "
                              "(time per token is measured after the first)")
        _positive("beams", (self.beams,))
        if isinstance(self.pause_s, bool) or not isinstance(self.pause_s, (int, float)) or \
                not 0 <= self.pause_s <= 60:
            raise ConfigError(f"pause_s={self.pause_s!r} must be a number of seconds in [0, 60]")
        for path in (self.data, self.text):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{path} is not a file")

    @property
    def target(self) -> Target:
        """What the exports made for this run target."""
        return Target.CUDA if self.device is Device.CUDA else Target.CPU

    def default_precisions(self, task: Task) -> tuple[Precision, ...]:
        """The variants measured when none are named."""
        if self.target is not Target.CPU:
            return (self.target.default_precision(),)
        return DECODER_PRECISIONS if task is Task.TEXT_GENERATION else ENCODER_PRECISIONS


@dataclass(frozen=True, kw_only=True)
class WorkerSpec:
    """One worker run: an engine on a model, the grid to time, and where quality goes."""

    engine: str  # "onnx" (edgelm.bench.worker) or "pytorch" (edgelm.export.bench_baseline)
    path: str  # exported folder, or the checkpoint for pytorch
    task: Task
    threads: int
    device: Device
    grid: list[tuple[int, int]]  # (batch, seq_len)
    runs: int
    new_tokens: int
    beams: int
    max_length: int  # the model's positions: encoders truncate, decoders window
    quality_in: str | None = None  # JSON: {"texts": [...]} or {"ids": [...]}
    quality_out: str | None = None  # .npz the worker writes its predictions to

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        data = json.loads(text)
        data["task"], data["device"] = Task(data["task"]), Device(data["device"])
        data["grid"] = [tuple(p) for p in data["grid"]]
        return cls(**data)


@dataclass(kw_only=True)
class Point:
    """Timings at one (batch, seq_len) of the grid, pooled over its bursts."""

    batch: int
    seq_len: int
    p50_ms: float | None = None  # encoders: one call on `batch` texts
    p90_ms: float | None = None
    p99_ms: float | None = None
    items_per_s: float | None = None  # encoders: texts/s at p50
    ttft_ms: float | None = None  # decoders: prompt -> first token
    per_token_ms: float | None = None
    tokens_per_s: float | None = None  # decoders: new tokens of all rows per second
    bursts: int = 0  # bursts pooled into the figures above
    burst_ms: list[float] = field(default_factory=list)  # each burst's median call, ms
    spread: float | None = None  # (slowest - fastest burst) / median burst
    speedup: float | None = None  # vs PyTorch: median of paired per-burst ratios
    settled: bool = False  # spread within the limit over enough bursts (edgelm.bench.trust)


@dataclass(kw_only=True)
class VariantResult:
    """Everything measured for one variant (PyTorch or an ONNX folder)."""

    name: str
    engine: str
    path: str
    precision: str
    size_mb: float
    rounds: int = 0  # bursts measured at each grid point
    load_s: float | None = None
    peak_rss_mb: float | None = None
    points: list[Point] = field(default_factory=list)
    beam_tokens_per_s: float | None = None
    accuracy: float | None = None  # against the data's labels
    agreement: float | None = None  # against PyTorch's outputs (top-1 / tokens / entities)
    cosine_min: float | None = None  # embeddings against PyTorch's
    perplexity: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
