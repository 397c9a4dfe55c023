"""The worker's half of `edgelm bench`: load once, then time bursts on request.

A worker is one process measuring one engine (the ONNX runtime or PyTorch), so
neither sees the other's threads. It stays up for the whole run: the
orchestrator (edgelm.bench.interleave) asks each worker in turn for a short
burst of calls at one grid point, so engines are compared seconds apart, not
minutes apart, on a machine whose speed drifts. Each engine implements
`Engine`; this module decides what is timed and how, so both are measured alike.

Protocol, one JSON line each way: the worker says {"loaded": true, "load_s": ...}
once loaded and warmed up; {"point": i, "calls": n} gets one untimed call (the
other engines ran since) and n timed ones at grid point i; {"finish": true} (or
the end of input) gets the end figures: beam search, peak memory, quality.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

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

    def generate_timed(self, rows: list[list[int]], new: int) -> tuple[float, float]:
        """Greedy, exactly `new` tokens per row: (s to the first token, s for the call)."""

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


def entity_spans(found: Sequence[Sequence[Mapping[str, object]]]) -> np.ndarray:
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


class Bench:
    """One engine's grid: a call per point, timed in bursts."""

    def __init__(self, spec: WorkerSpec, engine: Engine) -> None:
        self.spec, self.engine = spec, engine
        self.calls = [self._call(batch, length) for batch, length in spec.grid]
        for call in self.calls:
            for _ in range(WARMUP):
                call()

    def _call(self, batch: int, length: int) -> Callable[[], tuple[float, float | None]]:
        """One call at a grid point: (ms of the whole call, ms to the first token or None)."""
        engine = self.engine
        if self.spec.task is Task.TEXT_GENERATION:
            rows = prompt_ids(length, engine.vocab_size(), batch)

            def generate() -> tuple[float, float | None]:
                first_s, whole_s = engine.generate_timed(rows, self.spec.new_tokens)
                return whole_s * 1e3, first_s * 1e3
            return generate
        texts = [filler_text(engine, length)] * batch

        def encode() -> tuple[float, float | None]:
            start = time.perf_counter()
            engine.encode(texts, batch)
            return (time.perf_counter() - start) * 1e3, None
        return encode

    def burst(self, point: int, calls: int) -> dict[str, list[float]]:
        """One untimed call, then `calls` timed ones: each call's ms (and ms to first token)."""
        call = self.calls[point]
        call()
        whole, first = zip(*(call() for _ in range(calls)))
        return {"ms": list(whole)} | ({"ttft_ms": list(first)} if first[0] is not None else {})

    def finish(self) -> dict[str, Any]:
        """Beam search speed, peak memory, then quality (whose batches are not the grid's)."""
        spec, report = self.spec, {}
        if spec.task is Task.TEXT_GENERATION and spec.beams > 1:
            rows = prompt_ids(spec.grid[0][1], self.engine.vocab_size(), 1)
            beam_ms = timed(lambda: self.engine.generate(rows, spec.new_tokens, spec.beams), 1)
            report["beam_tokens_per_s"] = spec.new_tokens / beam_ms[0] * 1e3
        report["peak_rss_mb"] = peak_rss_mb()
        if spec.quality_in and spec.quality_out:
            _quality(spec, self.engine, spec.quality_in, spec.quality_out)
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


def _say(payload: dict[str, Any]) -> None:
    print(json.dumps(payload), flush=True)


def worker_main(load: Callable[[WorkerSpec], Engine]) -> None:
    """`python -m <worker> SPEC_JSON`: serves the protocol above on stdin/stdout."""
    spec = WorkerSpec.from_json(sys.argv[1])
    start = time.perf_counter()
    engine = load(spec)
    load_s = time.perf_counter() - start
    bench = Bench(spec, engine)
    _say({"loaded": True, "load_s": load_s})
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("finish"):
            break
        _say(bench.burst(int(request["point"]), int(request["calls"])))
    _say(bench.finish())
