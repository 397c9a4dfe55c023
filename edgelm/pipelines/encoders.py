"""Encoder tasks: text classification, sentence embeddings, token classification."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edgelm.errors import ConfigError
from edgelm.pipelines.base import EncoderPipeline, TextOutput
from edgelm.tokenizer import Text, check_text, check_texts
from edgelm.types import ScoreFunction, Task


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class TextClassificationPipeline(EncoderPipeline):
    """`pipe(texts, top_k=1)` -> labels and scores, as transformers' pipeline.

    A text may be a pair, `{"text": ..., "text_pair": ...}` (cross-encoders, NLI);
    `zero_shot()` classifies against any labels through an NLI head.
    """

    task = Task.TEXT_CLASSIFICATION

    def __call__(self, texts: Any, *, top_k: int = 1,
                 function_to_apply: str | ScoreFunction | None = None) -> Any:
        """One {"label", "score"} per text; with top_k > 1, a list of them per text.

        Scores are the folder's `score_function` of the logits unless
        `function_to_apply` ("softmax", "sigmoid", "none") says otherwise. A text that
        was cut to the model's maximum length carries "truncated": True.
        """
        labels = self.manifest.labels
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= len(labels):
            raise ConfigError(f"top_k={top_k!r} must be between 1 and {len(labels)} (the "
                              "labels), an integer")
        scoring = self.score_function if function_to_apply is None \
            else ScoreFunction.parse(function_to_apply)
        items, single = _classification_inputs(texts)
        results = [self._rank(r, top_k, scoring) for r in self._run(items)]
        ranked = [r[0] for r in results] if top_k == 1 else results
        return ranked[0] if single and isinstance(texts, dict) else ranked

    @property
    def score_function(self) -> ScoreFunction:
        return self.manifest.score_function or ScoreFunction.of(None, len(self.manifest.labels))

    def zero_shot(self, sequences: str | Sequence[str], candidate_labels: str | Sequence[str],
                  *, hypothesis_template: str = "This example is {}.",
                  multi_label: bool = False) -> Any:
        """{"sequence", "labels", "scores"} per sequence, best label first.

        As transformers' zero-shot-classification: each (sequence, hypothesis) pair
        goes through the NLI head; the entailment logits are softmaxed over the labels,
        or, with `multi_label` (or one label), entailment against contradiction for
        each label alone.
        """
        entail = self._entailment_id()
        candidates = _candidate_labels(candidate_labels)
        if "{}" not in hypothesis_template:
            raise ConfigError(f"hypothesis_template {hypothesis_template!r} has no {{}} for "
                              "the label; write it as 'This example is {}.'")
        items, single = check_texts(sequences)
        pairs = [(text, hypothesis_template.format(label))
                 for text in items for label in candidates]
        logits = np.stack([r.output for r in self._run(pairs, strategy="only_first")])
        logits = logits.astype(np.float64).reshape(len(items), len(candidates), -1)
        if multi_label or len(candidates) == 1:
            contradiction = -1 if entail == 0 else 0
            scores = softmax(logits[..., [contradiction, entail]])[..., 1]
        else:
            scores = softmax(logits[..., entail])
        results = []
        for text, row in zip(items, scores):
            order = np.argsort(-row, kind="stable")
            results.append({"sequence": text, "labels": [candidates[i] for i in order],
                            "scores": [float(row[i]) for i in order]})
        return results[0] if single else results

    def _entailment_id(self) -> int:
        for i, label in enumerate(self.manifest.labels):
            if label.lower().startswith("entail"):
                return i
        raise ConfigError(f"{self.folder}'s labels {self.manifest.labels} have no "
                          "'entailment'; zero-shot classification needs an NLI model")

    def _rank(self, result: TextOutput, top_k: int, scoring: ScoreFunction
              ) -> list[dict[str, Any]]:
        logits = result.output.astype(np.float64)
        if scoring is ScoreFunction.SOFTMAX:
            scores = softmax(logits)
        elif scoring is ScoreFunction.SIGMOID:
            scores = 1.0 / (1.0 + np.exp(-logits))
        else:
            scores = logits
        best = np.argsort(-scores, kind="stable")[:top_k]
        ranked: list[dict[str, Any]] = [
            {"label": self.manifest.labels[i], "score": float(scores[i])} for i in best
        ]
        if result.truncated:
            for r in ranked:
                r["truncated"] = True
        return ranked


def _classification_inputs(texts: Any) -> tuple[list[Text], bool]:
    """Texts and {"text", "text_pair"} pairs as a list, and whether one was given."""
    if isinstance(texts, dict):
        return [_pair(texts, 0)], True
    if isinstance(texts, list) and any(isinstance(t, dict) for t in texts):
        return [_pair(t, i) if isinstance(t, dict) else check_text(t, f"text {i}")
                for i, t in enumerate(texts)], False
    items, single = check_texts(texts)
    return list(items), single


def _pair(item: dict[str, Any], index: int) -> Text:
    unknown = sorted(set(item) - {"text", "text_pair"})
    if unknown or "text" not in item:
        raise ConfigError(f"text {index} is a dict with keys {sorted(item)}; a text pair is "
                          '{"text": ..., "text_pair": ...}')
    text = check_text(item["text"], f"text {index}")
    if item.get("text_pair") is None:
        return text
    return text, check_text(item["text_pair"], f"text {index}'s text_pair")


def _candidate_labels(labels: str | Sequence[str]) -> list[str]:
    """A list of labels, or one string of comma-separated labels, as transformers takes."""
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",") if label.strip()]
    items, _ = check_texts(labels) if labels else ([], False)
    if not items:
        raise ConfigError("candidate_labels is empty; pass labels such as ['sports', 'politics']")
    return items


class EmbeddingPipeline(EncoderPipeline):
    """`pipe(texts)` -> an (n, dim) array of L2-normalized sentence embeddings."""

    task = Task.FEATURE_EXTRACTION

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        return self.embed_counted(texts)[0]

    def embed_counted(self, texts: str | Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """The embeddings, and how many tokens of each text the model read (truncated
        texts count what was kept): a server's usage without tokenizing twice."""
        items, _ = check_texts(texts)
        results = self._run(items)
        return (np.stack([r.output for r in results]).astype(np.float32),
                [len(r.encoding.ids) for r in results])


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
