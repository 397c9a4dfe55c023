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


class StopStrings:
    """Each row's continuation, decoded as it grows; finishes a row at a stop string.

    Called once per new token (search.StopCheck). Only the new piece and the
    few characters before it that a stop string could span are searched, so the
    cost per token does not grow with the prompt or the continuation.
    """

    def __init__(self, tokenizer: Tokenizer, rows: list[list[int]], stops: tuple[str, ...]
                 ) -> None:
        self.stops = stops
        self.reach = max((len(s) for s in stops), default=1) - 1
        self.streams = [TextStream(tokenizer, row) for row in rows]
        self.texts = [""] * len(rows)

    def __call__(self, row: int, generated: list[int]) -> bool:
        stream = self.streams[row]
        piece = stream.push(generated[-1])
        text = self.texts[row]
        context = text[max(0, len(text) - self.reach):]  # what a stop could span into
        self.texts[row] = text + piece
        # A token can complete a stop string and begin a multi-byte character at once:
        # the stream holds it back, but the stop is already there.
        new = piece or stream.held
        return bool(new) and any(s in context + new for s in self.stops)

    def finish(self, row: int) -> str:
        """The row's whole continuation, characters held back included."""
        self.texts[row] += self.streams[row].flush()
        return self.texts[row]
