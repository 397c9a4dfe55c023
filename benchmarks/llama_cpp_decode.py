"""Decoding, edgelm int4/int8 against llama.cpp Q4_0/Q8_0, batch 1 and batch 8.

    python benchmarks/llama_cpp_decode.py --model smollm2-135m --int4 FOLDER --int8 FOLDER \\
        --q4 Q4_0.gguf --q8 Q8_0.gguf --llama-python .venv-llama/bin/python \\
        [--prompts 16,512] [--bursts 5 --calls 2] [--threads 2] [--packed-cache] \\
        [--also "int8 block 256=FOLDER" ...]

The GGUFs come from the same checkpoint as the edgelm folders (SmolLM2-135M: the packaged
one dequantized by edgelm.export.zoo; Qwen2.5-0.5B and 1.5B: families_decode.checkpoint's
random-weight checkpoints of those shapes, exported by families_decode.exported):
llama.cpp's converter from llama-cpp-python's source distribution
(`vendor/llama.cpp/convert_hf_to_gguf.py CHECKPOINT --outtype f16`, with `gguf` and
`sentencepiece` installed), then `llama_cpp.llama_model_quantize` to Q4_0 and Q8_0. The
random checkpoints' tokenizer has no merges, which llama.cpp refuses: their GGUFs are
converted from a copy of the checkpoint holding SmolLM2's tokenizer files (padded to the
vocabulary), with the converter's pre-tokenizer check answered by
`conversion.base.TextModel.get_vocab_base_pre = lambda self, tok: "qwen2"` (speed does
not depend on the vocabulary's text; the prompts are token ids).

Each engine runs in its own worker (worker_decoder.py; llama.cpp through llama-cpp-python's
Llama.eval/sample, greedy, exactly --new tokens, flash attention on) and the engines take
turns in bursts of greedy generations (harness.run_interleaved). Per prompt length:
tokens/s over the whole call (prompt included), median time to first token, ratios of
paired bursts. Then --batch equal rows decoded together at the first prompt length, in
bursts of their own the same way (llama.cpp through its batched API:
worker_decoder.llama_engine); tokens/s counts every row's tokens.
--also adds edgelm folders exported with other options, named "LABEL=FOLDER": the label's
first word (int4 or int8) pairs it with llama.cpp's Q4_0 or Q8_0 and with the plain edgelm
engine of that precision; with --packed-cache each also loads through the cache.
Results: results/llama_cpp_decode-<model>-<cpu>.{md,json}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness import Engine, hardware, machine_tag, run_interleaved, versus_lines, write_results

HERE = Path(__file__).resolve().parent
PAIRS = [("edgelm int4", "llama.cpp Q4_0"), ("edgelm int8", "llama.cpp Q8_0")]
LLAMA = {"int4": "llama.cpp Q4_0", "int8": "llama.cpp Q8_0"}
PACKED_PAIRS = [("edgelm int4 packed cache", "llama.cpp Q4_0"),
                ("edgelm int8 packed cache", "llama.cpp Q8_0"),
                ("edgelm int4 packed cache", "edgelm int4"),
                ("edgelm int8 packed cache", "edgelm int8")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="names the results file")
    parser.add_argument("--int4", type=Path, required=True)
    parser.add_argument("--int8", type=Path, required=True)
    parser.add_argument("--q4", type=Path, required=True)
    parser.add_argument("--q8", type=Path, required=True)
    parser.add_argument("--llama-python", type=Path, required=True)
    parser.add_argument("--prompts", default="16,512")
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--packed-cache", action="store_true",
                        help="also edgelm loading through its packed-weights cache (written "
                             "at the workers' start, before any burst)")
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=FOLDER",
                        help="another edgelm folder, LABEL starting with int4 or int8")
    parser.add_argument("--batch", type=int, default=8,
                        help="then this many equal rows decoded together, at the first "
                             "prompt length, in bursts of their own (1: not)")
    args = parser.parse_args()
    also = [parse_also(spec) for spec in args.also]
    pairs = PAIRS + (PACKED_PAIRS if args.packed_cache else [])
    for label, _ in also:
        llama = LLAMA[label.split()[0]]
        pairs += [(f"edgelm {label}", llama), (f"edgelm {label}", f"edgelm {label.split()[0]}")]
        if args.packed_cache:
            pairs += [(f"edgelm {label} packed cache", llama),
                      (f"edgelm {label} packed cache", f"edgelm {label}")]
    worker = str(HERE / "worker_decoder.py")
    info = hardware()
    lines = [f"# {args.model}, edgelm vs llama.cpp ({info['cpu']}, {args.threads} threads)", "",
             f"Batch 1, greedy, {args.new} new tokens; {args.bursts} bursts of {args.calls} "
             "calls per engine, taking turns; tokens/s over the whole call (prompt included)."
             + (" \"packed cache\": edgelm loading through its packed-weights cache."
                if args.packed_cache else ""),
             ""]
    payload: dict = {"hardware": info, "args": {k: str(v) for k, v in vars(args).items()},
                     "prompts": {}}
    prompts = [int(p) for p in args.prompts.split(",")]
    sections = [(prompt, 1) for prompt in prompts]
    if args.batch > 1:
        sections.append((prompts[0], args.batch))
    for prompt, rows in sections:
        common = ["--threads", str(args.threads), "--prompt", str(prompt), "--new",
                  str(args.new), "--beams", "1", "--runs", "3", "--rows", str(rows)]
        engines = [
            Engine(name="edgelm int4", command=[sys.executable, worker, "edgelm",
                                                str(args.int4), *common]),
            Engine(name="llama.cpp Q4_0", command=[str(args.llama_python), worker, "llama",
                                                   str(args.q4), *common]),
            Engine(name="edgelm int8", command=[sys.executable, worker, "edgelm",
                                                str(args.int8), *common]),
            Engine(name="llama.cpp Q8_0", command=[str(args.llama_python), worker, "llama",
                                                   str(args.q8), *common]),
        ]
        edgelm = [("int4", args.int4), ("int8", args.int8), *also]
        engines += [Engine(name=f"edgelm {label}", command=[sys.executable, worker, "edgelm",
                                                            str(folder), *common])
                    for label, folder in also]
        if args.packed_cache:
            engines += [Engine(name=f"edgelm {label} packed cache",
                               command=[sys.executable, worker, "edgelm-packed", str(folder),
                                        *common])
                        for label, folder in edgelm]
        results = run_interleaved(engines, bursts=args.bursts, calls=args.calls)
        title = f"{prompt}-token prompt" + (f", batch {rows}" if rows > 1 else "")
        lines += [f"## {title}", "",
                  f"| engine | tokens/s{' of all rows' if rows > 1 else ''} (median call) | "
                  "time to first token | peak RSS MB |", "|---|---|---|---|"]
        for name, r in results.items():
            lines.append(f"| {name} | {rows * args.new / (r.ms / 1e3):.1f} | "
                         f"{r.final['ttft_ms']:.1f} ms | {r.final['peak_rss_mb']:.0f} |")
        ratio_lines, ratios = versus_lines(results, pairs)
        lines += ratio_lines + [""]
        section = {"ratios": ratios, "rows": rows,
                   "engines": {n: {"median_ms": r.ms, "final": r.final, "bursts": r.bursts}
                               for n, r in results.items()}}
        if rows == 1:
            payload["prompts"][str(prompt)] = section
        else:
            payload["batch"] = section
    text = "\n".join(lines) + "\n"
    print(text)
    write_results(HERE / "results" / f"llama_cpp_decode-{args.model}-{machine_tag(info)}",
                  payload, text)


def parse_also(spec: str) -> tuple[str, Path]:
    label, sep, folder = spec.rpartition("=")
    if not sep or label.split()[:1] not in (["int4"], ["int8"]):
        raise SystemExit(f"--also {spec!r}: expected LABEL=FOLDER, LABEL starting with "
                         "int4 or int8")
    return label, Path(folder)


if __name__ == "__main__":
    main()
