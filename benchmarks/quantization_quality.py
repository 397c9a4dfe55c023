"""What the decoder quantization options cost in quality, on SmolLM2-135M's real weights.

    python benchmarks/quantization_quality.py [int4:32 int4:32:4 int4:128 ...]

Each argument is precision:block_size[:table_bits]. Text: the bench paragraph and the
first 120 VADER movie-review snippets, cut to 2,048 tokens. Perplexity of each export
over it, and its top-1 agreement with PyTorch fp32 at every position. The speed side of
the same options: benchmarks/families_decode.py. Results: results/quantization_quality.*
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import hardware, write_results  # noqa: E402

from edgelm.bench.exports import cached_export  # noqa: E402

DEFAULT = ["int4:32", "int4:32:4", "int4:128", "int4:128:4", "int8:32", "int8:32:4", "int8:128",
           "int8:256"]


def nll(logits: np.ndarray, ids: list[int]) -> float:
    x = logits[:-1].astype(np.float64)
    x -= x.max(-1, keepdims=True)
    log_probs = x - np.log(np.exp(x).sum(-1, keepdims=True))
    return float(-log_probs[np.arange(len(ids) - 1), ids[1:]].mean())


def main() -> None:
    import torch
    import transformers

    import edgelm
    from edgelm.bench.data import SAMPLE_PARAGRAPH
    from edgelm.export.zoo import smollm2_dir, vader_movie_snippets

    specs = sys.argv[1:] or DEFAULT
    source = smollm2_dir()
    text = SAMPLE_PARAGRAPH + " " + " ".join(t for t, _ in vader_movie_snippets()[:120])
    ids = transformers.AutoTokenizer.from_pretrained(source)(text).input_ids[:2048]
    model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    with torch.no_grad():
        reference = model.eval()(torch.tensor([ids])).logits[0].numpy()
    rows = [{"variant": "PyTorch fp32", "perplexity": float(np.exp(nll(reference, ids))),
             "top1_vs_pytorch": 1.0, "size_mb": None}]
    for spec in specs:
        precision, block, *table = spec.split(":")
        bits = int(table[0]) if table else 8
        # made once per checkpoint, options and exporter code (a change to the exporter
        # makes a new export, where a folder named only by the options would go stale)
        out = cached_export(source, precision, block_size=int(block), table_bits=bits)
        pipe = edgelm.Pipeline(out, threads=2)
        logits = pipe.runner.prefill([ids], len(ids), every_position=True)[0][0]
        rows.append({
            "variant": f"{precision}, block {block}, {bits}-bit table",
            "perplexity": float(np.exp(nll(logits, ids))),
            "top1_vs_pytorch": float((logits.argmax(-1) == reference.argmax(-1)).mean()),
            "size_mb": sum(p.stat().st_size for p in out.glob("model.onnx*")) / 1e6})
    info = hardware()
    lines = ["# Decoder quantization options: quality on SmolLM2-135M-Instruct\n",
             f"CPU: {info['cpu']} ({', '.join(info['simd'])}); {len(ids)} tokens (the bench "
             "paragraph + 120 VADER snippets); top-1 agreement with PyTorch fp32 at every "
             "position.\n", "Command: `python benchmarks/quantization_quality.py "
             + " ".join(specs) + "`\n",
             "| variant | perplexity | top-1 vs PyTorch | model MB |", "|---|---|---|---|"]
    for r in rows:
        size = "-" if r["size_mb"] is None else f"{r['size_mb']:.0f}"
        lines.append(f"| {r['variant']} | {r['perplexity']:.1f} | {r['top1_vs_pytorch']:.3f} "
                     f"| {size} |")
    write_results(HERE / "results" / "quantization_quality", {"hardware": info, "rows": rows},
                  "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
