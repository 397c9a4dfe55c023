"""Decoder exports against PyTorch: logits with and without the cache, greedy agreement.

fp32 must match within the tolerance on every case or the export fails.
Quantized exports report the differences and greedy-token agreement: PyTorch's
greedy continuation of a few prompts is fed through the ONNX graph (teacher
forcing) and the share of positions whose argmax agrees is recorded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from edgelm.errors import ValidationError
from edgelm.generation.runner import DecoderRunner
from edgelm.manifest import DecoderInfo, Validation
from edgelm.types import Precision

log = logging.getLogger(__name__)

# Rows of each case have different lengths; `steps` tokens follow with the cache.
CASES = ((1, 8, 4), (3, 17, 3), (2, 40, 2))
GREEDY_TOKENS = 16


def validate_decoder(onnx_path: Path, model: torch.nn.Module, info: DecoderInfo,
                     precision: Precision, *, tolerance: float, text: list[int],
                     prompts: list[list[int]]) -> Validation:
    """`text`: a tokenized paragraph; each row of a case is a slice of it.

    Natural text, not random ids: random ids drive a real model's activations
    far outside what it meets in use, where fp32 rounding alone exceeds 1e-4.
    """
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    runner = DecoderRunner(session, info)
    rng = np.random.default_rng(0)
    if not text:  # a tokenizer that cannot encode the sample text: random ids instead
        text = rng.integers(0, info.vocab_size, size=64).tolist()
    worst, cases, scale = 0.0, [], 0.0
    for batch, length, steps in CASES:
        length = min(length, info.max_positions - steps)
        lengths = [length] + [int(x) for x in rng.integers(1, length + 1, size=batch - 1)]
        seqs = [_slice(text, int(rng.integers(0, len(text))), n + steps) for n in lengths]
        diff, largest = _compare(runner, model, seqs, lengths, steps)
        worst, scale = max(worst, diff), max(scale, largest)
        cases.append(f"batch={batch},len={length},cache_steps={steps}")
    greedy = _greedy_agreement(runner, model, prompts, info)
    return gated("decoder", precision, tolerance=tolerance, scale=scale, worst=worst,
                 agreement=greedy, cases=cases + [f"greedy agreement over {len(prompts)} "
                                                  f"prompts x {GREEDY_TOKENS} tokens"])


def gated(what: str, precision: Precision, *, tolerance: float, scale: float, worst: float,
          agreement: float, cases: list[str]) -> Validation:
    """The validation record; for fp32, ValidationError when `worst` (the largest |logit|
    difference from PyTorch) passes the limit. The limit scales with the logits:
    `tolerance` per 10 units of the largest |logit| (`scale`). A 30-layer model with
    logits near 30 (SmolLM2) differs by ~1.4e-4 from PyTorch in fp32 through
    accumulation order alone (4e-6 relative). Quantized exports are reported only."""
    check = tolerance * max(1.0, scale / 10) if precision is Precision.FP32 else None
    result = Validation(max_abs_diff=worst, top1_agreement=agreement, tolerance=check,
                        cases=cases)
    log.info("validation: %s", result)
    if check is not None and worst > check:
        raise ValidationError(
            f"the ONNX {what} differs from PyTorch by {worst:.3g} (allowed {check:.3g}) over "
            f"{', '.join(cases)}; report this with the checkpoint's config.json")
    return result


def _slice(tokens: list[int], start: int, n: int) -> list[int]:
    return [tokens[(start + i) % len(tokens)] for i in range(n)]


def _torch_logits(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def _compare(runner: DecoderRunner, model: torch.nn.Module, seqs: list[list[int]],
             lengths: list[int], steps: int) -> tuple[float, float]:
    """Prefill right-padded rows, then `steps` cached steps; the largest difference over every
    real position, and the largest |logit| of PyTorch's."""
    prompts = [s[:n] for s, n in zip(seqs, lengths)]
    logits, state = runner.prefill(prompts, max(lengths) + steps, every_position=True)
    expected = [_torch_logits(model, s) for s in seqs]
    largest = max(float(np.abs(e).max()) for e in expected)
    worst = max(float(np.abs(expected[row][:n] - logits[row, :n]).max())
                for row, n in enumerate(lengths))
    for t in range(steps):
        tokens = np.array([s[n + t] for s, n in zip(seqs, lengths)])
        step = runner.step(state, tokens)
        worst = max([worst, *(float(np.abs(expected[row][n + t] - step[row]).max())
                              for row, n in enumerate(lengths))])
    return worst, largest


def _greedy_agreement(runner: DecoderRunner, model: torch.nn.Module, prompts: list[list[int]],
                      info: DecoderInfo) -> float:
    agree = total = 0
    for prompt in prompts:
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), max_new_tokens=GREEDY_TOKENS,
                                 do_sample=False,
                                 pad_token_id=info.eos_token_ids[0] if info.eos_token_ids else 0)
        sequence = out[0].tolist()
        logits, _ = runner.prefill([sequence], len(sequence), every_position=True)
        predicted = logits[0, len(prompt) - 1 : len(sequence) - 1].argmax(-1)
        agree += int((predicted == np.array(sequence[len(prompt):])).sum())
        total += len(sequence) - len(prompt)
    return agree / total
