"""BERT-base (or DeBERTa-v3-base) shapes, batch 1, 128 tokens, 2 threads: edgelm vs
PyTorch vs optimum.

    python benchmarks/bert_base.py [--optimum-python PATH] [--bursts 20] [--calls 10]
    python benchmarks/bert_base.py --shape deberta-v3-base [...]

Random weights of the real shapes (no BERT-base checkpoint ships offline).
optimum-onnx needs transformers < 4.58, so it lives in its own venv:
    python -m venv .venv-optimum && .venv-optimum/bin/pip install torch==2.13.0 \
        'optimum-onnx[onnxruntime]==0.1.0' onnxruntime==1.32.0
Each engine runs in its own process; the engines take turns in short bursts.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from harness import (
    Engine,
    hardware,
    machine_tag,
    paired_ratio,
    run_interleaved,
    versus,
    write_results,
)

from edgelm.bench.exports import cached_export
from edgelm.caches import cache_path

HERE = Path(__file__).resolve().parent
WORK = cache_path("benchmarks") / "bert-base"
# DeBERTa-v3-base: disentangled attention (no onnxruntime fusion), 128k vocabulary.
DEBERTA_V3_BASE = dict(
    vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, max_position_embeddings=512, type_vocab_size=0,
    relative_attention=True, position_buckets=256, max_relative_positions=-1,
    norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
    position_biased_input=False, num_labels=3, architectures=["DebertaV2ForSequenceClassification"])


def checkpoint(shape: str = "bert-base") -> Path:
    """A seeded random classifier of `shape`, with the uncased WordPiece tokenizer."""
    folder = WORK.parent / shape / "checkpoint"
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    import transformers

    from edgelm.export.zoo import minilm_dir

    torch.manual_seed(0)
    if shape == "deberta-v3-base":
        transformers.DebertaV2ForSequenceClassification(
            transformers.DebertaV2Config(**DEBERTA_V3_BASE)).save_pretrained(folder)
    else:
        config = transformers.BertConfig(num_labels=2,
                                         architectures=["BertForSequenceClassification"])
        transformers.BertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm_dir() / name).exists():
            shutil.copyfile(minilm_dir() / name, folder / name)
    return folder


def optimum_exports(ckpt: Path, python: str, simd: list[str]) -> dict[str, Path]:
    cli = [python, "-m", "optimum.commands.optimum_cli"]
    work = ckpt.parent
    arch = "avx512_vnni" if "avx512_vnni" in simd else "avx2"
    # optimum bakes the instruction set into the quantized graph: one folder per set
    fp32, o2, int8 = work / "optimum-fp32", work / "optimum-o2", work / f"optimum-int8-{arch}"
    if not (fp32 / "model.onnx").exists():
        subprocess.run([*cli, "export", "onnx", "--model", str(ckpt), "--task",
                        "text-classification", str(fp32)], check=True)
    if not (o2 / "model.onnx").exists() and "deberta" not in ckpt.parent.name:
        subprocess.run([*cli, "export", "onnx", "--model", str(ckpt), "--task",
                        "text-classification", "--optimize", "O2", str(o2)], check=True)
    if not (int8 / "model_quantized.onnx").exists():
        subprocess.run([*cli, "onnxruntime", "quantize", "--onnx_model", str(fp32), f"--{arch}",
                        "-o", str(int8)], check=True)
    found = {"optimum fp32": fp32 / "model.onnx", "optimum O2 fp32": o2 / "model.onnx",
             "optimum int8": int8 / "model_quantized.onnx"}
    return {name: path for name, path in found.items() if path.exists()}


def agreement(ckpt: Path, models: dict[str, Path], rows: int = 64) -> dict[str, dict]:
    """Each ONNX model's argmax agreement with PyTorch fp32 and its largest logit
    difference, over `rows` random 128-token inputs (random weights: labels mean nothing,
    but int8's drift from fp32 does)."""
    import numpy as np
    import onnxruntime as ort
    import torch
    import transformers

    ids = np.random.default_rng(1).integers(1000, 20000, size=(rows, 128), dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids)}
    model = transformers.AutoModelForSequenceClassification.from_pretrained(ckpt).eval()
    with torch.inference_mode():
        ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()
                       if k != "token_type_ids"}).logits.numpy()
    found = {}
    for name, path in models.items():
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        logits = np.concatenate([session.run(None, {n: feed[n][i:i + 8] for n in names})[0]
                                 for i in range(0, rows, 8)])
        found[name] = {"label_agreement": float((logits.argmax(-1) == ref.argmax(-1)).mean()),
                       "max_logit_diff": float(np.abs(logits - ref).max())}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimum-python", default=None)
    parser.add_argument("--bursts", type=int, default=20)
    parser.add_argument("--calls", type=int, default=10, help="timed calls per burst")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shape", choices=["bert-base", "deberta-v3-base"], default="bert-base")
    args = parser.parse_args()
    info = hardware()
    ckpt = checkpoint(args.shape)
    models = {f"edgelm {p}": cached_export(ckpt, p) / "model.onnx" for p in ("fp32", "int8")}
    if args.optimum_python:
        models.update(optimum_exports(ckpt, args.optimum_python, info["simd"]))
    worker = [sys.executable, str(HERE / "worker_encoder.py")]
    threads = ["--threads", str(args.threads)]
    engines = [Engine(name="PyTorch fp32", command=[*worker, "torch", str(ckpt), *threads])]
    # edgelm's graphs in the sessions its pipelines make; optimum's in bare sessions
    engines += [Engine(name=n, command=[*worker, "edgelm" if n.startswith("edgelm") else "onnx",
                                        str(p), *threads]) for n, p in models.items()]
    results = run_interleaved(engines, bursts=args.bursts, calls=args.calls)
    base = results["PyTorch fp32"]
    rows = [{"engine": name, "ms": r.ms, "fastest_decile_ms": r.fastest_decile_ms,
             "speedup_vs_pytorch": paired_ratio(base, r),
             "size_mb": models[name].stat().st_size / 1e6 if name in models else None,
             "peak_rss_mb": r.final["peak_rss_mb"], "burst_medians_ms": r.burst_medians()}
            for name, r in results.items()]
    table = ["| engine | ms per call (median) | fastest 10% ms | vs PyTorch | model MB | "
             "peak RSS MB |", "|---|---|---|---|---|---|"]
    for r in rows:
        size = f"{r['size_mb']:.0f}" if r["size_mb"] else "-"
        table.append(f"| {r['engine']} | {r['ms']:.1f} | {r['fastest_decile_ms']:.1f} | "
                     f"{r['speedup_vs_pytorch']:.2f}x | {size} | {r['peak_rss_mb']:.0f} |")
    ratios = {}
    if args.optimum_python:
        for p in ("fp32", "int8"):
            ratios[p] = versus(results[f"optimum {p}"], results[f"edgelm {p}"])
            table.append(f"\nedgelm {p} vs optimum {p}: **{ratios[p]['paired_bursts']:.2f}x** "
                         f"(median of paired burst ratios), "
                         f"**{ratios[p]['fastest_decile']:.2f}x** (fastest 10% of calls)")
    quality = agreement(ckpt, {n: p for n, p in models.items() if "int8" in n})
    for name, q in quality.items():
        table.append(f"\n{name}: label agreement with PyTorch fp32 {q['label_agreement']:.3f}, "
                     f"largest logit difference {q['max_logit_diff']:.3f} (64 random "
                     "128-token inputs)")
    header = (f"# {args.shape} shapes, batch 1, 128 tokens, {args.threads} threads\n\n"
              f"CPU: {info['cpu']} ({info['cores']} cores, {', '.join(info['simd'])}); "
              f"each engine loaded once in its own process; {args.bursts} bursts of "
              f"{args.calls} calls per engine, engines taking turns (order rotating, 0.5 s "
              f"pauses); speed-ups vs PyTorch are medians of per-burst ratios.\n"
              f"Versions: {info['versions']}\n\nCommand: `python benchmarks/bert_base.py "
              f"--optimum-python .venv-optimum/bin/python --bursts {args.bursts} "
              f"--calls {args.calls} --shape {args.shape}`\n\n")
    markdown = header + "\n".join(table) + "\n"
    name = f"{args.shape.replace('-', '_')}-{machine_tag(info)}"
    write_results(HERE / "results" / name, {"hardware": info, "rows": rows,
                                             "vs_optimum": ratios, "int8_quality": quality},
                  markdown)
    print(markdown)


if __name__ == "__main__":
    main()
