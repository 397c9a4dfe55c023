"""Encoder-decoders at real shapes: edgelm against CTranslate2 (its own converter's
int8), optimum's ONNX export run by ORTModelForSeq2SeqLM (fp32), and PyTorch.

    python benchmarks/seq2seq_decode.py --anchors-python VENV/bin/python \
        --optimum-python VENV2/bin/python --bursts 4 --calls 2 --threads 2

Shapes: T5-small and Marian opus-mt-en-de, random init (speed does not depend on
the weights' values). 32-token sources, exactly 32 new tokens, greedy and 4-beam,
batch 1 and 8. Each engine is loaded once per setting in its own process and the
engines take turns in bursts (harness.run_interleaved). Results:
benchmarks/results/seq2seq_decode.*
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gpt2_decode import CACHE, bpe_tokenizer, ct2_converted  # noqa: E402
from harness import Engine, hardware, run_interleaved, versus_lines, write_results  # noqa: E402

from edgelm.bench.exports import cached_export  # noqa: E402

SHAPES = {
    "t5-small": ("T5ForConditionalGeneration", dict(
        d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8, vocab_size=32128,
        feed_forward_proj="relu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)),
    "opus-mt-en-de": ("MarianMTModel", dict(
        d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
        decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
        vocab_size=58101, max_position_embeddings=512, activation_function="swish",
        scale_embedding=True, pad_token_id=58100, eos_token_id=0, decoder_start_token_id=58100,
        forced_eos_token_id=0)),
}
SETTINGS = ((1, 1), (8, 1), (1, 4), (8, 4))  # (batch, beams)


def checkpoint(name: str) -> Path:
    folder = CACHE / name
    if not (folder / "model.safetensors").is_file():
        import torch
        import transformers

        model_class, shape = SHAPES[name]
        torch.manual_seed(0)
        cls = getattr(transformers, model_class)
        cls(cls.config_class(architectures=[model_class], **shape)).eval().save_pretrained(folder)
        bpe_tokenizer(folder, shape["vocab_size"], eos_id=shape["eos_token_id"], eos_token="</s>")
        # The pad token named <pad>, as in the real checkpoints (CTranslate2's Marian
        # converter drops it from the vocabulary by that name).
        path = folder / "tokenizer.json"
        tokenizer = json.loads(path.read_text())
        vocab = tokenizer["model"]["vocab"]
        old = next(t for t, i in vocab.items() if i == shape["pad_token_id"])
        vocab["<pad>"] = vocab.pop(old)
        path.write_text(json.dumps(tokenizer))
        config = json.loads((folder / "tokenizer_config.json").read_text())
        config["pad_token"] = "<pad>"
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def optimum_exported(source: Path, python: str) -> Path:
    out = CACHE / f"{source.name}-optimum-fp32"
    if not (out / "config.json").is_file():
        subprocess.run([python, "-c", (
            "import sys; from optimum.onnxruntime import ORTModelForSeq2SeqLM; "
            "ORTModelForSeq2SeqLM.from_pretrained(sys.argv[1], export=True)"
            ".save_pretrained(sys.argv[2])"), str(source), str(out)], check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--anchors-python", required=True, help="A Python with ctranslate2.")
    parser.add_argument("--optimum-python", required=True,
                        help="A Python with optimum[onnxruntime] (its exporter and runtime).")
    parser.add_argument("--bursts", type=int, default=4)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(SHAPES))
    parser.add_argument("--settings", default=",".join(f"{b}x{k}" for b, k in SETTINGS),
                        help="batch x beams, e.g. 1x1,8x4")
    args = parser.parse_args()
    worker = str(HERE / "worker_seq2seq.py")
    info = hardware()
    payload = {"hardware": info, "threads": args.threads, "models": {}}
    lines = ["# Encoder-decoders: edgelm vs CTranslate2, optimum and PyTorch\n",
             f"Hardware: {info['cpu']} ({', '.join(info['simd'])}), {args.threads} threads. "
             "32-token sources, exactly 32 new tokens; each engine loaded once per setting in "
             f"its own process; {args.bursts} bursts of {args.calls} calls, engines taking "
             "turns; ratios are medians of paired per-burst ratios. Random weights at the "
             "real shapes.\n",
             f"Command: `python benchmarks/seq2seq_decode.py --anchors-python A --optimum-python"
             f" O --bursts {args.bursts} --calls {args.calls} --threads {args.threads} "
             f"--models {args.models} --settings {args.settings}`\n"]
    for name in args.models.split(","):
        source = checkpoint(name)
        shape = SHAPES[name][1]
        folders = {p: cached_export(source, p) for p in ("int8", "fp32")}
        ct2 = ct2_converted(source, "int8", args.anchors_python)
        optimum = optimum_exported(source, args.optimum_python)
        payload["models"][name] = {}
        lines += [f"\n## {name}\n", "| batch x beams | engine | ms per call | tokens/s |",
                  "|---|---|---|---|"]
        for setting in args.settings.split(","):
            batch, beams = (int(x) for x in setting.split("x"))
            common = ["--threads", str(args.threads), "--batch", str(batch), "--beams",
                      str(beams), "--vocab", str(shape["vocab_size"]),
                      "--eos", str(shape["eos_token_id"])]
            engines = [
                Engine(name="edgelm int8", command=[sys.executable, worker, "edgelm",
                                                    str(folders["int8"]), *common]),
                Engine(name="edgelm fp32", command=[sys.executable, worker, "edgelm",
                                                    str(folders["fp32"]), *common]),
                Engine(name="CTranslate2 int8", command=[args.anchors_python, worker, "ct2",
                                                         str(ct2), *common]),
                Engine(name="optimum fp32", command=[args.optimum_python, worker, "optimum",
                                                     str(optimum), *common]),
                Engine(name="PyTorch fp32", command=[sys.executable, worker, "torch",
                                                     str(source), *common]),
            ]
            results = run_interleaved(engines, bursts=args.bursts, calls=args.calls)
            rows = {}
            for engine in engines:
                r = results[engine.name]
                rows[engine.name] = {"ms": r.ms, "tokens_per_s": batch * 32 * 1000 / r.ms,
                                     "burst_medians_ms": r.burst_medians(), **r.final}
                lines.append(f"| {setting} | {engine.name} | {r.ms:.0f} | "
                             f"{rows[engine.name]['tokens_per_s']:.1f} |")
            compared, ratios = versus_lines(results, [
                ("edgelm int8", "CTranslate2 int8"), ("edgelm fp32", "optimum fp32"),
                ("edgelm fp32", "PyTorch fp32")])
            lines += [f"\n{setting}: " + line.strip() for line in compared] + [""]
            rows.update(ratios)
            payload["models"][name][setting] = rows
    write_results(HERE / "results" / "seq2seq_decode", payload, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
