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


@pytest.mark.slow
def test_sentiment_classifier_int8_keeps_accuracy(tmp_path):
    """fp32 matches PyTorch; int8 (with or without --keep-float) loses at most 0.3 point.

    Measured on an AVX2 CPU: benchmarks/results/classifier_accuracy.md.
    """
    from edgelm.export import ExportOptions, export_model
    from edgelm.export.zoo import sentiment_classifier_dir, sentiment_holdout

    checkpoint, holdout = sentiment_classifier_dir(), sentiment_holdout()
    texts, labels = [t for t, _ in holdout], np.array([y for _, y in holdout])
    variants = {"fp32": ExportOptions(precision="fp32"), "int8": ExportOptions(precision="int8"),
                "int8-keep": ExportOptions(precision="int8", keep_float=("attention", "first-layer"))}
    accuracy = {}
    for name, options in variants.items():
        manifest = export_model(checkpoint, tmp_path / name, options)
        pipe = edgelm.Pipeline(tmp_path / name, threads=2)
        predicted = [manifest.labels.index(r["label"]) for r in pipe(texts)]
        accuracy[name] = float((np.array(predicted) == labels).mean())
    reference = torch_accuracy(checkpoint, texts, labels)
    print("accuracy", reference, accuracy)
    assert accuracy["fp32"] == pytest.approx(reference, abs=0.0005)
    assert reference - accuracy["int8"] <= 0.003, (reference, accuracy)
    assert reference - accuracy["int8-keep"] <= 0.003, (reference, accuracy)


def torch_accuracy(checkpoint, texts, labels) -> float:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    predicted = []
    for start in range(0, len(texts), 64):
        batch = tok(texts[start:start + 64], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            predicted.extend(model(**batch).logits.argmax(-1).tolist())
    return float((np.array(predicted) == labels).mean())
