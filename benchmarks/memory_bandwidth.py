"""This machine's memory read bandwidth, and where batch-1 decoding stands against it.

    python benchmarks/memory_bandwidth.py [--mb 1024] [--repeats 9]
        [--decode results/llama_cpp_decode-smollm2-135m-amd-vnni.json ...]

Batch-1 decoding reads every weight once per token, so tokens/s x bytes per token
can never exceed the bandwidth. The read is measured with numpy reductions over an
array far larger than the caches, on 1 and on 2 threads (numpy releases the GIL in
a float reduction, so two threads each reduce half). For each `--decode` results
file, each engine's decode rate (16-token prompt, 1 / ms per token) is turned into the GB/s it would need
if every token read the whole model file from memory, and into a share of the
measured 2-thread bandwidth. A share above 100% means the weights are (partly)
served from the caches, as a 135M model's are.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from harness import hardware, machine_tag, write_results

HERE = Path(__file__).resolve().parent


def read_gb_per_s(data: np.ndarray, threads: int, repeats: int) -> float:
    """Best of `repeats` timed full reads of `data`, split over `threads` threads."""
    parts = np.array_split(data, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            start = time.perf_counter()
            sums = list(pool.map(np.add.reduce, parts))
            best = min(best, time.perf_counter() - start)
    assert np.isfinite(sum(sums))  # keeps the reads from being anything but reads
    return data.nbytes / best / 1e9


ENGINE_ARGS = {"edgelm int4": "int4", "edgelm int8": "int8", "llama.cpp Q4_0": "q4",
               "llama.cpp Q8_0": "q8"}


def model_mb(path: Path) -> float:
    """A GGUF file's size, or an export folder's graph and weight files together."""
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(f.stat().st_size for f in path.iterdir()
               if f.suffix in (".onnx", ".data") or f.name.endswith(".onnx.data")) / 1e6


def decode_rows(path: Path, bandwidth: float) -> list[dict]:
    """Every engine of a llama_cpp_decode results file whose model is on this machine,
    against `bandwidth` GB/s; its decode rate is 1 / ms per token after the prompt."""
    found = json.loads(path.read_text())
    rows = []
    for engine, result in found["prompts"]["16"]["engines"].items():
        model = Path(found["args"][ENGINE_ARGS[engine]])
        if not model.exists():
            continue
        rate, mb = 1e3 / result["final"]["per_token_ms"], model_mb(model)
        needed = rate * mb / 1e3
        rows.append({"results": path.name, "engine": engine, "tokens_per_s": rate,
                     "model_mb": mb, "needed_gb_per_s": needed,
                     "share_of_bandwidth": needed / bandwidth,
                     "bound_tokens_per_s": bandwidth * 1e3 / mb})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="array size, MB")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--decode", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    info = hardware()
    data = np.ones(args.mb * 1_000_000 // 4, dtype=np.float32)  # ones: pages really touched
    measured = {t: read_gb_per_s(data, t, args.repeats) for t in (1, 2)}
    runs = {t: [read_gb_per_s(data, t, 1) for _ in range(args.repeats)] for t in (1, 2)}
    bandwidth = measured[2]
    rows = [row for path in args.decode for row in decode_rows(path, bandwidth)]
    lines = [f"# Memory read bandwidth ({info['cpu']}, {info['cores']} cores)\n",
             f"numpy float32 reductions over {args.mb} MB, best of {args.repeats} "
             f"(median of single reads in brackets):\n",
             "| threads | read GB/s |", "|---|---|"]
    lines += [f"| {t} | {measured[t]:.1f} ({statistics.median(runs[t]):.1f}) |"
              for t in (1, 2)]
    if rows:
        lines += ["", "Batch-1 decoding, 16-token prompt, as if each token read the whole "
                  f"model file from memory (share of {bandwidth:.1f} GB/s; over 100%: "
                  "weights partly served from the caches):", "",
                  "| results | engine | tokens/s | model MB | GB/s needed | share | bound tokens/s |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['results']} | {r['engine']} | {r['tokens_per_s']:.1f} | "
                  f"{r['model_mb']:.0f} | {r['needed_gb_per_s']:.1f} | "
                  f"{r['share_of_bandwidth']:.0%} | {r['bound_tokens_per_s']:.0f} |"
                  for r in rows]
    markdown = "\n".join(lines) + "\n"
    write_results(HERE / "results" / f"memory_bandwidth-{machine_tag(info)}",
                  {"hardware": info, "read_gb_per_s": measured, "single_reads": runs,
                   "decode": rows}, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
