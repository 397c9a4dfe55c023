"""Decoding at the real shapes of the new families: edgelm against onnxruntime-genai
(its own builder's int4) and CTranslate2 (its own converter's int8).

    python benchmarks/families_decode.py --anchors-python VENV/bin/python \
        --bursts 8 --calls 2 --threads 2 [--models qwen2.5-0.5b,gemma2-2b-4l]

VENV holds onnxruntime-genai and ctranslate2 (and can reach torch, transformers and
onnx for their converters). Checkpoints are random-init at the real shapes (speed
does not depend on the weights' values): Qwen2.5-0.5B (24 layers), and Gemma2-2B cut
to 4 of its 26 layers so that it fits beside PyTorch in memory. Each engine is loaded
once in its own process; 16-token prompt, 64 new tokens, greedy; engines take turns
in bursts (harness.run_interleaved). Results: benchmarks/results/families_decode.*
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gpt2_decode import CACHE, NEW_TOKENS, bpe_tokenizer, ct2_converted  # noqa: E402
from harness import (  # noqa: E402
    Engine,
    hardware,
    run_interleaved,
    versus_lines,
    write_results,
)

from edgelm.bench.exports import cached_export  # noqa: E402

SHAPES = {
    "qwen2.5-0.5b": ("Qwen2ForCausalLM", dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
        max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1000000.0,
        eos_token_id=151643, bos_token_id=151643)),
    "qwen2.5-1.5b": ("Qwen2ForCausalLM", dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
        max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1000000.0,
        eos_token_id=151643, bos_token_id=151643)),
    "gemma2-2b-4l": ("Gemma2ForCausalLM", dict(
        hidden_size=2304, intermediate_size=9216, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=256000,
        max_position_embeddings=8192, sliding_window=4096,
        layer_types=["sliding_attention", "full_attention"] * 2,
        eos_token_id=1, bos_token_id=2, pad_token_id=0)),
}
CT2_FAMILIES = {"qwen2.5-0.5b"}  # CTranslate2's converter has no Gemma 2


def checkpoint(name: str) -> Path:
    folder = CACHE / name
    if not (folder / "model.safetensors").is_file():
        import torch
        import transformers

        model_class, shape = SHAPES[name]
        config_class = getattr(transformers, model_class).config_class
        torch.manual_seed(0)
        config = config_class(architectures=[model_class], **shape)
        getattr(transformers, model_class)(config).eval().save_pretrained(folder)
        bpe_tokenizer(folder, shape["vocab_size"], eos_id=shape["eos_token_id"],
                      eos_token="<|endoftext|>")
    return folder


def variant(spec: str) -> tuple[str, int, int]:
    """'int4:b128:t4' -> (precision, block_size, table_bits)."""
    precision, *options = spec.split(":")
    found = {o[0]: int(o[1:]) for o in options}
    return precision, found.get("b", 32), found.get("t", 8)


def exported(source: Path, spec: str) -> Path:
    precision, block, table = variant(spec)
    return cached_export(source, precision, block_size=block, table_bits=table)


def variant_name(spec: str) -> str:
    precision, block, table = variant(spec)
    return " ".join([f"edgelm {precision}", *([f"block {block}"] if block != 32 else []),
                     *([f"{table}-bit table"] if table != 8 else [])])


def genai_built(source: Path, anchors_python: str, threads: int) -> Path:
    """onnxruntime-genai's int4 CPU build of the checkpoint, by its own builder."""
    out = CACHE / f"{source.name}-genai-int4"
    if not (out / "genai_config.json").is_file():
        subprocess.run([anchors_python, "-m", "onnxruntime_genai.models.builder",
                        "-m", str(source), "-o", str(out), "-p", "int4", "-e", "cpu",
                        "-c", str(CACHE / "genai-work")], check=True)
    path = out / "genai_config.json"
    config = json.loads(path.read_text())
    config["model"]["decoder"].setdefault("session_options", {})[
        "intra_op_num_threads"] = threads
    path.write_text(json.dumps(config, indent=2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--anchors-python", required=True,
                        help="A Python with onnxruntime-genai and ctranslate2 installed.")
    parser.add_argument("--bursts", type=int, default=8)
    parser.add_argument("--calls", type=int, default=2, help="generations per burst")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="qwen2.5-0.5b,gemma2-2b-4l")
    parser.add_argument("--variants", default="int4,int4:b128,int4:t4,int4:b128:t4,int8,"
                        "int8:b128", help="edgelm exports: precision[:bBLOCK][:tTABLE_BITS]")
    args = parser.parse_args()
    options = ["--threads", str(args.threads), "--new", str(NEW_TOKENS), "--beams", "1"]
    worker = str(HERE / "worker_decoder.py")
    payload = {"hardware": hardware(), "threads": args.threads, "models": {}}
    lines = ["# Decoding at the new families' real shapes: edgelm vs onnxruntime-genai and "
             "CTranslate2\n",
             f"Hardware: {payload['hardware']['cpu']} ({', '.join(payload['hardware']['simd'])}),"
             f" {args.threads} threads. 16-token prompt + {NEW_TOKENS} new tokens, greedy; "
             f"each engine loaded once in its own process; {args.bursts} bursts of "
             f"{args.calls} generations, engines taking turns; ratios are medians of paired "
             "per-burst ratios. Random weights at the real shapes.\n",
             f"Command: `python benchmarks/families_decode.py --anchors-python VENV/bin/python "
             f"--bursts {args.bursts} --calls {args.calls} --threads {args.threads} "
             f"--models {args.models} --variants {args.variants}`\n"]
    for name in args.models.split(","):
        source = checkpoint(name)
        engines = [Engine(name=variant_name(v), command=[
            sys.executable, worker, "edgelm", str(exported(source, v)),
            *options]) for v in args.variants.split(",")]
        engines.append(Engine(name="onnxruntime-genai int4", command=[
            args.anchors_python, worker, "genai",
            str(genai_built(source, args.anchors_python, args.threads)), *options]))
        if name in CT2_FAMILIES:
            engines.append(Engine(name="CTranslate2 int8", command=[
                args.anchors_python, worker, "ct2",
                str(ct2_converted(source, "int8", args.anchors_python)), *options]))
        results = run_interleaved(engines, bursts=args.bursts, calls=args.calls)
        rows = {}
        lines += [f"\n## {name}\n", "| engine | tokens/s | TTFT ms | load s | peak RSS MB |",
                  "|---|---|---|---|---|"]
        for engine in engines:
            r = results[engine.name]
            row = {**r.final, "tokens_per_s": NEW_TOKENS * 1000 / r.ms,
                   "burst_medians_ms": r.burst_medians()}
            rows[engine.name] = row
            lines.append(f"| {engine.name} | {row['tokens_per_s']:.1f} | {row['ttft_ms']:.1f} "
                         f"| {row['load_s']:.2f} | {row['peak_rss_mb']:.0f} |")
        pairs = [(variant_name(v), "onnxruntime-genai int4" if v.startswith("int4")
                  else "CTranslate2 int8") for v in args.variants.split(",")]
        compared, ratios = versus_lines(results, pairs)
        lines += compared
        rows.update(ratios)
        payload["models"][name] = rows
    write_results(HERE / "results" / "families_decode", payload, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
