"""Text pairs (cross-encoders, NLI) and zero-shot classification against transformers."""

from __future__ import annotations

import json

import pytest
import transformers

import edgelm

QUERY = "Which models run on edge devices?"
PASSAGES = ["Edge devices run small, fast language models.",
            "The quick brown fox jumps over the lazy dog.",
            "Terrible, boring and far too long. " * 30]  # longer than the model: truncated
SEQUENCES = ["I loved this movie; the acting was wonderful.", "Emoji 🙂🚀 and numbers 12345."]
LABELS = ["movies", "numbers", "weather"]


def reference(checkpoint, task: str):
    return transformers.pipeline(task, model=str(checkpoint), device="cpu")


def test_cross_encoder_scores_pairs_with_a_sigmoid_as_transformers(checkpoints, exported):
    folder = exported("bert-rerank", "fp32")
    assert json.loads((folder / "edgelm.json").read_text())["score_function"] == "sigmoid"
    pipe = edgelm.Pipeline(folder, threads=1)
    pairs = [{"text": QUERY, "text_pair": p} for p in PASSAGES]
    want = reference(checkpoints["bert-rerank"], "text-classification")(pairs, truncation=True)
    got = pipe(pairs)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    for g, w in zip(got, want):
        assert 0 < g["score"] < 1 and g["score"] == pytest.approx(w["score"], abs=1e-5)
    assert got[2].get("truncated") and not got[0].get("truncated")
    # One pair alone gives a dict, as transformers' pipeline does.
    alone = pipe(pairs[0])
    assert isinstance(alone, dict) and alone["score"] == pytest.approx(got[0]["score"], abs=1e-6)


def test_nli_pairs_rank_all_labels_as_transformers(checkpoints, exported):
    pipe = edgelm.Pipeline(exported("bert-nli", "fp32"), threads=1)
    pair = {"text": SEQUENCES[0], "text_pair": "This example is about movies."}
    want = reference(checkpoints["bert-nli"], "text-classification")(pair, top_k=3)
    got = pipe([pair, SEQUENCES[1]], top_k=3)[0]
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)
    raw = pipe(pair, top_k=3, function_to_apply="none")
    assert sum(r["score"] for r in raw) != pytest.approx(1.0)  # logits, not probabilities


@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_matches_transformers(multi_label, checkpoints, exported):
    pipe = edgelm.Pipeline(exported("bert-nli", "fp32"), threads=1, batch_size=4)
    zero_shot = reference(checkpoints["bert-nli"], "zero-shot-classification")
    for sequence in SEQUENCES:
        want = zero_shot(sequence, candidate_labels=LABELS, multi_label=multi_label)
        got = pipe.zero_shot(sequence, LABELS, multi_label=multi_label)
        assert got["sequence"] == sequence and got["labels"] == want["labels"]
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)
    both = pipe.zero_shot(SEQUENCES, ", ".join(LABELS), multi_label=multi_label)
    assert [b["labels"] for b in both] == [pipe.zero_shot(s, LABELS, multi_label=multi_label)[
        "labels"] for s in SEQUENCES]


def test_zero_shot_with_a_custom_template_and_one_label(checkpoints, exported):
    pipe = edgelm.Pipeline(exported("bert-nli", "fp32"), threads=1)
    template = "The topic of this text is {}."
    want = reference(checkpoints["bert-nli"], "zero-shot-classification")(
        SEQUENCES[1], candidate_labels=["numbers"], hypothesis_template=template)
    got = pipe.zero_shot(SEQUENCES[1], ["numbers"], hypothesis_template=template)
    assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda p: p({"text": "a", "pair": "b"}), "text pair is"),
    (lambda p: p({"text": "a", "text_pair": 3}), "text 0's text_pair must be a string"),
    (lambda p: p("a", function_to_apply="relu"), "scorefunction 'relu' is not one of"),
    (lambda p: p.zero_shot("a", []), "candidate_labels is empty"),
    (lambda p: p.zero_shot("a", ["x"], hypothesis_template="About"), "has no {}"),
])
def test_bad_pairs_get_one_line_errors(call, message, exported):
    pipe = edgelm.Pipeline(exported("bert-nli", "fp32"), threads=1)
    with pytest.raises(edgelm.ConfigError, match=message):
        call(pipe)


def test_zero_shot_needs_an_entailment_label(exported):
    pipe = edgelm.Pipeline(exported("bert-cls", "fp32"), threads=1)
    with pytest.raises(edgelm.ConfigError, match="no 'entailment'"):
        pipe.zero_shot("a text", ["x", "y"])
