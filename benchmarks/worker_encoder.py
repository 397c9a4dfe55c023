"""One encoder engine in its own process: median ms per call, or bursts on request.

    python worker_encoder.py torch CHECKPOINT --threads 2
    python worker_encoder.py onnx MODEL.onnx --threads 2      (a bare onnxruntime session)
    python worker_encoder.py edgelm MODEL.onnx --threads 2    (edgelm's session factory)
    python worker_encoder.py torch CHECKPOINT --device cuda   (fp16 on the GPU; onnx alike)
    python worker_encoder.py edgelm MODEL.onnx --serve        (harness.run_interleaved)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from harness import peak_rss_mb, serve, timed  # this folder is on sys.path as a script


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


def edgelm_call(path: str, threads: int, feed: dict[str, np.ndarray], device: str):
    """The graph in the session edgelm's pipelines create (same options as in an app)."""
    from edgelm.session import create_session
    from edgelm.types import Device

    session = create_session(Path(path), device=Device(device), threads=threads)
    names = [i.name for i in session.get_inputs()]
    return lambda: session.run(None, {n: feed[n] for n in names})


ENGINES = {"torch": torch_call, "onnx": onnx_call, "edgelm": edgelm_call}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=list(ENGINES))
    parser.add_argument("path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--serve", action="store_true", help="bursts on request (harness)")
    args = parser.parse_args()
    feed = inputs(args.batch, args.length)
    start = time.perf_counter()
    call = ENGINES[args.engine](args.path, args.threads, feed, args.device)
    load_s = time.perf_counter() - start
    for _ in range(5):
        call()
    if args.serve:
        serve(call, lambda: {"load_s": load_s, "peak_rss_mb": peak_rss_mb()})
        return
    times = timed(call, args.runs, warmup=0)  # warmed up above
    print(json.dumps({"ms": statistics.median(times), "load_s": load_s,
                      "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
