"""Encoder tasks: text classification, sentence embeddings, token classification."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edgelm.errors import ConfigError
from edgelm.pipelines.base import EncoderPipeline, TextOutput
from edgelm.tokenizer import check_texts
from edgelm.types import Task


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class TextClassificationPipeline(EncoderPipeline):
    """`pipe(texts, top_k=1)` -> labels and scores, as transformers' pipeline."""

    task = Task.TEXT_CLASSIFICATION

    def __call__(self, texts: str | Sequence[str], *, top_k: int = 1) -> list[Any]:
        """One {"label", "score"} per text; with top_k > 1, a list of them per text.

        A text that was cut to the model's maximum length carries "truncated": True.
        """
        labels = self.manifest.labels
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= len(labels):
            raise ConfigError(f"top_k={top_k!r} must be between 1 and {len(labels)} (the "
                              "labels), an integer")
        items, _ = check_texts(texts)
        results = [self._rank(r, top_k) for r in self._run(items)]
        return [r[0] for r in results] if top_k == 1 else results

    def _rank(self, result: TextOutput, top_k: int) -> list[dict[str, Any]]:
        scores = softmax(result.output.astype(np.float64))
        best = np.argsort(-scores, kind="stable")[:top_k]
        ranked: list[dict[str, Any]] = [
            {"label": self.manifest.labels[i], "score": float(scores[i])} for i in best
        ]
        if result.truncated:
            for r in ranked:
                r["truncated"] = True
        return ranked


class EmbeddingPipeline(EncoderPipeline):
    """`pipe(texts)` -> an (n, dim) array of L2-normalized sentence embeddings."""

    task = Task.FEATURE_EXTRACTION

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        items, _ = check_texts(texts)
        return np.stack([r.output for r in self._run(items)]).astype(np.float32)


class TokenClassificationPipeline(EncoderPipeline):
    """`pipe(texts)` -> entities, grouped as transformers' aggregation_strategy="simple"."""

    task = Task.TOKEN_CLASSIFICATION

    def __call__(self, texts: str | Sequence[str]) -> list[Any]:
        """A list of entity dicts for one string; a list of such lists for a list."""
        items, single = check_texts(texts)
        entities = [self._entities(text, r) for text, r in zip(items, self._run(items))]
        return entities[0] if single else entities

    def _entities(self, text: str, result: TextOutput) -> list[dict[str, Any]]:
        enc = result.encoding
        scores = softmax(result.output[: len(enc.ids)].astype(np.float64))
        tokens = []
        for i, (special, (start, end)) in enumerate(zip(enc.special_tokens_mask, enc.offsets)):
            if special or start == end:
                continue
            label = int(scores[i].argmax())
            tokens.append(
                {"entity": self.manifest.labels[label], "score": float(scores[i, label]),
                 "start": start, "end": end}
            )
        groups = [self._merge(text, g) for g in group_entities(tokens)]
        return [g for g in groups if g["entity_group"] != "O"]

    @staticmethod
    def _merge(text: str, group: list[dict[str, Any]]) -> dict[str, Any]:
        start, end = group[0]["start"], group[-1]["end"]
        return {
            "entity_group": split_tag(group[0]["entity"])[1],
            "score": float(np.mean([t["score"] for t in group])),
            "word": text[start:end],
            "start": start,
            "end": end,
        }


def split_tag(label: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER"; labels without a B-/I- prefix count as "I"."""
    if label[:2] in ("B-", "I-"):
        return label[0], label[2:]
    return "I", label


def group_entities(tokens: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Runs of tokens with the same entity type, a "B-" tag starting a new run."""
    groups: list[list[dict[str, Any]]] = []
    for token in tokens:
        prefix, tag = split_tag(token["entity"])
        if groups and prefix != "B" and split_tag(groups[-1][-1]["entity"])[1] == tag:
            groups[-1].append(token)
        else:
            groups.append([token])
    return groups
