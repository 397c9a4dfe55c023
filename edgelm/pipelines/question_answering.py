"""Extractive question answering: the answer's span in the context, as transformers 4.x.

transformers 5 dropped its question-answering pipeline; this one keeps what 4.57's
returned for fast tokenizers: the question and context are tokenized as a pair, the
context cut into windows of `max_seq_len` tokens overlapping by `doc_stride`; in each
window the start and end logits are softmaxed over the context tokens and the leading
[CLS], and a span scores start[s] * end[e] for s <= e < s + max_answer_len; spans are
widened to whole words (`align_to_words`) and the best `top_k` over all windows kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from tokenizers import Encoding

from edgelm.errors import ConfigError, check_integer
from edgelm.limits import LIMITS
from edgelm.pipelines.base import EncoderPipeline
from edgelm.pipelines.encoders import softmax
from edgelm.tokenizer import check_text, encode, padded
from edgelm.types import Task

MASKED = np.float32(-10000.0)  # the logit transformers gives tokens outside the context


@dataclass(frozen=True)
class _Window:
    example: int  # which (question, context) pair it belongs to
    encoding: Encoding


class QuestionAnsweringPipeline(EncoderPipeline):
    """`pipe(question=..., context=...)` -> {"answer", "score", "start", "end"}."""

    task = Task.QUESTION_ANSWERING

    def __call__(self, question: str | Sequence[str], context: str | Sequence[str], *,
                 top_k: int = 1, doc_stride: int = 128, max_answer_len: int = 15,
                 max_seq_len: int = 384, handle_impossible_answer: bool = False,
                 align_to_words: bool = True) -> Any:
        """The best answer (a dict) per pair; with top_k > 1, a list of up to top_k.

        `question` and `context` are strings or lists of equal length (one string is
        paired with every item of the other list). `start`/`end` index the context's
        characters; with `handle_impossible_answer`, the empty answer competes too.
        """
        pairs, single = _pairs(question, context)
        max_seq_len = min(check_integer("max_seq_len", max_seq_len, 8),
                          self.manifest.max_length)
        doc_stride = min(check_integer("doc_stride", doc_stride, 0), max_seq_len // 2)
        check_integer("top_k", top_k, 1, 100)
        check_integer("max_answer_len", max_answer_len, 1)
        windows = self._windows(pairs, max_seq_len, doc_stride)
        answers: list[list[dict[str, Any]]] = [[] for _ in pairs]
        null_score = [1e6] * len(pairs)
        for start in range(0, len(windows), self.batch_size):
            chunk = windows[start : start + self.batch_size]
            batch = padded([w.encoding for w in chunk], self.manifest.pad_token_id)
            logits = self._forward(batch)
            for window, row in zip(chunk, logits):
                spans, null = _best_spans(window.encoding, row, top_k, max_answer_len)
                null_score[window.example] = min(null_score[window.example], null)
                context_text = pairs[window.example][1]
                for s, e, score in spans:
                    begin, end = _characters(window.encoding, s, e, align_to_words)
                    answers[window.example].append(
                        {"score": score, "start": begin, "end": end,
                         "answer": context_text[begin:end]})
        results = []
        for found, null in zip(answers, null_score):
            if handle_impossible_answer:
                found.append({"score": null, "start": 0, "end": 0, "answer": ""})
            best = sorted(found, key=lambda a: a["score"], reverse=True)[:top_k]
            results.append(best[0] if len(best) == 1 else best)
        return results[0] if single else results

    def _windows(self, pairs: list[tuple[str, str]], max_seq_len: int, doc_stride: int
                 ) -> list[_Window]:
        """Every pair's windows, the context cut with the question kept whole in each."""
        questions = encode(self.tokenizer.inner, [q for q, _ in pairs], special_tokens=False)
        specials = self.tokenizer.inner.num_special_tokens_to_add(True)
        for question in questions:
            asked = len(question.ids)
            room = max_seq_len - specials - asked
            if room <= doc_stride:
                raise ConfigError(
                    f"the question has {asked} tokens, which leaves {max(room, 0)} of "
                    f"max_seq_len={max_seq_len} for the context, not more than doc_stride="
                    f"{doc_stride}; shorten the question or lower doc_stride")
        firsts = self.tokenizer.encode(pairs, strategy="only_second", max_length=max_seq_len,
                                       stride=doc_stride)
        return [_Window(i, e) for i, first in enumerate(firsts)
                for e in (first, *first.overflowing)]


def _best_spans(enc: Encoding, logits: np.ndarray, top_k: int, max_answer_len: int
                ) -> tuple[list[tuple[int, int, float]], float]:
    """This window's top_k (start, end, score) in the context, and its null score."""
    n = len(enc.ids)
    allowed = np.array([sequence == 1 for sequence in enc.sequence_ids], dtype=bool)
    if enc.special_tokens_mask[0]:  # the leading [CLS] (<s>) stays in the softmax
        allowed |= np.asarray(enc.ids) == enc.ids[0]
    start = softmax(np.where(allowed, logits[:n, 0], MASKED))
    end = softmax(np.where(allowed, logits[:n, 1], MASKED))
    null = float(start[0] * end[0])
    start[0] = end[0] = 0.0
    scores = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1).ravel()
    best = np.argsort(-scores, kind="stable")[:top_k]
    starts, ends = np.unravel_index(best, (n, n))
    keep = allowed[starts] & allowed[ends]
    spans = [(int(s), int(e), float(scores[i]))
             for s, e, i in zip(starts[keep], ends[keep], best[keep])]
    return spans, null


def _characters(enc: Encoding, start: int, end: int, align_to_words: bool) -> tuple[int, int]:
    """The context's characters of tokens start..end, widened to whole words."""
    if align_to_words:
        first, last = enc.token_to_word(start), enc.token_to_word(end)
        begin = enc.word_to_chars(first, 1) if first is not None else None
        finish = enc.word_to_chars(last, 1) if last is not None else None
        if begin is not None and finish is not None:
            return begin[0], finish[1]
    return enc.offsets[start][0], enc.offsets[end][1]


def _pairs(question: Any, context: Any) -> tuple[list[tuple[str, str]], bool]:
    single = isinstance(question, str) and isinstance(context, str)
    questions = [question] if isinstance(question, str) else _strings("question", question)
    contexts = [context] if isinstance(context, str) else _strings("context", context)
    if len(questions) == 1 and len(contexts) > 1:
        questions *= len(contexts)
    elif len(contexts) == 1 and len(questions) > 1:
        contexts *= len(questions)
    if len(questions) != len(contexts):
        raise ConfigError(f"got {len(questions)} questions and {len(contexts)} contexts; "
                          "pass lists of equal length (or one string for either)")
    for i, (q, c) in enumerate(zip(questions, contexts)):
        check_text(q, f"question {i}")
        check_text(c, f"context {i}")
        if not q.strip() or not c.strip():
            raise ConfigError(f"question {i} or its context is empty; pass non-empty text")
        if len(c) > LIMITS.context_chars:
            raise ConfigError(f"context {i} has {len(c):,} characters, more than "
                              f"{LIMITS.context_chars:,}; split it and ask each part")
        if len(q) > LIMITS.text_chars(512):
            raise ConfigError(f"question {i} has {len(q):,} characters; shorten it")
    return list(zip(questions, contexts)), single


def _strings(what: str, value: Any) -> list[Any]:
    if isinstance(value, (bytes, bytearray)) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"{what} must be a string or a non-empty list of strings, "
                          f"got {type(value).__name__}")
    return list(value)
