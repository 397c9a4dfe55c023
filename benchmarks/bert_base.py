"""BERT-base shapes, batch 1, 128 tokens, 2 threads: edgelm vs PyTorch vs optimum.

    python benchmarks/bert_base.py [--optimum-python PATH] [--rounds 5]

Random weights of the real shapes (no BERT-base checkpoint ships offline).
optimum-onnx needs transformers < 4.58, so it lives in its own venv:
    python -m venv .venv-optimum && .venv-optimum/bin/pip install torch==2.13.0 \
        'optimum-onnx[onnxruntime]==0.1.0' onnxruntime==1.32.0
Each engine runs in its own process, in alternating rounds; medians reported.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from harness import Engine, hardware, run_alternating, write_results

HERE = Path(__file__).resolve().parent
WORK = Path.home() / ".cache" / "edgelm-bench" / "bert-base"


def checkpoint() -> Path:
    """A seeded random BERT-base classifier with the uncased WordPiece tokenizer."""
    folder = WORK / "checkpoint"
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from edgelm.export.zoo import minilm_dir

    torch.manual_seed(0)
    config = BertConfig(num_labels=2, architectures=["BertForSequenceClassification"])
    BertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm_dir() / name).exists():
            shutil.copyfile(minilm_dir() / name, folder / name)
    return folder


def edgelm_export(ckpt: Path, precision: str) -> Path:
    out = WORK / f"edgelm-{precision}"
    if not (out / "edgelm.json").exists():
        subprocess.run([sys.executable, "-m", "edgelm", "export", str(ckpt), "-o", str(out),
                        "--precision", precision, "--force", "-q"], check=True)
    return out / "model.onnx"


def optimum_exports(ckpt: Path, python: str, simd: list[str]) -> dict[str, Path]:
    cli = [python, "-m", "optimum.commands.optimum_cli"]
    fp32, o2, int8 = WORK / "optimum-fp32", WORK / "optimum-o2", WORK / "optimum-int8"
    if not (fp32 / "model.onnx").exists():
        subprocess.run([*cli, "export", "onnx", "--model", str(ckpt), "--task",
                        "text-classification", str(fp32)], check=True)
    if not (o2 / "model.onnx").exists():
        subprocess.run([*cli, "export", "onnx", "--model", str(ckpt), "--task",
                        "text-classification", "--optimize", "O2", str(o2)], check=True)
    if not (int8 / "model_quantized.onnx").exists():
        arch = "--avx512_vnni" if "avx512_vnni" in simd else "--avx2"
        subprocess.run([*cli, "onnxruntime", "quantize", "--onnx_model", str(fp32), arch,
                        "-o", str(int8)], check=True)
    return {"optimum fp32": fp32 / "model.onnx", "optimum O2 fp32": o2 / "model.onnx",
            "optimum int8": int8 / "model_quantized.onnx"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimum-python", default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    info = hardware()
    ckpt = checkpoint()
    models = {"edgelm fp32": edgelm_export(ckpt, "fp32"), "edgelm int8": edgelm_export(ckpt, "int8")}
    if args.optimum_python:
        models.update(optimum_exports(ckpt, args.optimum_python, info["simd"]))
    worker = [sys.executable, str(HERE / "worker_encoder.py")]
    threads = ["--threads", str(args.threads)]
    engines = [Engine(name="PyTorch fp32", command=[*worker, "torch", str(ckpt), *threads])]
    engines += [Engine(name=n, command=[*worker, "onnx", str(p), *threads]) for n, p in models.items()]
    results = run_alternating(engines, args.rounds)
    base = results["PyTorch fp32"].median("ms")
    rows = []
    for name, result in results.items():
        size = models[name].stat().st_size / 1e6 if name in models else None
        rows.append({"engine": name, "ms": result.median("ms"), "speedup_vs_pytorch": base / result.median("ms"),
                     "size_mb": size, "peak_rss_mb": result.median("peak_rss_mb")})
    table = ["| engine | ms per call (median) | vs PyTorch | model MB | peak RSS MB |",
             "|---|---|---|---|---|"]
    for r in rows:
        size = f"{r['size_mb']:.0f}" if r["size_mb"] else "-"
        table.append(f"| {r['engine']} | {r['ms']:.1f} | {r['speedup_vs_pytorch']:.2f}x | {size} | "
                     f"{r['peak_rss_mb']:.0f} |")
    if args.optimum_python:
        ratio = results["optimum int8"].median("ms") / results["edgelm int8"].median("ms")
        table.append(f"\nedgelm int8 vs optimum int8: **{ratio:.2f}x**")
    header = (f"# BERT-base shapes, batch 1, 128 tokens, {args.threads} threads\n\n"
              f"CPU: {info['cpu']} ({info['cores']} cores, {', '.join(info['simd'])}); "
              f"{args.rounds} alternating rounds, each engine in its own process, 30 calls each.\n"
              f"Versions: {info['versions']}\n\nCommand: `python benchmarks/bert_base.py "
              f"--optimum-python .venv-optimum/bin/python --rounds {args.rounds}`\n\n")
    markdown = header + "\n".join(table) + "\n"
    write_results(HERE / "results" / "bert_base", {"hardware": info, "rows": rows}, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
