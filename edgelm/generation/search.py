"""Greedy, sampling and beam search over a DecoderRunner, written in numpy.

Each follows transformers' `generate` step for step (processors, then argmax,
sampling or beam bookkeeping), so fp32 exports give the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from edgelm.generation.config import GenerationConfig
from edgelm.generation.logits import log_softmax, process, sample, warp
from edgelm.generation.runner import DecoderRunner

# A row is finished when this says so (stop strings); called with row and its new tokens.
StopCheck = Callable[[int, list[int]], bool]
NEG = np.float32(-1e9)


def capacity(prompts: list[list[int]], config: GenerationConfig) -> int:
    return max(len(p) for p in prompts) + config.max_new_tokens


def history(config: GenerationConfig, prompts: list[list[int]], generated: Any
            ) -> list[list[int]]:
    """Each row's tokens so far, which only the repetition penalty reads."""
    if config.repetition_penalty == 1.0:
        return []
    return [[*p, *g] for p, g in zip(prompts, generated)]


def sample_or_greedy(
    runner: DecoderRunner, prompts: list[list[int]], config: GenerationConfig,
    eos_ids: list[int], *, pad_id: int, stopped: StopCheck | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields each step's new token per row and which rows were still generating.

    Rows already finished are fed pad_id and are not active.
    """
    rng = np.random.default_rng(config.seed)
    last, state = runner.prefill(prompts, capacity(prompts, config), pad_id=pad_id)
    generated: list[list[int]] = [[] for _ in prompts]
    finished = np.zeros(len(prompts), dtype=bool)
    for step in range(config.max_new_tokens):
        scores = process(last, history(config, prompts, generated), step, config, eos_ids)
        if config.do_sample:
            tokens = sample(warp(scores, config), rng)
        else:
            tokens = scores.argmax(axis=-1)
        active = ~finished
        tokens = np.where(active, tokens, pad_id)
        for row in np.flatnonzero(active).tolist():
            token = int(tokens[row])
            generated[row].append(token)
            if token in eos_ids or (stopped is not None and stopped(row, generated[row])):
                finished[row] = True
        yield tokens, active
        if finished.all() or step + 1 == config.max_new_tokens:
            return
        last = runner.step(state, tokens)


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]  # generated tokens, eos included when it ended on one
    score: float


def beam_search(
    runner: DecoderRunner, prompts: list[list[int]], config: GenerationConfig,
    eos_ids: list[int], *, pad_id: int,
) -> list[list[Hypothesis]]:
    """The best `num_return_sequences` hypotheses per prompt, best first.

    Mirrors transformers' vectorized beam search: 2 * num_beams candidates (more
    with several eos ids), finished hypotheses scored by sum of log-probs over
    generated_length ** length_penalty, and its early-stopping heuristic.
    """
    batch, beams, steps = len(prompts), config.num_beams, config.max_new_tokens
    keep = max(2, 1 + len(eos_ids)) * beams
    top_mask = np.arange(keep) < beams
    last, state = runner.prefill(prompts, capacity(prompts, config), pad_id=pad_id)
    rows = np.repeat(np.arange(batch), beams)
    state = state.select(rows)
    last = last[rows]

    running = np.zeros((batch, beams, steps), dtype=np.int64)
    running_scores = np.zeros((batch, beams), dtype=np.float32)
    running_scores[:, 1:] = NEG
    done = np.full((batch, beams, steps), pad_id, dtype=np.int64)
    done_len = np.zeros((batch, beams), dtype=np.int64)
    done_scores = np.full((batch, beams), NEG, dtype=np.float32)
    done_flag = np.zeros((batch, beams), dtype=bool)
    improvable = np.ones((batch, 1), dtype=bool)
    beam_prompts = [prompts[i // beams] for i in range(batch * beams)]
    for t in range(steps):
        so_far = running.reshape(batch * beams, steps)[:, :t]
        logp = process(log_softmax(last.astype(np.float32)),
                       history(config, beam_prompts, so_far), t, config, eos_ids)
        vocab = logp.shape[-1]
        total = (logp.reshape(batch, beams, vocab) + running_scores[:, :, None]).reshape(batch, -1)
        top = _topk(total, keep)
        top_scores = np.take_along_axis(total, top, axis=-1)
        parent, token = top // vocab, top % vocab
        cand = np.take_along_axis(running, parent[:, :, None], axis=1)
        cand[:, :, t] = token
        hits = np.isin(token, eos_ids) | (t + 1 >= steps)

        live = top_scores + hits.astype(np.float32) * NEG
        pick = _topk(live, beams)
        running = np.take_along_axis(cand, pick[:, :, None], axis=1)
        running_scores = np.take_along_axis(live, pick, axis=-1)
        parents = np.take_along_axis(parent, pick, axis=-1)

        just_done = hits & top_mask[None, :]
        normed = top_scores / np.float32((t + 1) ** config.length_penalty)
        full = done_flag.all(axis=-1, keepdims=True) & (config.early_stopping is True)
        normed = normed + full * NEG + (~improvable) * NEG + (~just_done) * NEG
        merged_scores = np.concatenate([done_scores, normed], axis=1)
        best = _topk(merged_scores, beams)
        done = np.take_along_axis(np.concatenate([done, cand], axis=1), best[:, :, None], axis=1)
        done_len = np.take_along_axis(
            np.concatenate([done_len, np.full((batch, keep), t + 1)], axis=1), best, axis=1)
        done_scores = np.take_along_axis(merged_scores, best, axis=1)
        done_flag = np.take_along_axis(np.concatenate([done_flag, just_done], axis=1), best, 1)

        length = steps if config.early_stopping == "never" and config.length_penalty > 0 else t + 1
        best_possible = running_scores[:, :1] / np.float32(length ** config.length_penalty)
        worst_done = np.where(done_flag, done_scores.min(axis=1, keepdims=True), NEG)
        improvable = improvable & (best_possible > worst_done).any(axis=-1, keepdims=True)
        open_beams = not (done_flag.all() and config.early_stopping is True)
        if not (improvable.any() and open_beams and not hits.all()) or t + 1 == steps:
            break
        order = (np.arange(batch)[:, None] * beams + parents).reshape(-1)
        if not np.array_equal(order, np.arange(len(order))):
            state.cache.reorder(order)
        last = runner.step(state, running[:, :, t].reshape(-1))
    return [
        [Hypothesis(tokens=done[b, i, : done_len[b, i]].tolist(), score=float(done_scores[b, i]))
         for i in range(config.num_return_sequences)]
        for b in range(batch)
    ]


CHUNK = 256  # scores per block whose maximum bounds the top k from below


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest per row, largest first (ties: lower index first).

    A beam step ranks batch x beams x vocabulary scores (8 x 4 x 58k for opus-mt), where
    a partition of every score cost most of the step. Instead: the k-th largest of the
    rows' block maxima is at most the k-th largest score (k blocks each hold a score at
    least that high), so only the scores above it, and ties at it, are ranked.
    """
    rows, n = x.shape
    blocks = n // CHUNK
    if blocks < k:
        return _rank(x, np.broadcast_to(np.arange(n), x.shape), k)
    maxima = x[:, : blocks * CHUNK].reshape(rows, blocks, CHUNK).max(axis=-1)
    floor = np.partition(maxima, blocks - k, axis=-1)[:, blocks - k]
    out = np.empty((rows, k), dtype=np.int64)
    for row in range(rows):
        scores, at = x[row], floor[row]
        found = np.flatnonzero(scores > at)
        if len(found) < k:  # the rest are ties at the floor (-inf: forced tokens), lowest first
            found = np.concatenate([found, np.flatnonzero(scores == at)[: k - len(found)]])
        if len(found) < k:  # NaN scores: no floor to compare with
            found = np.argsort(-scores, kind="stable")[:k]
        out[row] = _rank(x[row:row + 1], found[None, :], k)[0]
    return out


def _rank(x: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The k best of each row's candidate indices: score descending, then index."""
    order = np.lexsort((candidates, -np.take_along_axis(x, candidates, axis=-1)), axis=-1)
    return np.take_along_axis(candidates, order[:, :k], axis=-1)
