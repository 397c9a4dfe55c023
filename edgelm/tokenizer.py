"""Tokenization with the `tokenizers` library, from the exported tokenizer.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Encoding, Tokenizer

from edgelm.errors import ConfigError, ModelFolderError

TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True, kw_only=True)
class EncodedBatch:
    """One padded batch, ready to feed; `truncated[i]` says text i was cut."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    truncated: list[bool]
    encodings: list[Encoding]


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
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates, as errors="surrogateescape" leaves
            raise ConfigError(f"text {i} holds invalid UTF-8 ({e.reason} at {e.start}); decode "
                              "its bytes with errors='replace'") from None
    return texts, False


def load_tokenizer(folder: Path) -> Tokenizer:
    """The folder's tokenizer.json, or a one-line error naming what is wrong."""
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        raise ModelFolderError(f"{folder} has no {TOKENIZER_FILE}; export the model again")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:
        raise ModelFolderError(f"{path} is not a valid tokenizer ({e})") from e


class TextTokenizer:
    """Encodes batches of text exactly as the checkpoint's fast tokenizer does."""

    def __init__(self, folder: Path, *, max_length: int, pad_token_id: int) -> None:
        self._tokenizer = load_tokenizer(folder)
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length)
        self.max_length = max_length
        self.pad_token_id = pad_token_id

    @property
    def inner(self) -> Tokenizer:
        return self._tokenizer

    def encode_batch(self, texts: list[str]) -> EncodedBatch:
        encodings = self._tokenizer.encode_batch(texts)
        width = max(1, max(len(e.ids) for e in encodings))
        shape = (len(encodings), width)
        ids = np.full(shape, self.pad_token_id, dtype=np.int64)
        mask = np.zeros(shape, dtype=np.int64)
        types = np.zeros(shape, dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = 1
            types[row, :n] = e.type_ids
        truncated = [bool(e.overflowing) for e in encodings]
        return EncodedBatch(
            input_ids=ids, attention_mask=mask, token_type_ids=types,
            truncated=truncated, encodings=encodings,
        )
