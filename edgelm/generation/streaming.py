"""Incremental detokenization: text pieces that concatenate to the full decode.

Each new token is decoded together with a few tokens before it, and a piece is
released only when it does not end in an incomplete UTF-8 sequence ("\ufffd"),
so multi-byte characters and word-initial spaces come out right.
"""

from __future__ import annotations

from tokenizers import Tokenizer

CONTEXT = 5  # tokens of left context decoded with the new ones


class TextStream:
    def __init__(self, tokenizer: Tokenizer, prompt: list[int]) -> None:
        self.tokenizer = tokenizer
        self.ids = list(prompt)
        self.held = ""  # decoded but not released: up to an incomplete character
        self._advance(max(0, len(self.ids) - CONTEXT))

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _advance(self, prefix: int) -> None:
        """Everything up to here is released; decode from `prefix` on as context."""
        self.prefix, self.read = prefix, len(self.ids)
        self._before = self._decode(self.ids[self.prefix : self.read])

    def _new_text(self) -> str:
        return self._decode(self.ids[self.prefix :])[len(self._before):]

    def push(self, token: int) -> str:
        """The text that `token` completes ('' while a character is incomplete)."""
        self.ids.append(token)
        text = self._new_text()
        if text and not text.endswith("\ufffd"):
            self.held = ""
            self._advance(self.read)
            return text
        self.held = text.rstrip("\ufffd")
        return ""

    def flush(self) -> str:
        """Whatever is still held back at the end of generation."""
        text = self._new_text()
        self.held = ""
        self._advance(len(self.ids))
        return text


def _failure(stop: str) -> list[int]:
    """KMP's table: for each prefix of `stop`, its longest proper prefix that is a suffix."""
    table, k = [0] * len(stop), 0
    for i in range(1, len(stop)):
        while k and stop[i] != stop[k]:
            k = table[k - 1]
        if stop[i] == stop[k]:
            k += 1
        table[i] = k
    return table


class StopMatcher:
    """Finds stop strings in a text fed piece by piece, in time linear in both.

    One Knuth-Morris-Pratt automaton per stop: its state is how much of the stop the
    text ends with, which is also how much to hold back while streaming.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.tables = [_failure(s) for s in stops]
        self.states = [0] * len(stops)
        self.length = 0  # characters fed
        self.found: int | None = None  # where the first stop found starts

    def _advance(self, states: list[int], text: str, at: int) -> int | None:
        """Feed `text` (starting at offset `at`) to `states`; the earliest stop start seen."""
        first = None
        for j, (stop, table) in enumerate(zip(self.stops, self.tables)):
            k, end = states[j], len(stop)
            for i, ch in enumerate(text):
                while k and ch != stop[k]:
                    k = table[k - 1]
                if ch == stop[k]:
                    k += 1
                if k == end:
                    start = at + i + 1 - end
                    first = start if first is None else min(first, start)
                    k = table[k - 1]
            states[j] = k
        return first

    def feed(self, text: str) -> bool:
        """Add `text`; whether a stop has been found (now or before)."""
        start = self._advance(self.states, text, self.length)
        self.length += len(text)
        if start is not None and (self.found is None or start < self.found):
            self.found = start
        return self.found is not None

    def would_stop(self, text: str) -> bool:
        """Whether adding `text` would complete a stop (the matcher is left as it was)."""
        return self.found is not None or self._advance(list(self.states), text, 0) is not None

    def held(self) -> int:
        """How many final characters could be the start of a stop."""
        return max(self.states, default=0)


class StopStrings:
    """Each row's continuation, decoded as it grows; finishes a row at a stop string.

    Called once per new token (search.StopCheck). Each row's text is fed to a
    StopMatcher, so the cost per token is that of its new characters, whatever the
    length of the stops, the prompt or the continuation.
    """

    def __init__(self, tokenizer: Tokenizer, rows: list[list[int]], stops: tuple[str, ...]
                 ) -> None:
        self.stops = stops
        self.streams = [TextStream(tokenizer, row) for row in rows]
        self.matchers = [StopMatcher(stops) for _ in rows]
        self.texts = [""] * len(rows)

    def __call__(self, row: int, generated: list[int]) -> bool:
        stream, matcher = self.streams[row], self.matchers[row]
        piece = stream.push(generated[-1])
        self.texts[row] += piece
        if matcher.feed(piece):
            return True
        # A token can complete a stop string and begin a multi-byte character at once:
        # the stream holds it back, but the stop is already there.
        return bool(stream.held) and matcher.would_stop(stream.held)

    def shown(self, row: int) -> tuple[int, bool]:
        """How much of the row's text to show while streaming, and whether a stop ended it:
        the text before the first stop, less a tail that could begin one."""
        matcher = self.matchers[row]
        if matcher.found is not None:
            return matcher.found, True
        return len(self.texts[row]) - matcher.held(), False

    def finish(self, row: int) -> str:
        """The row's whole continuation, characters held back included."""
        rest = self.streams[row].flush()
        self.texts[row] += rest
        self.matchers[row].feed(rest)
        return self.texts[row]

    def end(self, row: int) -> int:
        """Where the row's text stops: before its first stop string, else its length."""
        found = self.matchers[row].found
        return len(self.texts[row]) if found is None else found
