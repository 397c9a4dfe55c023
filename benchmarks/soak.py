"""Soak: 10,000 classification calls and 200 generations in one process; does memory grow?

    python benchmarks/soak.py [--threads 2]

The real MiniLM sentiment classifier (int8) and SmolLM2-135M-Instruct (int4),
exported by edgelm, called one text at a time with varied inputs, in a child
process that imports only edgelm's runtime (as a deployed app would). Resident
memory (VmRSS) is sampled after a warm-up of 500 classifications and 20
generations and then every 1,000 calls / 20 generations; the goal is growth
under 5% after warm-up. Results: results/soak.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gpt2_decode import CACHE  # one benchmark cache, EDGELM_BENCH_CACHE honoured
from harness import hardware, write_results

from edgelm.bench.exports import cached_export
from edgelm.bench.system import rss_mb

HERE = Path(__file__).resolve().parent


def soak(call: Callable[[int], None], calls: int, *, every: int) -> list[tuple[int, float]]:
    """Make `calls` calls; RSS before the first and after every `every`-th."""
    samples = [(0, rss_mb())]
    for i in range(calls):
        call(i)
        if (i + 1) % every == 0:
            samples.append((i + 1, rss_mb()))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--inputs", default=None, help=argparse.SUPPRESS)  # the child's
    args = parser.parse_args()
    if args.inputs is None:  # prepare with the export layer, then measure torch-free
        from edgelm.export.zoo import sentiment_classifier_dir, sentiment_holdout, smollm2_dir

        inputs = CACHE / "soak-inputs.json"
        inputs.write_text(json.dumps({
            "texts": [t for t, _ in sentiment_holdout()],
            "classifier": str(cached_export(sentiment_classifier_dir(), "int8")),
            "generator": str(cached_export(smollm2_dir(), "int4"))}))
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--inputs", str(inputs)],
                       check=True)
        return
    import edgelm

    given = json.loads(Path(args.inputs).read_text())
    texts = given["texts"]
    classifier = edgelm.Pipeline(given["classifier"], threads=args.threads)
    generator = edgelm.Pipeline(given["generator"], threads=args.threads)
    assert "torch" not in sys.modules
    prompts = ["Write a haiku about the sea.", "What is the capital of France?",
               "Give me three tips for better sleep.", "Explain what a CPU cache is."]

    def classify(i: int) -> None:
        classifier(texts[i % len(texts)])

    def generate(i: int) -> None:
        generator.chat([{"role": "user", "content": prompts[i % len(prompts)]}],
                       max_new_tokens=16 + i % 17, do_sample=i % 2 == 1, seed=i, top_p=0.9)

    start = time.perf_counter()
    for i in range(500):
        classify(i)
    for i in range(20):
        generate(i)
    warm = rss_mb()
    samples = {"classification": soak(classify, args.calls, every=1000),
               "generation": soak(generate, args.generations, every=20)}
    end = rss_mb()
    growth = (end - warm) / warm * 100
    payload = {"hardware": hardware(), "threads": args.threads, "calls": args.calls,
               "torch_imported": "torch" in sys.modules,
               "generations": args.generations, "rss_after_warmup_mb": warm,
               "rss_end_mb": end, "growth_percent": growth, "samples": samples,
               "seconds": time.perf_counter() - start}
    lines = [
        "# Soak: one process, classification then generation\n",
        f"Hardware: {payload['hardware']['cpu']}, {args.threads} threads. "
        f"{args.calls} classification calls (real MiniLM classifier, int8, one held-out text "
        f"per call) then {args.generations} chat generations (SmolLM2-135M int4, 16-32 new "
        "tokens, greedy and sampled alternately), after a warm-up of 500 + 20.\n",
        "| checkpoint | calls | RSS MB |", "|---|---|---|",
        *[f"| classification | {n} | {mb:.1f} |" for n, mb in samples["classification"]],
        *[f"| generation | {n} | {mb:.1f} |" for n, mb in samples["generation"]],
        f"\nRSS after warm-up {warm:.1f} MB, at the end {end:.1f} MB: growth "
        f"**{growth:+.2f}%** (goal: under 5%). Took {payload['seconds']:.0f} s.\n",
    ]
    write_results(HERE / "results" / "soak.md", payload, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
