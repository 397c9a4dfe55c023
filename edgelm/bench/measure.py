"""The measuring loop both workers share: load, warm up, time the grid, then quality.

A worker is one process measuring one engine (the ONNX runtime or PyTorch), so
neither sees the other's threads. Each engine implements `Engine`; this module
decides what is timed and how, so the two are measured the same way.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from edgelm.bench.spec import WorkerSpec
from edgelm.bench.system import peak_rss_mb
from edgelm.generation.logits import log_softmax
from edgelm.types import Task

WARMUP = 2
FILLER_WORDS = ("the", "a", "hello", "x", "and")


class Engine(Protocol):
    def token_count(self, text: str) -> int:
        """Tokens the engine's tokenizer makes of `text`, special tokens included."""

    def encode(self, texts: list[str], batch: int) -> None:
        """Run the encoder task on `texts`, `batch` at a time."""

    def generate(self, rows: list[list[int]], new: int, beams: int) -> None:
        """Generate exactly `new` tokens for each row (greedy or beam)."""

    def predict(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The task's outputs on `texts`: labels, embeddings or entities."""

    def token_logits(self, ids: list[int]) -> np.ndarray:
        """Float32 logits [len(ids), vocab] of a causal LM over `ids`."""

    def vocab_size(self) -> int:
        """A causal LM's vocabulary size."""


def filler_text(engine: Engine, tokens: int) -> str:
    """A text the engine's tokenizer turns into `tokens` tokens (or as close below as can be)."""
    best = ""
    for word in FILLER_WORDS:
        low, high = 0, tokens
        while low < high:  # the most repetitions that fit
            mid = (low + high + 1) // 2
            if engine.token_count(" ".join([word] * mid)) <= tokens:
                low = mid
            else:
                high = mid - 1
        text = " ".join([word] * low)
        if engine.token_count(text) == tokens:
            return text
        if engine.token_count(text) > engine.token_count(best):
            best = text
    return best


def prompt_ids(length: int, vocab: int, rows: int) -> list[list[int]]:
    """Seeded token ids, away from the special tokens that sit at the ends of most vocabularies."""
    high = max(2, min(vocab - 1, 20000))
    rng = np.random.default_rng(0)
    return [rng.integers(min(100, high - 1), high, size=length).tolist() for _ in range(rows)]


def entity_spans(found: list[list[dict[str, object]]]) -> np.ndarray:
    """Each text's entities as one comparable string of (start, end, group) spans.

    Both engines use this, so agreement compares like with like (the "word" strings
    of WordPiece continuations differ between edgelm and transformers by design).
    """
    return np.array([json.dumps([(e["start"], e["end"], e["entity_group"]) for e in entities])
                     for entities in found])


def timed(call: Callable[[], object], runs: int, *, warmup: int = WARMUP) -> list[float]:
    """ms of each of `runs` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def measure(spec: WorkerSpec, load: Callable[[], Engine]) -> dict[str, object]:
    start = time.perf_counter()
    engine = load()
    report: dict[str, object] = {"load_s": time.perf_counter() - start}
    points: list[dict[str, object]] = []
    if spec.task is Task.TEXT_GENERATION:
        vocab = engine.vocab_size()
        for batch, length in spec.grid:
            rows = prompt_ids(length, vocab, batch)
            first = statistics.median(timed(lambda: engine.generate(rows, 1, 1), spec.runs))
            whole = statistics.median(timed(
                lambda: engine.generate(rows, spec.new_tokens, 1), max(1, spec.runs // 3)))
            points.append({"batch": batch, "seq_len": length, "ttft_ms": first,
                           "per_token_ms": (whole - first) / max(1, spec.new_tokens - 1),
                           "tokens_per_s": batch * spec.new_tokens / whole * 1e3})
        if spec.beams > 1:
            rows = prompt_ids(spec.grid[0][1], vocab, 1)
            beam = statistics.median(timed(
                lambda: engine.generate(rows, spec.new_tokens, spec.beams), 1))
            report["beam_tokens_per_s"] = spec.new_tokens / beam * 1e3
    else:
        for batch, length in spec.grid:
            texts = [filler_text(engine, length)] * batch
            samples = timed(lambda: engine.encode(texts, batch), spec.runs)
            points.append({"batch": batch, "seq_len": length, "samples_ms": samples})
    report["points"] = points
    report["peak_rss_mb"] = peak_rss_mb()  # before quality, whose batches are not the grid's
    if spec.quality_in and spec.quality_out:
        _quality(spec, engine, spec.quality_in, spec.quality_out)
    return report


def windows(n: int, size: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most `size` tokens over n tokens, overlapping by one, so
    that every token after the first is predicted exactly once (from its own window)."""
    if size < 2:
        raise ValueError(f"size={size} must be >= 2")
    return [(start, min(start + size, n)) for start in range(0, max(1, n - 1), size - 1)]


def _quality(spec: WorkerSpec, engine: Engine, source: str, target: str) -> None:
    with open(source, encoding="utf-8") as f:
        given = json.load(f)
    if spec.task is Task.TEXT_GENERATION:
        nll, argmax = [], []
        ids = given["ids"]
        for start, end in windows(len(ids), spec.max_length):
            window = ids[start:end]
            logits = engine.token_logits(window)[:-1].astype(np.float64)
            log_probs = log_softmax(logits)
            targets = np.array(window[1:])
            nll.append(-log_probs[np.arange(len(targets)), targets])
            argmax.append(logits.argmax(-1))
        outputs = {"nll": np.concatenate(nll), "argmax": np.concatenate(argmax)}
    else:
        outputs = engine.predict(given["texts"])
    np.savez(target, **outputs)  # type: ignore[arg-type]  # numpy's stub takes no **arrays


def worker_main(load: Callable[[WorkerSpec], Engine]) -> None:
    """`python -m <worker> SPEC_JSON`: prints the report as its last stdout line."""
    spec = WorkerSpec.from_json(sys.argv[1])
    report = measure(spec, lambda: load(spec))
    print(json.dumps(report))
