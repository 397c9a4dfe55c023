"""The PyTorch baseline of `edgelm bench`: the checkpoint in transformers, in this process.

    python -m edgelm.export.bench_baseline SPEC_JSON

float32 on CPU, float16 on CUDA; eager attention as transformers picks it.
Timed the way the ONNX worker is (edgelm.bench.measure): tokenization included
for encoders, `generate` with exactly the asked number of new tokens for decoders.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from transformers.generation.streamers import BaseStreamer

from edgelm.bench.measure import entity_spans, worker_main
from edgelm.bench.spec import WorkerSpec
from edgelm.export.libraries import transformers
from edgelm.types import Device, Task

MODEL_CLASSES = {
    Task.TEXT_CLASSIFICATION: transformers.AutoModelForSequenceClassification,
    Task.FEATURE_EXTRACTION: transformers.AutoModel,
    Task.TOKEN_CLASSIFICATION: transformers.AutoModelForTokenClassification,
    Task.TEXT_GENERATION: transformers.AutoModelForCausalLM,
}


class _FirstToken(BaseStreamer):
    """Times `generate` from within: it hands the streamer the prompt, then each new token."""

    def __init__(self, device: str) -> None:
        self.device, self.start, self.first, self._puts = device, time.perf_counter(), 0.0, 0

    def put(self, value: Any) -> None:
        self._puts += 1
        if self._puts == 2:  # the first new token (the first put is the prompt)
            if self.device == "cuda":
                torch.cuda.synchronize()
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


class TorchEngine:
    def __init__(self, spec: WorkerSpec) -> None:
        torch.set_num_threads(spec.threads)
        self.spec, self.device = spec, "cuda" if spec.device is Device.CUDA else "cpu"
        dtype = torch.float16 if spec.device is Device.CUDA else torch.float32
        self.model = MODEL_CLASSES[spec.task].from_pretrained(spec.path, dtype=dtype)
        self.model = self.model.to(self.device).eval()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(spec.path)

    def token_count(self, text: str) -> int:
        return len(self.tokenizer(text).input_ids)

    def _forward(self, texts: list[str]) -> tuple[Any, Any]:
        batch = self.tokenizer(texts, padding=True, truncation=True,
                               max_length=self.spec.max_length, return_tensors="pt")
        batch = batch.to(self.device)
        with torch.inference_mode():
            return self.model(**batch), batch["attention_mask"]

    def _outputs(self, texts: list[str]) -> np.ndarray:
        out, mask = self._forward(texts)
        if self.spec.task is Task.TEXT_CLASSIFICATION:
            return out.logits.float().softmax(-1).cpu().numpy()
        if self.spec.task is Task.FEATURE_EXTRACTION:  # sentence-transformers' mean pooling
            weights = mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            pooled = (out.last_hidden_state * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()
        return out.logits.float().argmax(-1).cpu().numpy()

    def encode(self, texts: list[str], batch: int) -> None:
        for start in range(0, len(texts), batch):
            self._outputs(texts[start : start + batch])
        if self.device == "cuda":
            torch.cuda.synchronize()

    def generate(self, rows: list[list[int]], new: int, beams: int) -> None:
        ids = torch.tensor(rows, device=self.device)
        with torch.inference_mode():
            self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                                min_new_tokens=new, num_beams=beams, do_sample=False,
                                pad_token_id=self.tokenizer.pad_token_id or 0)
        if self.device == "cuda":
            torch.cuda.synchronize()

    def generate_timed(self, rows: list[list[int]], new: int) -> tuple[float, float]:
        ids = torch.tensor(rows, device=self.device)
        clock = _FirstToken(self.device)
        with torch.inference_mode():
            self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                                min_new_tokens=new, do_sample=False, streamer=clock,
                                pad_token_id=self.tokenizer.pad_token_id or 0)
        if self.device == "cuda":
            torch.cuda.synchronize()
        return clock.first - clock.start, time.perf_counter() - clock.start

    def predict(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self.spec.task is Task.TOKEN_CLASSIFICATION:
            pipe = transformers.pipeline("token-classification", model=self.model,
                                         tokenizer=self.tokenizer,
                                         aggregation_strategy="simple", device=self.device)
            return {"entities": entity_spans(pipe(texts))}
        outputs = np.concatenate([self._outputs(texts[s : s + 32])
                                  for s in range(0, len(texts), 32)])
        if self.spec.task is Task.TEXT_CLASSIFICATION:
            return {"labels": outputs.argmax(-1)}
        return {"embeddings": outputs}

    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)

    def token_logits(self, ids: list[int]) -> np.ndarray:
        with torch.inference_mode():
            logits = self.model(torch.tensor([ids], device=self.device)).logits
        return logits[0].float().cpu().numpy()


if __name__ == "__main__":
    worker_main(TorchEngine)
