"""Every registered family exported from its seeded tiny fixture at each precision, with
the export's own validation figures: the README's support matrix.

    python benchmarks/support_matrix.py   # -> results/support_matrix-CPUKIND.md

fp32: the largest |logit| difference from PyTorch over the validation cases (with and
without the cache for decoders). int8/int4: the same difference, and the share of
positions whose top-1 agrees with PyTorch (decoders: PyTorch's greedy continuation fed
through the graph; encoders: labels). Embedding models report the lowest cosine to
PyTorch instead. Random-init fixtures: the figures show that each graph is the model,
not how well a trained model survives quantization (see classifier_accuracy.py and the
real-model tests for that).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from harness import hardware, machine_tag, write_results

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.fixtures builds the checkpoints

PRECISIONS = {"encoder": ("fp32", "int8"), "decoder": ("fp32", "int8", "int4")}


def measure() -> list[dict]:
    from edgelm.export import ExportOptions, export_model
    from edgelm.export.architectures import identify
    from tests.fixtures import DECODERS, ENCODERS, build_decoder, build_encoder

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fixtures = [(name, "encoder", build_encoder) for name in ENCODERS] + \
            [(name, "decoder", build_decoder) for name in DECODERS]
        for name, kind, build in fixtures:
            checkpoint = build(name, root / name)
            found = identify(checkpoint)
            for precision in PRECISIONS[kind]:
                manifest = export_model(checkpoint, root / f"{name}-{precision}",
                                        ExportOptions(precision=precision))
                v = manifest.validation
                rows.append({
                    "fixture": name, "family": found.family.name, "task": found.task.value,
                    "precision": precision, "max_abs_diff": v.max_abs_diff,
                    "tolerance": v.tolerance, "top1_agreement": v.top1_agreement,
                    "cosine_min": v.cosine_min,
                    "fused": ", ".join(f"{op} {n}" for op, n in manifest.fused_ops.items()),
                })
                print(name, precision, v.max_abs_diff, v.top1_agreement, flush=True)
    return rows


def _agreement(row: dict) -> str:
    if row["top1_agreement"] is not None:
        return f"{row['top1_agreement']:.3f}"
    return f"cos {row['cosine_min']:.4f}" if row["cosine_min"] is not None else "-"


def main() -> None:
    rows = measure()
    info = hardware()
    lines = ["# Support matrix: each family's fixture exported and validated\n",
             f"CPU: {info['cpu']} ({', '.join(info['simd'])}); versions {info['versions']}\n",
             "Command: `python benchmarks/support_matrix.py`\n",
             "| fixture | family | task | precision | max abs diff | top-1 agreement | "
             "fused operators |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['fixture']} | {r['family']} | {r['task']} | {r['precision']} | "
                     f"{r['max_abs_diff']:.2e} | {_agreement(r)} | {r['fused']} |")
    markdown = "\n".join(lines) + "\n"
    write_results(HERE / "results" / f"support_matrix-{machine_tag(info)}",
                  {"hardware": info, "rows": rows}, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
