"""Real packaged weights: all-MiniLM-L6-v2 embeddings and the fine-tuned sentiment classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edgelm

SENTENCES = [
    "A man is eating food.", "A man is eating a piece of bread.",
    "The girl is carrying a baby.", "A man is riding a horse.",
    "Une phrase en français, avec des accents.", "東京は日本の首都です。",
    "word " * 600,  # longer than 256 tokens: truncated on both sides
]


def minilm_reference(texts: list[str]) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    from edgelm.export.zoo import minilm_dir

    tok, model = AutoTokenizer.from_pretrained(minilm_dir()), AutoModel.from_pretrained(minilm_dir())
    batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


def test_minilm_fp32_embeddings_match_sentence_transformers_recipe(minilm_export):
    ours = edgelm.Pipeline(minilm_export, threads=2)(SENTENCES)
    cosines = (ours * minilm_reference(SENTENCES)).sum(1)
    assert cosines.min() >= 0.9999
    assert float(ours[0] @ ours[1]) == pytest.approx(0.755, abs=0.01)


# What the gate below protects (benchmarks/results/classifier_accuracy-*.md, 2,000 held-out
# snippets, PyTorch 1,663 right = 0.8315): fp32 predicts what PyTorch predicts (0 flips on
# every CPU measured), and int8 stays within the 0.3-point goal (6 texts) of PyTorch:
#                      AMD EPYC AVX2   AMD EPYC Zen 4 VNNI   Intel Xeon VNNI+AMX
#   int8               +5 (29 flips)   -6 (32 flips)         -6
#   int8 --keep-float  -1 (19 flips)   +2 (22 flips)         -3
# onnxruntime's int8 kernels differ between these CPUs (AVX2 vpmaddubsw vs AVX-512 VNNI),
# which moves texts that sit on the decision boundary: 11 texts between the extremes above.
# The gate is a regression guard, not the goal: it allows the goal plus that measured
# spread between CPU kinds (12 texts), and twice the most flips measured (64). A real
# regression is far outside both: on an earlier, weaker training of this classifier,
# per-tensor int8 weights lost 55 texts (173 flips).
# Counts of texts are integers: no float rounding can tip the comparison.
FP32_MAX_FLIPS = 2
INT8_MAX_LOST = 12
INT8_MAX_FLIPS = 64


@pytest.mark.slow
def test_sentiment_classifier_int8_keeps_accuracy(tmp_path):
    """fp32 predicts PyTorch's labels; int8 (with or without --keep-float) stays within
    the gate above of PyTorch's accuracy."""
    from edgelm.export import ExportOptions, export_model
    from edgelm.export.zoo import sentiment_classifier_dir, sentiment_holdout

    checkpoint, holdout = sentiment_classifier_dir(), sentiment_holdout()
    texts, labels = [t for t, _ in holdout], np.array([y for _, y in holdout])
    reference = torch_predictions(checkpoint, texts)
    variants = {"fp32": ExportOptions(precision="fp32"), "int8": ExportOptions(precision="int8"),
                "int8-keep": ExportOptions(precision="int8", keep_float=("attention", "first-layer"))}
    right, flips = {"pytorch": int((reference == labels).sum())}, {}
    for name, options in variants.items():
        manifest = export_model(checkpoint, tmp_path / name, options)
        pipe = edgelm.Pipeline(tmp_path / name, threads=2)
        predicted = np.array([manifest.labels.index(r["label"]) for r in pipe(texts)])
        right[name] = int((predicted == labels).sum())
        flips[name] = int((predicted != reference).sum())
    print("texts right", right, "flips vs PyTorch", flips)
    assert flips["fp32"] <= FP32_MAX_FLIPS, flips
    for name in ("int8", "int8-keep"):
        assert right["pytorch"] - right[name] <= INT8_MAX_LOST, (name, right)
        assert flips[name] <= INT8_MAX_FLIPS, (name, flips)


def torch_predictions(checkpoint, texts) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    predicted = []
    for start in range(0, len(texts), 64):
        batch = tok(texts[start:start + 64], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            predicted.extend(model(**batch).logits.argmax(-1).tolist())
    return np.array(predicted)
