"""Micro-batching for one encoder model: requests arriving within a short window run
as one pipeline call (the pipeline batches a list of texts by length)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from edgelm.serve.errors import ApiError
from edgelm.serve.metrics import Metrics
from edgelm.serve.queue import QueueWorker

log = logging.getLogger(__name__)
IDLE_WAIT = 0.25


@dataclass
class Work:
    """Some texts of one request, with the options its results depend on."""

    texts: list[str]
    key: Any  # requests with the same key can share a call
    future: Future = field(default_factory=Future)


class Batcher(QueueWorker[Work]):
    """One thread per model: `run(texts, key)` returns one result per text."""

    def __init__(self, run: Callable[[list[str], Any], list[Any]], *, name: str,
                 max_batch: int, window_s: float, max_queue: int,
                 metrics: Metrics | None = None) -> None:
        super().__init__(name=name, max_queue=max_queue)
        self.run, self.max_batch = run, max_batch
        self.window_s, self.metrics = window_s, metrics
        self.batches: list[int] = []  # texts per call, most recent last (tests)

    def submit(self, texts: list[str], key: Any = None) -> Future:
        work = Work(texts, key)
        self._enqueue(work)
        return work.future

    def start(self, thread_name: str = "") -> None:
        super().start(thread_name or f"edgelm-batch-{self.name}")

    def _serve_once(self) -> None:
        batch = self._collect()
        if batch:
            self._run(batch)

    def _shut(self, waiting: list[Work]) -> None:
        for work in waiting:
            if work.future.set_running_or_notify_cancel():
                work.future.set_exception(ApiError(503, "the server is shutting down",
                                                   type="server_error"))

    def _collect(self) -> list[Work]:
        """The first waiting request, and those that arrive within the window after it
        with the same key, up to max_batch texts."""
        with self._wake:
            if not self.waiting:
                self._wake.wait(IDLE_WAIT)
                if not self.waiting:
                    return []
            first = self.waiting.popleft()
            batch, count = [first], len(first.texts)
            deadline = time.monotonic() + self.window_s
            while count < self.max_batch:
                match = next((w for w in self.waiting if w.key == first.key
                              and count + len(w.texts) <= self.max_batch), None)
                if match is not None:
                    self.waiting.remove(match)
                    batch.append(match)
                    count += len(match.texts)
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    break
                self._wake.wait(left)
            self._gauges()
            return batch

    def _run(self, batch: list[Work]) -> None:
        # a request whose client went away has its future cancelled: skip it
        batch = [work for work in batch if work.future.set_running_or_notify_cancel()]
        if not batch:
            return
        texts = [t for work in batch for t in work.texts]
        self.batches.append(len(texts))
        del self.batches[:-1000]
        if self.metrics is not None:
            self.metrics.batch.labels(self.name).observe(len(texts))
        try:
            results = self.run(texts, batch[0].key)
        except Exception as e:
            log.debug("model %s: a batch failed: %s", self.name, e)
            for work in batch:
                work.future.set_exception(e)
            return
        start = 0
        for work in batch:
            work.future.set_result(results[start : start + len(work.texts)])
            start += len(work.texts)

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.queue.labels(self.name).set(len(self.waiting))
