"""Decoding speed: GPT-2 124M shapes and SmolLM2-135M, edgelm vs PyTorch.

    python benchmarks/gpt2_decode.py --bursts 15 --calls 2 --threads 2 \
        --ct2-python /path/to/venv-with-ctranslate2/bin/python

Each engine is loaded once in its own process and the engines take turns in
short bursts (harness.run_interleaved); 16-token prompt, 64 new tokens, greedy,
plus 4-beam search. GPT-2 weights are random (no GPT-2
weights can be had offline); speed does not depend on their values.
Results: benchmarks/results/decode.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import (  # noqa: E402
    Engine,
    hardware,
    paired_ratio,
    run_interleaved,
    versus_lines,
    write_results,
)

from edgelm.bench.exports import cached_export  # noqa: E402
from edgelm.caches import cache_path  # noqa: E402

CACHE = cache_path("benchmarks")
PRECISIONS = ("fp32", "int8", "int4")
NEW_TOKENS = 64  # passed to every worker as --new


def gpt2_checkpoint() -> Path:
    folder = CACHE / "gpt2-124m"
    if not (folder / "model.safetensors").is_file():
        import torch
        import transformers

        torch.manual_seed(0)
        config = transformers.GPT2Config(architectures=["GPT2LMHeadModel"])  # 124M shapes
        transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder)
        bpe_tokenizer(folder, 50257, eos_id=50256, eos_token="<|endoftext|>")
    return folder


def bpe_tokenizer(folder: Path, vocab_size: int, *, eos_id: int, eos_token: str) -> None:
    """A byte-level BPE tokenizer of the model's vocabulary size (speed only needs the ids):
    the 256 byte symbols, then fillers t<id>, with eos at eos_id."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    ids = [i for i in range(vocab_size) if i != eos_id]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = dict(zip(alphabet, ids)) | {f"t{i}": i for i in ids[len(alphabet):]}
    tok = Tokenizer(models.BPE(vocab=vocab | {eos_token: eos_id}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos_token).save_pretrained(folder)


def ct2_converted(checkpoint: Path, quantization: str, ct2_python: str) -> Path:
    """CTranslate2's conversion of the checkpoint, with its own converter.

    Its transformers (4.x) cannot read a tokenizer_config saved by transformers 5
    (TokenizersBackend), so the converter gets a copy that names the fast class.
    """
    out = CACHE / f"{checkpoint.name}-ct2-{quantization}"
    if (out / "model.bin").is_file():
        return out
    copy = CACHE / f"{checkpoint.name}-for-ct2"
    shutil.copytree(checkpoint, copy, dirs_exist_ok=True)
    config_path = copy / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    for name in ("bos_token", "unk_token"):
        config.setdefault(name, config.get("eos_token"))
        config[name] = config[name] or config.get("eos_token")
    config_path.write_text(json.dumps(config))
    converter = Path(ct2_python).parent / "ct2-transformers-converter"
    subprocess.run([str(converter), "--model", str(copy), "--output_dir", str(out),
                    "--quantization", quantization, "--force"], check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bursts", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2, help="generations per burst")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="gpt2,smollm2")
    parser.add_argument("--ct2-python", default=None,
                        help="A Python with ctranslate2 installed (GPT-2 rows for it).")
    args = parser.parse_args()
    from edgelm.export.zoo import smollm2_dir

    checkpoints = {"gpt2": gpt2_checkpoint, "smollm2": smollm2_dir}
    worker = [sys.executable, str(HERE / "worker_decoder.py")]
    threads = ["--threads", str(args.threads), "--new", str(NEW_TOKENS)]
    payload = {"hardware": hardware(), "threads": args.threads, "models": {}}
    lines = ["# Decoding: 16-token prompt + 64 new tokens, greedy and 4-beam\n",
             f"Hardware: {payload['hardware']['cpu']} ({', '.join(payload['hardware']['simd'])}), "
             f"{args.threads} threads. Each engine loaded once in its own process; greedy "
             f"tokens/s from {args.bursts} bursts of {args.calls} generations, engines taking "
             "turns; speed-ups are medians of paired per-burst ratios. TTFT, beam, load and "
             "memory measured once per engine at the end.\n",
             f"Command: `python benchmarks/gpt2_decode.py --bursts {args.bursts} --calls "
             f"{args.calls} --threads {args.threads} --models {args.models}"
             + (" --ct2-python CT2_PYTHON`\n" if args.ct2_python else "`\n")]
    for name in args.models.split(","):
        checkpoint = checkpoints[name]()
        engines = [Engine(name="PyTorch fp32", command=[*worker, "torch", str(checkpoint), *threads])]
        for precision in PRECISIONS:
            folder = cached_export(checkpoint, precision)
            engines.append(Engine(name=f"edgelm {precision}",
                                  command=[*worker, "edgelm", str(folder), *threads]))
        if args.ct2_python and name == "gpt2":
            for quantization in ("float32", "int8"):
                folder = ct2_converted(checkpoint, quantization, args.ct2_python)
                engines.append(Engine(
                    name=f"CTranslate2 {quantization.replace('float32', 'fp32')}",
                    command=[args.ct2_python, str(HERE / "worker_decoder.py"), "ct2",
                             str(folder), *threads]))
        results = run_interleaved(engines, bursts=args.bursts, calls=args.calls)
        base = results["PyTorch fp32"]
        rows = {}
        lines += [f"\n## {name}\n", "| engine | tokens/s | fastest 10% tokens/s | vs PyTorch | "
                  "TTFT ms | ms/token | beam-4 tokens/s | load s | peak RSS MB | size MB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for engine in engines:
            r = results[engine.name]
            folder = Path(engine.command[3])  # python, worker, engine kind, path, options
            pattern = {"PyTorch": "*.safetensors", "edgelm": "*.onnx*", "CTranslate2": "*.bin"}
            size = sum(p.stat().st_size
                       for p in folder.glob(pattern[engine.name.split()[0]])) / 1e6
            row = {**r.final, "tokens_per_s": NEW_TOKENS * 1000 / r.ms,
                   "fastest_decile_tokens_per_s": NEW_TOKENS * 1000 / r.fastest_decile_ms,
                   "speedup_vs_pytorch": paired_ratio(base, r), "size_mb": round(size, 1),
                   "burst_medians_ms": r.burst_medians()}
            rows[engine.name] = row
            lines.append(
                f"| {engine.name} | {row['tokens_per_s']:.1f} | "
                f"{row['fastest_decile_tokens_per_s']:.1f} | {row['speedup_vs_pytorch']:.2f}x "
                f"| {row['ttft_ms']:.1f} | {row['per_token_ms']:.2f} | "
                f"{row['beam_tokens_per_s']:.1f} | {row['load_s']:.2f} | "
                f"{row['peak_rss_mb']:.0f} | {size:.0f} |")
        pairs = [("edgelm int8", "CTranslate2 int8"), ("edgelm int4", "CTranslate2 int8"),
                 ("edgelm fp32", "CTranslate2 fp32")]
        lines += versus_lines(results, pairs)[0]
        payload["models"][name] = rows
    write_results(HERE / "results" / "decode", payload, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
