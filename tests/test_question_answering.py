"""Extractive question answering against PyTorch and transformers' tokenizer.

transformers 5 no longer has a question-answering pipeline, so the reference here is
written out from its 4.x definition, independently of edgelm's: the transformers
tokenizer cuts the context into overlapping windows, the PyTorch model scores them,
and every span (s <= e < s + max_answer_len, both in the context) is scored
softmax(start)[s] * softmax(end)[e] by brute force, the softmax taken over the
context tokens and the leading [CLS]; spans widen to whole words.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

import edgelm
from tests.fixtures import ENCODERS

CONTEXT = ("The quick brown fox jumps over the lazy dog. Edge devices run small, fast "
           "language models. Café déjà vu: naïve résumé, coöperate! Emoji 🙂🚀 and "
           "numbers 12345 67.89 mixed in text. I loved this movie; the acting was "
           "wonderful and the plot gripping.")
QUESTIONS = ["What does the fox jump over?", "Which models run on edge devices?"]
FIXTURES = [name for name in ENCODERS if name.endswith("-qa")]


def reference_spans(checkpoint, question: str, context: str, *, max_seq_len: int,
                    doc_stride: int, max_answer_len: int) -> list[tuple[float, int, int]]:
    """Every candidate span of every window: (score, start char, end char), best first."""
    tok = transformers.AutoTokenizer.from_pretrained(checkpoint)
    model_class = getattr(transformers, ENCODERS[checkpoint.name][0])
    model = model_class.from_pretrained(checkpoint, attn_implementation="eager").eval()
    enc = tok(question, context, truncation="only_second", max_length=max_seq_len,
              stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
              padding="longest", return_token_type_ids=True, return_tensors="pt")
    feed = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if model.config.type_vocab_size > 1:
        feed["token_type_ids"] = enc["token_type_ids"]
    with torch.no_grad():
        out = model(**feed)
    spans = []
    for w in range(len(enc["input_ids"])):
        ids = enc["input_ids"][w].tolist()
        sequence = enc.sequence_ids(w)
        words = enc.word_ids(w)
        offsets = enc["offset_mapping"][w].tolist()
        allowed = [sequence[i] == 1 or ids[i] == tok.cls_token_id for i in range(len(ids))]
        allowed = [a and bool(enc["attention_mask"][w][i]) for i, a in enumerate(allowed)]

        def probabilities(logits: torch.Tensor) -> list[float]:
            kept = [float(x) if allowed[i] else -10000.0 for i, x in enumerate(logits)]
            top = max(kept)
            exps = [np.exp(x - top) for x in kept]
            return [x / sum(exps) for x in exps]

        start, end = probabilities(out.start_logits[w]), probabilities(out.end_logits[w])

        def characters(token: int) -> tuple[int, int]:
            same = [i for i in range(len(ids)) if sequence[i] == 1 and words[i] == words[token]]
            return offsets[same[0]][0], offsets[same[-1]][1]

        for s in range(1, len(ids)):
            for e in range(s, min(s + max_answer_len, len(ids))):
                if allowed[s] and allowed[e] and sequence[s] == 1 and sequence[e] == 1:
                    spans.append((start[s] * end[e], characters(s)[0], characters(e)[1]))
    return sorted(spans, reverse=True)


@pytest.mark.parametrize("name", FIXTURES)
def test_answers_match_pytorch_over_strided_windows(name, checkpoints, exported):
    pipe = edgelm.Pipeline(exported(name, "fp32"), threads=1, batch_size=3)
    assert isinstance(pipe, edgelm.QuestionAnsweringPipeline)
    options = dict(max_seq_len=40, doc_stride=12, max_answer_len=6)
    for question in QUESTIONS:
        got = pipe(question=question, context=CONTEXT, top_k=5, **options)
        want = reference_spans(checkpoints[name], question, CONTEXT, **options)
        assert len(want) > 50 and len(got) == 5  # several windows, many candidates
        for rank, answer in enumerate(got):
            assert set(answer) == {"score", "start", "end", "answer"}
            assert answer["answer"] == CONTEXT[answer["start"]:answer["end"]]
            # Float rounding may swap spans whose scores tie to 1e-4, so each answer is
            # checked against the reference's score at its rank and among the spans
            # that have that score.
            score = pytest.approx(want[rank][0], rel=1e-4)
            assert answer["score"] == score
            assert (answer["start"], answer["end"]) in {(s, e) for p, s, e in want if p == score}


@pytest.mark.parametrize("name", FIXTURES)
def test_single_and_batched_calls_agree(name, exported):
    pipe = edgelm.Pipeline(exported(name, "fp32"), threads=1, batch_size=2)
    alone = [pipe(question=q, context=CONTEXT) for q in QUESTIONS]
    together = pipe(question=QUESTIONS, context=CONTEXT)
    assert [a["answer"] for a in together] == [a["answer"] for a in alone]
    assert np.allclose([a["score"] for a in together], [a["score"] for a in alone], rtol=1e-5)
    assert isinstance(alone[0], dict) and isinstance(together, list)


def test_impossible_answer_competes_with_its_null_score(exported):
    pipe = edgelm.Pipeline(exported("bert-qa", "fp32"), threads=1)
    answers = pipe(question=QUESTIONS[0], context=CONTEXT, top_k=100,
                   handle_impossible_answer=True, max_answer_len=3)
    empty = [a for a in answers if a["answer"] == ""]
    assert len(empty) == 1 and (empty[0]["start"], empty[0]["end"]) == (0, 0)
    assert 0 < empty[0]["score"] < 1
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True)


def test_export_writes_span_logits_and_validates_span_choices(exported):
    folder = exported("bert-qa", "int8")
    manifest = json.loads((folder / "edgelm.json").read_text())
    assert manifest["task"] == "question-answering"
    assert manifest["outputs"] == ["span_logits"] and manifest["labels"] == ["start", "end"]
    # int8 on random weights: most chosen start/end tokens still agree with PyTorch.
    assert manifest["validation"]["top1_agreement"] >= 0.8
    answer = edgelm.Pipeline(folder, threads=1)(question=QUESTIONS[1], context=CONTEXT)
    assert answer["answer"] == CONTEXT[answer["start"]:answer["end"]] and answer["answer"]


@pytest.mark.parametrize("call, message", [
    (dict(question=["a?", "b?"], context=["x", "y", "z"]), "2 questions and 3 contexts"),
    (dict(question="", context=CONTEXT), "empty"),
    (dict(question="why?", context=CONTEXT, top_k=0), "top_k=0"),
    (dict(question="why?", context=CONTEXT, doc_stride=-1), "doc_stride=-1"),
    (dict(question="why " * 60, context=CONTEXT, max_seq_len=48), "shorten the question"),
    (dict(question="why?", context=b"bytes"), "context must be a string"),
])
def test_bad_calls_get_one_line_errors(call, message, exported):
    pipe = edgelm.Pipeline(exported("bert-qa", "fp32"), threads=1)
    with pytest.raises(edgelm.ConfigError, match=message):
        pipe(**call)


def test_cli_run_answers_questions_from_a_context(exported):
    from click.testing import CliRunner

    from edgelm.cli import main

    folder = str(exported("bert-qa", "fp32"))
    result = CliRunner().invoke(main, ["run", folder, *QUESTIONS, "--context", CONTEXT,
                                       "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    answers = json.loads(result.output)
    assert len(answers) == 2 and all(CONTEXT[a["start"]:a["end"]] == a["answer"] for a in answers)
    missing = CliRunner().invoke(main, ["run", folder, QUESTIONS[0]])
    assert missing.exit_code == 2 and "--context goes with question-answering" in missing.output
