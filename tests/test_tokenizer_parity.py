"""edgelm's tokenization equals transformers' AutoTokenizer, id for id."""

from __future__ import annotations

import functools

import pytest
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from edgelm.tokenizer import TextTokenizer

VARIED = [
    "",
    " ",
    "Hello, world!",
    "Café déjà vu, naïve résumé",
    "東京は日本の首都です。",
    "emoji 🙂🚀👩‍👩‍👧 done",
    "tabs\tand\nnewlines   and    runs of spaces",
    "UPPER lower MiXeD 12345 3.14159",
    "word " * 400,  # longer than the model: truncated the same way
]


@functools.lru_cache(maxsize=None)
def pair(folder):
    ours = TextTokenizer(folder, max_length=128, pad_token_id=0)
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    return ours, theirs


@pytest.mark.parametrize("name", ["bert-cls", "roberta-cls"])
def test_ids_match_autotokenizer(name, exported):
    ours, theirs = pair(exported(name, "fp32"))
    batch = ours.encode_batch(VARIED)
    for row, text in enumerate(VARIED):
        want = theirs(text, truncation=True, max_length=128)["input_ids"]
        n = int(batch.attention_mask[row].sum())
        assert batch.input_ids[row, :n].tolist() == want, text[:40]
    assert batch.truncated == [False] * 8 + [True]


def test_real_minilm_tokenizer_matches(minilm_export):
    ours, theirs = pair(minilm_export)
    for text in VARIED:
        want = theirs(text, truncation=True, max_length=ours.max_length)["input_ids"]
        assert ours.encode_batch([text]).encodings[0].ids == want


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_unicode_matches(exported, text):
    ours, theirs = pair(exported("roberta-cls", "fp32"))
    want = theirs(text, truncation=True, max_length=128)["input_ids"]
    assert ours.encode_batch([text]).encodings[0].ids == want
