"""Micro-batching for one encoder model: requests arriving within a short window run
as one pipeline call (the pipeline batches a list of texts by length)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from edgelm.serve.errors import ApiError
from edgelm.serve.metrics import Metrics

log = logging.getLogger(__name__)
IDLE_WAIT = 0.25


@dataclass
class Work:
    """Some texts of one request, with the options its results depend on."""

    texts: list[str]
    key: Any  # requests with the same key can share a call
    future: Future = field(default_factory=Future)


class Batcher:
    """One thread per model: `run(texts, key)` returns one result per text."""

    def __init__(self, run: Callable[[list[str], Any], list[Any]], *, name: str,
                 max_batch: int, window_s: float, max_queue: int,
                 metrics: Metrics | None = None) -> None:
        self.run, self.name, self.max_batch = run, name, max_batch
        self.window_s, self.max_queue, self.metrics = window_s, max_queue, metrics
        self.waiting: deque[Work] = deque()
        self.batches: list[int] = []  # texts per call, most recent last (tests)
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, texts: list[str], key: Any = None) -> Future:
        work = Work(texts, key)
        with self._wake:
            if len(self.waiting) >= self.max_queue:
                raise ApiError(429, f"model {self.name!r} has {len(self.waiting)} requests "
                               "waiting; retry later", type="rate_limit_error")
            self.waiting.append(work)
            self._gauge()
            self._wake.notify()
        return work.future

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"edgelm-batch-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            batch = self._collect()
            if batch:
                self._run(batch)
        for work in self.waiting:
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
            self._gauge()
            return batch

    def _run(self, batch: list[Work]) -> None:
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

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue.labels(self.name).set(len(self.waiting))
