"""Tokenization with the `tokenizers` library, from the exported tokenizer.json.

Every text goes through `check_text` (a string of valid UTF-8) and is cut by
characters before it is tokenized (LIMITS.chars_per_token per token the model
can take): tokenizing is linear in the text, so a 30 MB text to a 512-token model
costs what 32 KB does. The cut keeps the head of an encoder's text (whose result is
then marked truncated) and the tail of a prompt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tokenizers import Encoding, Tokenizer

from edgelm.errors import ConfigError, ModelFolderError, first_line
from edgelm.folder import Kind, ModelFolder
from edgelm.limits import LIMITS

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"


Text = str | tuple[str, str]  # a text, or a pair (premise and hypothesis, query and passage)


@dataclass(frozen=True, kw_only=True)
class EncodedBatch:
    """One padded batch, ready to feed; `truncated[i]` says text i was cut."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    truncated: list[bool]
    encodings: list[Encoding]


def check_text(text: Any, what: str = "text") -> str:
    """`text` if it is a string of valid UTF-8, else a one-line ConfigError."""
    if isinstance(text, (bytes, bytearray)):
        raise ConfigError(f"{what} is bytes; decode them first: "
                          "text = data.decode('utf-8', 'replace')")
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be a string, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates, as errors="surrogateescape" leaves
        raise ConfigError(f"{what} holds invalid UTF-8 ({e.reason} at {e.start}); decode "
                          "its bytes with errors='replace'") from None
    return text


def check_texts(texts: str | Sequence[str]) -> tuple[list[str], bool]:
    """The texts as a list, and whether a single string was given."""
    if isinstance(texts, str):
        return check_texts([texts])[0], True
    if isinstance(texts, (bytes, bytearray)):
        raise ConfigError("got bytes; decode them first: text = data.decode('utf-8', 'replace')")
    if texts is None or not isinstance(texts, Sequence):
        raise ConfigError(f"expected a string or a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    if not texts:
        raise ConfigError("got an empty list of texts; pass at least one string")
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise ConfigError(f"expected only strings, got {', '.join(sorted(set(bad)))} in the list")
    for i, text in enumerate(texts):
        check_text(text, f"text {i}")
    return texts, False


def cut_head(text: str, tokens: int) -> tuple[str, bool]:
    """The start of `text` that can hold `tokens` tokens, and whether it was cut."""
    keep = LIMITS.text_chars(tokens)
    return (text[:keep], True) if len(text) > keep else (text, False)


def cut_tail(text: str, tokens: int) -> tuple[str, bool]:
    """The end of `text` that can hold `tokens` tokens, and whether it was cut."""
    keep = LIMITS.text_chars(tokens)
    return (text[-keep:], True) if len(text) > keep else (text, False)


def load_tokenizer(folder: ModelFolder | str | Path) -> Tokenizer:
    """The folder's tokenizer.json (listed, hashed, capped), or a one-line error."""
    files = folder if isinstance(folder, ModelFolder) else ModelFolder(folder, verify_all=False)
    if not files.present(TOKENIZER_FILE):
        raise ModelFolderError(f"{files.folder} has no {TOKENIZER_FILE}; export the model again")
    text = files.read_text(TOKENIZER_FILE, Kind.TOKENIZER)
    try:
        return Tokenizer.from_str(text)
    except BaseException as e:  # tokenizers' Rust panics derive from BaseException
        if not isinstance(e, Exception) and type(e).__name__ != "PanicException":
            raise
        raise ModelFolderError(f"{files.folder / TOKENIZER_FILE} is not a valid tokenizer "
                               f"({first_line(e, 200)}); export the model again") from None


def id_bound(tokenizer: Tokenizer) -> int:
    """One past the largest id the tokenizer can produce (added tokens included)."""
    return max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1) + 1


def encode(tokenizer: Tokenizer, texts: Sequence[Text], *, special_tokens: bool = True
           ) -> list[Encoding]:
    """tokenizers' encode_batch, its failures (panics included) as one-line errors."""
    try:
        return tokenizer.encode_batch(list(texts), add_special_tokens=special_tokens)
    except BaseException as e:
        if not isinstance(e, Exception) and type(e).__name__ != "PanicException":
            raise
        if "Truncation error" in str(e):
            raise ConfigError("a text pair does not fit the model's length without cutting "
                              "the part that must stay whole (a question or hypothesis); "
                              "shorten it") from None
        raise ModelFolderError(f"the folder's tokenizer failed ({first_line(e, 200)}); "
                               "export the model again") from None


class TextTokenizer:
    """Encodes batches of text exactly as the checkpoint's fast tokenizer does."""

    def __init__(self, folder: ModelFolder | str | Path, *, max_length: int,
                 pad_token_id: int, tokenizer: Tokenizer | None = None) -> None:
        self._tokenizer = tokenizer if tokenizer is not None else load_tokenizer(folder)
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length)
        self.max_length = max_length
        self.pad_token_id = pad_token_id

    @property
    def inner(self) -> Tokenizer:
        return self._tokenizer

    def encode(self, texts: Sequence[Text], *, strategy: str = "longest_first",
               max_length: int | None = None, stride: int = 0) -> list[Encoding]:
        """Texts and text pairs truncated to `max_length` (the model's by default) as
        transformers' `strategy`; with `stride`, the overflow comes back as windows
        overlapping by that many tokens (each encoding's `overflowing`)."""
        self._tokenizer.enable_truncation(max_length or self.max_length, stride=stride,
                                          strategy=strategy)
        return encode(self._tokenizer, texts)

    def encode_batch(self, texts: list[Text], *, strategy: str = "longest_first"
                     ) -> EncodedBatch:
        """Texts and text pairs, truncated to max_length as transformers' `strategy`."""
        cut = [_cut_pair(t, self.max_length) for t in texts]
        encodings = self.encode([t for t, _ in cut], strategy=strategy)
        truncated = [bool(e.overflowing) or was_cut for e, (_, was_cut) in zip(encodings, cut)]
        return padded(encodings, self.pad_token_id, truncated)


def _cut_pair(text: Text, tokens: int) -> tuple[Text, bool]:
    if isinstance(text, str):
        return cut_head(text, tokens)
    (first, a), (second, b) = cut_head(text[0], tokens), cut_head(text[1], tokens)
    return (first, second), a or b


def padded(encodings: list[Encoding], pad_token_id: int,
           truncated: list[bool] | None = None) -> EncodedBatch:
    """The encodings as one batch, right-padded to the longest."""
    width = max(1, max(len(e.ids) for e in encodings))
    shape = (len(encodings), width)
    ids = np.full(shape, pad_token_id, dtype=np.int64)
    mask = np.zeros(shape, dtype=np.int64)
    types = np.zeros(shape, dtype=np.int64)
    for row, e in enumerate(encodings):
        n = len(e.ids)
        ids[row, :n] = e.ids
        mask[row, :n] = 1
        types[row, :n] = e.type_ids
    return EncodedBatch(
        input_ids=ids, attention_mask=mask, token_type_ids=types,
        truncated=truncated or [False] * len(encodings), encodings=encodings,
    )
