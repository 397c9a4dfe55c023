"""The packaged real models in edgelm.export.zoo, checked in PyTorch (slow: builds them once)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_sentiment_classifier_beats_80_percent_on_holdout():
    """The fine-tuned MiniLM classifies the 2,000 held-out movie snippets > 80% right."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgelm.export.zoo import sentiment_classifier_dir, sentiment_holdout

    checkpoint, holdout = sentiment_classifier_dir(), sentiment_holdout()
    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    correct = 0
    for start in range(0, len(holdout), 64):
        texts, labels = zip(*holdout[start:start + 64])
        batch = tok(list(texts), padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            predicted = model(**batch).logits.argmax(-1)
        correct += int((predicted == torch.tensor(labels)).sum())
    assert correct / len(holdout) > 0.8, correct / len(holdout)


def test_smollm2_greedy_continuation():
    """SmolLM2 converted from the packaged GGUF continues a story as the original does."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgelm.export.zoo import smollm2_dir

    folder = smollm2_dir()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = tok("Once upon a time, there was a little girl who", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    text = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text.startswith(" loved to play"), text
    assert tok.chat_template, "the chat template was lost in conversion"
