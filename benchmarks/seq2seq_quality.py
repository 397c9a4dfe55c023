"""What int8 and int4 do to an encoder-decoder's output, against its own fp32 export.

    python benchmarks/seq2seq_quality.py [--sources 200]

For each shape of seq2seq_decode.py (random weights: no real seq2seq checkpoint ships
in a package), greedy 32-token outputs of the quantized export are compared with the
fp32 export's on the same sources: token agreement (position by position), whole
sequences identical, and chrF (sacrebleu) over the token strings. These measure how
far quantization moves the output, not translation quality. Results:
benchmarks/results/seq2seq_quality.*
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import hardware, write_results  # noqa: E402
from seq2seq_decode import SHAPES, checkpoint  # noqa: E402

import edgelm  # noqa: E402
from edgelm.bench.exports import cached_export  # noqa: E402

NEW_TOKENS = 32


def outputs(folder: Path, sources: list[list[int]]) -> list[list[int]]:
    pipe = edgelm.Pipeline(folder, threads=2, batch_size=8)
    config = pipe.config(dict(max_new_tokens=NEW_TOKENS))
    found: list[list[int]] = []
    for start in range(0, len(sources), 8):
        found += [o[0] for o in pipe.generate_ids(sources[start:start + 8], config)]
    return found


def main() -> None:
    import sacrebleu

    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=200)
    args = parser.parse_args()
    info = hardware()
    payload = {"hardware": info, "sources": args.sources, "models": {}}
    lines = ["# Encoder-decoders: int8 / int4 outputs against the fp32 export's\n",
             f"Hardware: {info['cpu']} ({', '.join(info['simd'])}). {args.sources} sources of "
             f"8-40 random tokens, greedy, {NEW_TOKENS} new tokens; random weights at the real "
             "shapes, so these figures measure drift from fp32, not translation quality.\n",
             "| model | precision | token agreement | identical outputs | chrF vs fp32 |",
             "|---|---|---|---|---|"]
    rng = np.random.default_rng(0)
    for name, (_, shape) in SHAPES.items():
        source = checkpoint(name)
        sources = [[*rng.integers(300, 20000, size=int(n)).tolist(), shape["eos_token_id"]]
                   for n in rng.integers(8, 40, size=args.sources)]
        reference = outputs(cached_export(source, "fp32"), sources)
        payload["models"][name] = {}
        for precision in ("int8", "int4"):
            found = outputs(cached_export(source, precision), sources)
            same = sum(a == b for a, b in zip(found, reference))
            agree = sum(x == y for a, b in zip(found, reference) for x, y in zip(a, b))
            total = sum(max(len(a), len(b)) for a, b in zip(found, reference))
            chrf = sacrebleu.corpus_chrf([" ".join(f"t{i}" for i in a) for a in found],
                                         [[" ".join(f"t{i}" for i in b) for b in reference]])
            row = {"token_agreement": agree / total, "identical": same / len(sources),
                   "chrf": chrf.score}
            payload["models"][name][precision] = row
            lines.append(f"| {name} | {precision} | {row['token_agreement']:.3f} | "
                         f"{row['identical']:.3f} | {row['chrf']:.1f} |")
    write_results(HERE / "results" / "seq2seq_quality", payload, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
