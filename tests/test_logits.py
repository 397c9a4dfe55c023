"""numpy logits processing against transformers' processors and warpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.generation import logits_process as hf

from edgelm.generation.config import GenerationConfig
from edgelm.generation.logits import process, sample, warp

EOS = [3, 7]


def scores_and_sequences(seed: int):
    rng = np.random.default_rng(seed)
    scores = rng.normal(scale=3.0, size=(4, 50)).astype(np.float32)
    sequences = [rng.integers(0, 50, size=rng.integers(1, 12)).tolist() for _ in range(4)]
    return scores, sequences


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("penalty", [0.7, 1.3])
def test_repetition_penalty(seed, penalty):
    scores, sequences = scores_and_sequences(seed)
    config = GenerationConfig(repetition_penalty=penalty)
    ours = process(scores, sequences, 5, config, EOS)
    processor = hf.RepetitionPenaltyLogitsProcessor(penalty)
    for row, seq in enumerate(sequences):
        expected = processor(torch.tensor([seq]), torch.from_numpy(scores[row : row + 1]))
        np.testing.assert_allclose(ours[row], expected[0].numpy(), rtol=1e-6)


@pytest.mark.parametrize("generated", range(6))
def test_min_new_tokens_blocks_eos_until_reached(generated):
    scores, sequences = scores_and_sequences(0)
    config = GenerationConfig(min_new_tokens=3, max_new_tokens=10)
    ours = process(scores, sequences, generated, config, EOS)
    prompt_len = 4
    processor = hf.MinNewTokensLengthLogitsProcessor(prompt_len, 3, EOS)
    ids = torch.zeros((4, prompt_len + generated), dtype=torch.long)
    expected = processor(ids, torch.from_numpy(scores.copy())).numpy()
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("temperature,top_k,top_p", [(0.7, 0, 1.0), (1.0, 5, 1.0),
                                                     (1.0, 0, 0.8), (1.3, 10, 0.5)])
def test_warpers(seed, temperature, top_k, top_p):
    scores, _ = scores_and_sequences(seed)
    config = GenerationConfig(do_sample=True, temperature=temperature, top_k=top_k,
                              top_p=top_p)
    expected = torch.from_numpy(scores.copy())
    ids = torch.zeros((4, 1), dtype=torch.long)
    for warper in (hf.TemperatureLogitsWarper(temperature) if temperature != 1.0 else None,
                   hf.TopKLogitsWarper(top_k) if top_k else None,
                   hf.TopPLogitsWarper(top_p) if top_p < 1.0 else None):
        if warper is not None:
            expected = warper(ids, expected)
    ours = warp(scores, config)
    np.testing.assert_array_equal(np.isinf(ours), np.isinf(expected.numpy()))
    finite = ~np.isinf(ours)
    np.testing.assert_allclose(ours[finite], expected.numpy()[finite], rtol=1e-6)


def test_sample_follows_the_distribution():
    scores = np.log(np.array([[0.1, 0.2, 0.7]], dtype=np.float32)).repeat(20000, axis=0)
    draws = sample(scores, np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / len(draws), [0.1, 0.2, 0.7],
                               atol=0.01)
    masked = scores.copy()
    masked[:, 2] = -np.inf
    assert set(sample(masked, np.random.default_rng(1))) <= {0, 1}


@pytest.mark.parametrize("width", [7, 300, 2048, 4 * 5000 + 17])
@pytest.mark.parametrize("seed", range(6))
def test_beam_top_k_is_a_stable_sort_of_the_scores(width, seed):
    """Beam search's top-k ranks only the scores above a floor taken from block maxima;
    it must pick exactly what a stable descending sort picks: ties (exact repeats,
    rounded scores) lowest index first, rows of -inf but a few (forced tokens) and
    rows whose top scores crowd one block."""
    from edgelm.generation.search import _topk

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, width)).astype(np.float32)
    x[0, rng.integers(0, width, 5)] = x[0].max()
    x[1] = -np.inf
    x[1, rng.integers(0, width, 3)] = 0.0
    x[2] = np.round(x[2], 1)
    crowd = min(12, width)
    x[3, :crowd] = 10.0 + np.arange(crowd, dtype=np.float32)
    for k in (1, 2, 8, 9):
        if k <= width:
            assert np.array_equal(_topk(x, k), np.argsort(-x, axis=-1, kind="stable")[:, :k])
