"""Compare the exported graph with PyTorch on generated inputs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from edgelm.errors import ValidationError
from edgelm.export.checkpoint import Checkpoint
from edgelm.export.encoder_graph import GraphSignature, wrap
from edgelm.manifest import Validation
from edgelm.session import create_session
from edgelm.types import Device, Precision, Task

log = logging.getLogger(__name__)

# (batch, length) pairs; rows after the first are padded to different lengths.
CASES = ((1, 8), (2, 16), (4, 64), (3, 128))


def sample_inputs(
    batch: int, length: int, *, vocab: int, names: list[str], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    ids = rng.integers(0, vocab, size=(batch, length), dtype=np.int64)
    mask = np.ones((batch, length), dtype=np.int64)
    for row in range(1, batch):
        mask[row, rng.integers(1, length + 1):] = 0  # right padding, as the runtime pads
    available = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {name: available[name] for name in names}


def compare(
    onnx_path: Path, checkpoint: Checkpoint, sig: GraphSignature, precision: Precision,
    *, max_length: int,
) -> Validation:
    """Max |difference| and top-1 agreement over CASES; fp32 must be within tolerance."""
    session = create_session(onnx_path, device=Device.CPU)  # as the runtime will run it
    module = wrap(checkpoint, sig)
    rng = np.random.default_rng(0)
    worst, agree, total, cos_min, cases = 0.0, 0, 0, 1.0, []
    for batch, length in CASES:
        length = min(length, max_length)
        feed = sample_inputs(batch, length, vocab=int(checkpoint.config.vocab_size),
                             names=sig.inputs, rng=rng)
        with torch.no_grad():
            expected = module(*(torch.from_numpy(feed[n]) for n in sig.inputs)).numpy()
        (actual,) = session.run(None, feed)
        e, a = _compared(checkpoint.task, expected, actual.astype(np.float32),
                         feed["attention_mask"].astype(bool))
        worst = max(worst, float(np.abs(e - a).max()))
        agree += int((e.argmax(-1) == a.argmax(-1)).sum())
        total += int(np.prod(e.shape[:-1]))
        cos_min = min(cos_min, _min_cosine(e, a))
        cases.append(f"batch={batch},len={length}")
    tolerance = checkpoint.family.tolerance if precision is Precision.FP32 else None
    result = Validation(
        max_abs_diff=worst,
        top1_agreement=None if sig.pooling else agree / total, tolerance=tolerance,
        cases=cases, cosine_min=cos_min,
    )
    log.info("validation: %s", result)
    if tolerance is not None and worst > tolerance:
        raise ValidationError(
            f"the ONNX model differs from PyTorch by {worst:.3g} (allowed {tolerance:g}) "
            f"over {', '.join(cases)}; report this with the checkpoint's config.json"
        )
    return result


def _compared(task: Task, expected: np.ndarray, actual: np.ndarray, mask: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """The outputs as rows whose argmax is the prediction; padding is don't-care.

    Token classification: one row per real token. Question answering: per text, its
    start and its end logits (padding set to -1e4 in both, as transformers masks it),
    so that top-1 agreement counts the chosen start and end tokens.
    """
    if task is Task.TOKEN_CLASSIFICATION:
        return expected[mask], actual[mask]
    if task is Task.QUESTION_ANSWERING:
        def spans(x: np.ndarray) -> np.ndarray:
            return np.where(mask[..., None], x, np.float32(-1e4)).transpose(0, 2, 1)
        return spans(expected), spans(actual)
    return expected, actual


def _min_cosine(e: np.ndarray, a: np.ndarray) -> float:
    e2, a2 = e.reshape(-1, e.shape[-1]), a.reshape(-1, a.shape[-1])
    num = (e2 * a2).sum(-1)
    den = np.linalg.norm(e2, axis=-1) * np.linalg.norm(a2, axis=-1) + 1e-12
    return float((num / den).min())
