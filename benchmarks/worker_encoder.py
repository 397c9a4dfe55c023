"""One measurement in a fresh process: median ms per call of one encoder engine.

    python worker_encoder.py torch CHECKPOINT --threads 2
    python worker_encoder.py onnx MODEL.onnx --threads 2
    python worker_encoder.py torch CHECKPOINT --device cuda   (fp16 on the GPU; onnx alike)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from harness import peak_rss_mb  # this folder is on sys.path when run as a script


def inputs(batch: int, length: int) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(0).integers(1000, 20000, size=(batch, length), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def torch_call(path: str, threads: int, feed: dict[str, np.ndarray], device: str):
    """PyTorch eager: float32 on CPU, float16 on CUDA (inputs already on the device)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(threads)
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype)
    model = model.to(device).eval()
    tensors = {k: torch.from_numpy(v).to(device) for k, v in feed.items()}

    def call() -> None:
        with torch.inference_mode():
            model(**tensors)
        if device == "cuda":
            torch.cuda.synchronize()

    return call


def onnx_call(path: str, threads: int, feed: dict[str, np.ndarray], device: str):
    """The graph alone in onnxruntime: numpy in, numpy out (host copies included)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        ort.preload_dlls()
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(path, options, providers=providers)
    names = [i.name for i in session.get_inputs()]
    return lambda: session.run(None, {n: feed[n] for n in names})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=["torch", "onnx"])
    parser.add_argument("path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    feed = inputs(args.batch, args.length)
    start = time.perf_counter()
    engine = torch_call if args.engine == "torch" else onnx_call
    call = engine(args.path, args.threads, feed, args.device)
    load_s = time.perf_counter() - start
    for _ in range(5):
        call()
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    print(json.dumps({"ms": 1000 * statistics.median(times), "load_s": load_s,
                      "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
