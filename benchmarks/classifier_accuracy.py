"""The real fine-tuned MiniLM sentiment classifier: accuracy of PyTorch and each export.

    python benchmarks/classifier_accuracy.py   # -> results/classifier_accuracy-CPUKIND.md

2,000 held-out VADER movie-review snippets (edgelm.export.zoo). "flips" counts
texts whose predicted label differs from PyTorch's: a less noisy measure of
what quantization changes than the accuracy difference.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from harness import hardware, machine_tag, write_results

HERE = Path(__file__).resolve().parent
VARIANTS = {  # name -> ExportOptions keywords
    "edgelm fp32": {"precision": "fp32"},
    "edgelm int8": {"precision": "int8"},
    "edgelm int8 --keep-float attention,first-layer": {
        "precision": "int8", "keep_float": ("attention", "first-layer")},
}


def torch_predictions(checkpoint: Path, texts: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    predicted: list[int] = []
    for start in range(0, len(texts), 64):
        batch = tok(texts[start:start + 64], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            predicted.extend(model(**batch).logits.argmax(-1).tolist())
    return np.array(predicted)


def edgelm_predictions(checkpoint: Path, options: dict, texts: list[str]) -> tuple[np.ndarray, float]:
    import edgelm
    from edgelm.export import ExportOptions, export_model

    with tempfile.TemporaryDirectory() as tmp:
        manifest = export_model(checkpoint, Path(tmp) / "out", ExportOptions(**options))
        pipe = edgelm.Pipeline(Path(tmp) / "out", threads=2)
        labels = [r["label"] for r in pipe(texts)]
        size = (Path(tmp) / "out" / "model.onnx").stat().st_size / 1e6
    return np.array([manifest.labels.index(label) for label in labels]), size


def measure() -> list[dict]:
    from edgelm.export.zoo import sentiment_classifier_dir, sentiment_holdout

    checkpoint, holdout = sentiment_classifier_dir(), sentiment_holdout()
    texts, labels = [t for t, _ in holdout], np.array([y for _, y in holdout])
    reference = torch_predictions(checkpoint, texts)
    rows = [{"variant": "PyTorch fp32", "accuracy": float((reference == labels).mean()),
             "delta_points": 0.0, "flips": 0, "size_mb": None}]
    for name, options in VARIANTS.items():
        predicted, size = edgelm_predictions(checkpoint, options, texts)
        accuracy = float((predicted == labels).mean())
        rows.append({"variant": name, "accuracy": accuracy,
                     "delta_points": 100 * (accuracy - rows[0]["accuracy"]),
                     "flips": int((predicted != reference).sum()), "size_mb": size})
    return rows


def main() -> None:
    rows = measure()
    info = hardware()
    lines = ["# Fine-tuned MiniLM sentiment classifier, 2,000 held-out snippets\n",
             f"CPU: {info['cpu']} ({', '.join(info['simd'])}); versions {info['versions']}\n",
             "Command: `python benchmarks/classifier_accuracy.py`\n",
             "| variant | accuracy | vs PyTorch (points) | label flips vs PyTorch | model MB |",
             "|---|---|---|---|---|"]
    for r in rows:
        size = f"{r['size_mb']:.1f}" if r["size_mb"] else "-"
        lines.append(f"| {r['variant']} | {r['accuracy']:.4f} | {r['delta_points']:+.2f} | "
                     f"{r['flips']} | {size} |")
    markdown = "\n".join(lines) + "\n"
    # int8 flips differ between CPU kinds (AVX2 vs VNNI kernels): one file per kind
    write_results(HERE / "results" / f"classifier_accuracy-{machine_tag(info)}",
                  {"hardware": info, "rows": rows},
                  markdown)
    print(markdown)


if __name__ == "__main__":
    main()
