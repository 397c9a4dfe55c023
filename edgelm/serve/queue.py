"""A model's worker thread and its bounded queue of waiting requests.

The request side enqueues under the lock (429 when the queue is full, 503 once the
server is stopping); the thread runs `_serve_once` until stopped, surviving its own
bugs (logged), and when it stops every request still waiting is failed, so no client
waits for an answer that will never come.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Generic, TypeVar

from edgelm.serve.errors import ApiError

log = logging.getLogger(__name__)
T = TypeVar("T")


class QueueWorker(Generic[T]):
    def __init__(self, *, name: str, max_queue: int) -> None:
        self.name, self.max_queue = name, max_queue
        self.waiting: deque[T] = deque()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _enqueue(self, item: T) -> None:
        with self._wake:
            if self._stop.is_set():
                raise ApiError(503, "the server is shutting down", type="server_error")
            if len(self.waiting) >= self.max_queue:
                raise ApiError(429, f"model {self.name!r} has {len(self.waiting)} requests "
                               "waiting; retry later", type="rate_limit_error")
            self.waiting.append(item)
            self._gauges()
            self._wake.notify()

    def start(self, thread_name: str) -> None:
        self._thread = threading.Thread(target=self._loop, name=thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stop.set()
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("model %s: its thread is still running after %.0f s (a long "
                            "call); it ends with the process", self.name, timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._serve_once()
            except Exception:  # a bug: logged, and the thread keeps serving
                log.exception("model %s: the worker thread failed", self.name)
                self._recover()
        with self._wake:  # _enqueue refuses from now on: this drains everything
            left, self.waiting = list(self.waiting), deque()
        self._shut(left)

    def _serve_once(self) -> None:
        raise NotImplementedError

    def _recover(self) -> None:
        """After a failure of _serve_once: fail what was running."""

    def _shut(self, waiting: list[T]) -> None:
        """Fail the requests left waiting (and whatever else runs) at shutdown."""

    def _gauges(self) -> None:
        """Publish the queue depth (called under the lock)."""
