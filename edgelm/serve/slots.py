"""The running batch's cache: buffers for the largest batch, live rows at their head.

Rows 0..used-1 are live; each belongs to one row of one job. A joining request's
prefilled rows are copied into the next free rows (only their prompt positions), and a
leaving request's rows are filled by moving the last live rows into them, so a join or
a drop copies a few rows, never the whole cache. The graph runs on a view of the live
head (HostCache.head: no copy). Rows keep their own lengths (right-padded), so rows of
any length share a step.
"""

from __future__ import annotations

import numpy as np

from edgelm.generation.cache import HostCache
from edgelm.generation.runner import DecoderRunner, DecodeState
from edgelm.serve.job import Job


class RunningBatch:
    def __init__(self, runner: DecoderRunner, *, max_rows: int, capacity: int) -> None:
        self.cache = HostCache.zeros(runner.info, max_rows, capacity, runner.dtype)
        self.lengths = np.zeros(max_rows, dtype=np.int32)
        self.owners: list[tuple[Job, int]] = []  # live row -> (job, its row)
        # the live head's state (a view of the cache, no copy), kept while the rows do
        # not change: its binding of the cache is reused step after step
        self._state: DecodeState | None = None
        self.moves = 0  # rows moved to fill holes (tests)

    @property
    def used(self) -> int:
        return len(self.owners)

    def add(self, job: Job, state: DecodeState) -> None:
        """Join `job`, whose prefill left its rows in `state`."""
        assert isinstance(state.cache, HostCache)
        for j in range(job.n):
            slot, length = self.used, int(state.lengths[j])
            self.cache.put(slot, state.cache, j, length)
            self.lengths[slot] = length
            self.owners.append((job, j))
            job.slots[j] = slot
        self._state = None

    def remove(self, job: Job) -> None:
        """Free `job`'s rows, moving the last live rows into the holes."""
        for slot in sorted(job.slots, reverse=True):
            last = self.used - 1
            if slot != last:
                other, j = self.owners[last]
                self.cache.put(slot, self.cache, last, int(self.lengths[last]))
                self.lengths[slot] = self.lengths[last]
                self.owners[slot] = (other, j)
                other.slots[j] = slot
                self.moves += 1
            self.owners.pop()
        self._state = None

    def step(self, runner: DecoderRunner, tokens: np.ndarray) -> np.ndarray:
        """Logits [used, vocab] after one token per live row (tokens in row order)."""
        used = self.used
        if self._state is None:
            self._state = DecodeState(cache=self.cache.head(used), lengths=self.lengths[:used])
        state = self._state
        state.lengths = self.lengths[:used].copy()
        logits = runner.step(state, tokens)
        self.lengths[:used] = state.lengths
        return logits
