"""Logits processing in numpy, in transformers' order and with its semantics."""

from __future__ import annotations

import numpy as np

from edgelm.generation.config import GenerationConfig


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def process(scores: np.ndarray, sequences: list[list[int]], generated: int,
            config: GenerationConfig, eos_ids: list[int]) -> np.ndarray:
    """Repetition penalty, min_new_tokens, suppressed tokens, then forced first / last
    tokens (rows are `sequences`, prompt included)."""
    scores = scores.astype(np.float32, copy=True)
    if config.repetition_penalty != 1.0:
        for row, tokens in enumerate(sequences):
            seen = np.unique(np.asarray(tokens, dtype=np.int64))
            picked = scores[row, seen]
            scores[row, seen] = np.where(picked < 0, picked * config.repetition_penalty,
                                         picked / config.repetition_penalty)
    if generated < config.min_new_tokens and eos_ids:
        scores[:, eos_ids] = -np.inf
    if config.suppress_tokens:
        scores[:, [t for t in config.suppress_tokens if t < scores.shape[-1]]] = -np.inf
    forced = config.forced_bos_token_id if generated == 0 else None
    if generated == config.max_new_tokens - 1 and config.forced_eos_token_id is not None:
        forced = config.forced_eos_token_id
    if forced is not None and forced < scores.shape[-1]:
        scores[:] = -np.inf
        scores[:, forced] = 0
    return scores


def warp(scores: np.ndarray, config: GenerationConfig) -> np.ndarray:
    """Temperature, top-k, top-p, as transformers' sampling warpers (-inf outside)."""
    scores = scores / np.float32(config.temperature) if config.temperature != 1.0 else scores
    if config.top_k and config.top_k < scores.shape[-1]:
        kth = np.partition(scores, -config.top_k, axis=-1)[:, -config.top_k][:, None]
        scores = np.where(scores < kth, -np.inf, scores)
    if config.top_p < 1.0:
        order = np.argsort(scores, axis=-1)  # ascending, as transformers sorts
        ranked = np.take_along_axis(scores, order, axis=-1)
        probs = np.exp(log_softmax(ranked))
        cumulative = np.cumsum(probs, axis=-1)
        drop = cumulative <= 1 - config.top_p
        drop[:, -1] = False  # keep at least one token
        removed = np.zeros_like(drop)
        np.put_along_axis(removed, order, drop, axis=-1)
        scores = np.where(removed, -np.inf, scores)
    return scores


def sample(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    probs = np.exp(log_softmax(scores.astype(np.float64)))
    cumulative = np.cumsum(probs, axis=-1)
    draws = rng.random(scores.shape[0]) * cumulative[:, -1]
    picked = (cumulative < draws[:, None]).sum(axis=-1)
    return np.minimum(picked, scores.shape[-1] - 1)
