"""One generation request inside the running batch: its rows, options and random state.

`decide` is the body of edgelm.generation.search.sample_or_greedy for this request's
rows alone: the same processors, the same seeded generator drawing for all its rows,
the same eos and stop-string checks. Its pieces are those of the pipeline's stream
(TextStream through StopStrings, held back while they could begin a stop string), so
a request gets the text it would get alone through the pipeline.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tokenizers import Tokenizer

from edgelm.generation.config import GenerationConfig
from edgelm.generation.logits import process, sample, warp
from edgelm.generation.search import history
from edgelm.generation.streaming import StopStrings


@dataclass(frozen=True)
class Piece:
    """New text of choice `index`."""

    index: int
    text: str


@dataclass(frozen=True)
class End:
    """Choice `index` is finished: why ("stop" or "length") and its generated token ids."""

    index: int
    reason: str
    tokens: list[int]


@dataclass(frozen=True)
class Failed:
    message: str


Event = Piece | End | Failed
Emit = Callable[[Event], None]


class Job:
    """A request's n rows (num_return_sequences), decoded together as the pipeline would."""

    def __init__(self, prompt: list[int], config: GenerationConfig, emit: Emit, *,
                 tokenizer: Tokenizer, eos_ids: list[int], pad_id: int) -> None:
        self.prompt, self.config, self.emit = prompt, config, emit
        self.n = config.num_return_sequences
        self.eos_ids, self.pad_id = eos_ids, pad_id
        self.rows = [prompt] * self.n
        self.rng = np.random.default_rng(config.seed)
        self.generated: list[list[int]] = [[] for _ in self.rows]
        self.finished = np.zeros(self.n, dtype=bool)
        self.closed = np.zeros(self.n, dtype=bool)  # its End was emitted
        self.follow = StopStrings(tokenizer, self.rows, config.stop)
        self.sent = [0] * self.n
        self.step = 0
        self.done = False
        self.cancelled = threading.Event()  # the client left: drop the rows at the next step
        self.last: np.ndarray | None = None  # logits [n, vocab] to choose from next
        self.tokens = np.zeros(self.n, dtype=np.int64)  # chosen by decide, fed to the step
        self.slots = [0] * self.n  # its rows' places in the running batch

    def decide(self) -> np.ndarray:
        """This step's tokens (pad for finished rows); streams pieces, ends rows."""
        assert self.last is not None
        config = self.config
        scores = process(self.last, history(config, self.rows, self.generated), self.step,
                         config, self.eos_ids)
        tokens = sample(warp(scores, config), self.rng) if config.do_sample \
            else scores.argmax(axis=-1)
        active = ~self.finished
        tokens = np.where(active, tokens, self.pad_id)
        for row in np.flatnonzero(active).tolist():
            token = int(tokens[row])
            self.generated[row].append(token)
            if token in self.eos_ids or self.follow(row, self.generated[row]):
                self.finished[row] = True
        self.step += 1
        self.done = bool(self.finished.all()) or self.step == config.max_new_tokens
        for row in np.flatnonzero(active).tolist():
            self._show(row, final=self.done or bool(self.finished[row]))
        self.last = None
        return tokens

    def _show(self, row: int, *, final: bool) -> None:
        """As the pipeline's _stream_ids: text shown so far; at the end, the held tail."""
        end, stopped = self.follow.shown(row)
        self._send(row, end)
        if stopped or final:
            if not stopped:
                text = self.follow.finish(row)
                self._send(row, self.follow.end(row), text)
            self.closed[row] = True  # eos or a stop string: "stop"; else max_tokens ran out
            self.emit(End(row, "stop" if self.finished[row] else "length",
                          list(self.generated[row])))

    def _send(self, row: int, end: int, text: str | None = None) -> None:
        if end > self.sent[row]:
            source = self.follow.texts[row] if text is None else text
            self.emit(Piece(row, source[self.sent[row] : end]))
            self.sent[row] = end

    def fail(self, message: str) -> None:
        self.done = True
        self.emit(Failed(message))
