"""The ONNX side of `edgelm bench`: one exported folder, measured in this process.

    python -m edgelm.bench.worker SPEC_JSON
"""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np

from edgelm.bench.measure import entity_spans, worker_main
from edgelm.bench.spec import WorkerSpec
from edgelm.generation.config import GenerationConfig
from edgelm.generation.search import sample_or_greedy
from edgelm.pipelines.base import Pipeline
from edgelm.tokenizer import TextTokenizer
from edgelm.types import Task


class OnnxEngine:
    def __init__(self, spec: WorkerSpec) -> None:
        self.pipe: Any = cast(Any, Pipeline(spec.path, device=spec.device, threads=spec.threads))
        self.task = spec.task
        tokenizer = self.pipe.tokenizer  # encoders: a TextTokenizer around tokenizers'
        self._tokenizer = tokenizer.inner if isinstance(tokenizer, TextTokenizer) else tokenizer

    def token_count(self, text: str) -> int:
        return len(self._tokenizer.encode(text).ids)

    def encode(self, texts: list[str], batch: int) -> None:
        self.pipe.batch_size = batch
        self.pipe(texts)

    def generate(self, rows: list[list[int]], new: int, beams: int) -> None:
        config = GenerationConfig(max_new_tokens=new, min_new_tokens=new, num_beams=beams)
        if beams > 1:
            self.pipe.generate_ids(rows, config)
            return
        for _ in sample_or_greedy(self.pipe.runner, rows, config, self.pipe.eos_ids,
                                  pad_id=self.pipe.pad_id):
            pass

    def generate_timed(self, rows: list[list[int]], new: int) -> tuple[float, float]:
        config = GenerationConfig(max_new_tokens=new, min_new_tokens=new)
        start = time.perf_counter()
        steps = sample_or_greedy(self.pipe.runner, rows, config, self.pipe.eos_ids,
                                 pad_id=self.pipe.pad_id)
        next(steps)  # the prompt's pass and the first token
        first = time.perf_counter() - start
        for _ in steps:
            pass
        return first, time.perf_counter() - start

    def predict(self, texts: list[str]) -> dict[str, np.ndarray]:
        self.pipe.batch_size = 32
        if self.task is Task.TEXT_CLASSIFICATION:
            labels = self.pipe.manifest.labels
            return {"labels": np.array([labels.index(r["label"]) for r in self.pipe(texts)])}
        if self.task is Task.FEATURE_EXTRACTION:
            return {"embeddings": self.pipe(texts)}
        return {"entities": entity_spans(self.pipe(texts))}

    def vocab_size(self) -> int:
        return self.pipe.info.vocab_size

    def token_logits(self, ids: list[int]) -> np.ndarray:
        logits, _ = self.pipe.runner.prefill([ids], len(ids), every_position=True)
        return logits[0]


if __name__ == "__main__":
    worker_main(OnnxEngine)
