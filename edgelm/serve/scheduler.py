"""Continuous batching for one generation model: a thread keeps a running batch.

Each tick: (a) new requests are prefilled alone (their n rows together, as the
pipeline does) and their rows join the running batch (slots.RunningBatch: copied into
free rows of buffers of the model's fixed capacity); (b) every request chooses its
rows' tokens from its own logits (Job.decide: its own options, seeded generator and
stop strings) and streams its pieces; (c) finished or abandoned requests' rows leave;
(d) one runner.step advances every remaining row. Rows are right-padded in the cache
and carry their own lengths, so requests of any length share a step.
"""

from __future__ import annotations

import logging

import numpy as np

from edgelm.errors import ConfigError, first_line
from edgelm.generation.runner import DecoderRunner
from edgelm.serve.errors import ApiError
from edgelm.serve.job import Job
from edgelm.serve.metrics import Metrics
from edgelm.serve.queue import QueueWorker
from edgelm.serve.slots import RunningBatch

log = logging.getLogger(__name__)
IDLE_WAIT = 0.25  # seconds an idle scheduler sleeps between checks for its stop signal
PREFILLS_PER_TICK = 1  # a prefill costs several steps: more would stall the running rows


class Scheduler(QueueWorker[Job]):
    """Runs the jobs of one DecoderRunner, up to `max_rows` rows at a time."""

    def __init__(self, runner: DecoderRunner, *, name: str, capacity: int, max_rows: int,
                 max_queue: int, pad_id: int, metrics: Metrics | None = None) -> None:
        if runner.gather is not None:
            raise ConfigError(f"model {name!r}: serving keeps the cache in host memory; "
                              "CUDA decoders are not served yet: use --device cpu")
        super().__init__(name=name, max_queue=max_queue)
        self.runner, self.capacity = runner, capacity
        self.max_rows, self.pad_id = max_rows, pad_id
        self.metrics = metrics
        self.jobs: list[Job] = []  # running
        self.batch = RunningBatch(runner, max_rows=max_rows, capacity=capacity)
        self.steps = 0  # batched steps run (tests, metrics)
        self.peak_rows = 0  # the most rows one step has run
        self.abandoned = 0  # requests dropped unfinished because their client left

    # -- the request side ----------------------------------------------------------
    def submit(self, job: Job) -> None:
        if job.n > self.max_rows:
            raise ApiError(400, f"n={job.n} is more than the {self.max_rows} rows a batch "
                           "holds (--max-batch)", param="n")
        self._enqueue(job)

    def rows(self) -> int:
        return sum(j.n for j in self.jobs)

    # -- the thread ----------------------------------------------------------------
    def start(self, thread_name: str = "") -> None:
        super().start(thread_name or f"edgelm-serve-{self.name}")

    def _serve_once(self) -> None:
        with self._wake:
            if not self.jobs and not self.waiting:
                self._wake.wait(IDLE_WAIT)
                return
        self.tick()

    def _recover(self) -> None:
        for job in self.jobs:
            job.fail("the server failed while running this request; see its log")
        self.jobs = []
        self.batch = RunningBatch(self.runner, max_rows=self.max_rows, capacity=self.capacity)

    def _shut(self, waiting: list[Job]) -> None:
        for job in [*self.jobs, *waiting]:
            job.fail("the server is shutting down")

    def tick(self) -> None:
        """One round: admit, decide, drop, step. Failures end the jobs they touch."""
        self._admit()
        for job in self.jobs:
            if not job.cancelled.is_set():
                try:
                    job.tokens = job.decide()
                except Exception as e:  # a job's own failure (its stop strings...)
                    log.exception("model %s: a request failed", self.name)
                    job.fail(first_line(e))
        self._drop()
        if self.jobs:
            self._step()
        self._gauges()

    def _admit(self) -> None:
        """Prefill up to PREFILLS_PER_TICK waiting requests that fit, and join them: one at
        a time, so running rows keep streaming while a queue of new requests is admitted."""
        admitted = 0
        while admitted < PREFILLS_PER_TICK:
            with self._wake:
                if not self.waiting or self.rows() + self.waiting[0].n > self.max_rows:
                    return
                job = self.waiting.popleft()
            if job.cancelled.is_set():
                self.abandoned += 1
                continue
            try:
                # capacity: the prompt alone; its rows are copied into the running batch
                job.last, state = self.runner.prefill([job.prompt] * job.n, len(job.prompt),
                                                      pad_id=self.pad_id)
                self.batch.add(job, state)
            except Exception as e:
                log.exception("model %s: prefill failed", self.name)
                job.fail(first_line(e))
                continue
            self.jobs.append(job)
            admitted += 1

    def _drop(self) -> None:
        keep: list[Job] = []
        for job in self.jobs:
            if not job.done and not job.cancelled.is_set():
                keep.append(job)
                continue
            if not job.done:
                self.abandoned += 1
            self.batch.remove(job)
        self.jobs = keep

    def _step(self) -> None:
        tokens = np.zeros(self.batch.used, dtype=np.int64)
        for job in self.jobs:
            tokens[job.slots] = job.tokens
        try:
            logits = self.batch.step(self.runner, tokens)
        except Exception as e:
            log.exception("model %s: a batched step failed", self.name)
            for job in self.jobs:
                job.fail(first_line(e))
                self.batch.remove(job)
            self.jobs = []
            return
        self.steps += 1
        self.peak_rows = max(self.peak_rows, len(tokens))
        if self.metrics is not None:
            self.metrics.batch.labels(self.name).observe(len(tokens))
        for job in self.jobs:
            job.last = logits[job.slots]

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.queue.labels(self.name).set(len(self.waiting))
            self.metrics.running.labels(self.name).set(self.rows())
