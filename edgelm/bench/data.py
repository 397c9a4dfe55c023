"""Inputs for the quality half of `edgelm bench`: labelled data, plain text, or generated."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

from edgelm.errors import ConfigError

SUBJECTS = ("The film", "This phone", "Our new teacher", "The hotel room", "That restaurant",
            "The update", "His latest novel", "The concert")
VERDICTS = ("was wonderful and moving", "was a complete waste of time", "felt oddly average",
            "surprised everyone in Paris", "broke down after two days", "made me smile",
            "is the best thing I have bought this year", "was far too long and boring")

# For decoders without --text: a paragraph of ordinary prose.
SAMPLE_PARAGRAPH = (
    "The river town woke slowly. Fishermen pulled their boats onto the gravel while the baker "
    "on the corner opened his shutters and set out loaves still warm from the oven. Children "
    "ran along the embankment toward the old stone school, where the bell had rung at eight "
    "o'clock every morning for more than a hundred years. In the afternoon the market filled "
    "with farmers from the valley selling apples, honey, cheese and wool, and travellers "
    "stopped at the inn to rest their horses before the long climb over the pass. When the "
    "sun went down behind the hills, lamps were lit one by one along the quay, and the sound "
    "of music drifted across the water from the square."
)


def generated_sentences() -> list[str]:
    """64 varied review-like sentences, for output agreement when no data is given."""
    return [f"{s} {v}." for s, v in itertools.product(SUBJECTS, VERDICTS)]


def load_labelled(path: Path) -> tuple[list[str], list[str | int]]:
    """Texts and labels from JSONL (one {"text", "label"} per line) or CSV (a header row)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        else:
            with path.open(encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
    except (ValueError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{path} is not valid JSONL or CSV ({e}); one record per line "
                          'with "text" and "label"') from e
    if not rows:
        raise ConfigError(f"{path} holds no records")
    bad = next((i for i, r in enumerate(rows)
                if not isinstance(r, dict) or "text" not in r or "label" not in r), None)
    if bad is not None:
        raise ConfigError(f"{path}: record {bad + 1} lacks a \"text\" or \"label\" field")
    labels = [_label(r["label"]) for r in rows]
    return [str(r["text"]) for r in rows], labels


def _label(value: object) -> str | int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return text


def label_indices(labels: list[str | int], names: list[str]) -> list[int]:
    """Labels as class indices: ints as they are, names through the model's labels."""
    out = []
    for label in labels:
        if isinstance(label, int):
            if not 0 <= label < len(names):
                raise ConfigError(f"label {label} is outside the model's {len(names)} classes")
            out.append(label)
        elif label in names:
            out.append(names.index(label))
        else:
            raise ConfigError(f"label {label!r} is not one of the model's labels: "
                              f"{', '.join(names)}")
    return out


def read_text(path: Path) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text ({e})") from e
    if not text.strip():
        raise ConfigError(f"{path} is empty")
    return text
