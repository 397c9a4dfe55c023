"""Cold start and memory of a torch-free process, and the aarch64 install footprint.

    python benchmarks/edge_startup.py [--rounds 7] [--arm64-root /tmp/edgelm-arm64]

Cold start: a fresh `python` that imports edgelm, loads the GPT-2 124M-shaped
int8 folder (2 threads), verifies its sha256s and generates the first token,
timed as a whole process from the parent; beside it a bare onnxruntime session
load of the same model.onnx (ANCHORS' 0.86 s). Alternating rounds, medians.
Peak resident memory (VmHWM) against the folder's model files.
Footprint: the aarch64 wheels scripts/arm64_emu.sh downloads for edgelm's
runtime (run `make test-edge` or that script's setup first).
Results: results/edge_startup.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from gpt2_decode import gpt2_checkpoint
from harness import hardware, write_results

from edgelm.bench.exports import cached_export

HERE = Path(__file__).resolve().parent
HWM = ("print(json.dumps({'peak_rss_mb': int([l for l in open('/proc/self/status') "
       "if l.startswith('VmHWM')][0].split()[1]) / 1024}))")
EDGELM = ("import json, sys, edgelm\n"
          "pipe = edgelm.Pipeline(sys.argv[1], threads=2)\n"
          "pipe(['The quick brown fox'], max_new_tokens=1)\n"
          "assert 'torch' not in sys.modules\n" + HWM)
BARE = ("import json, sys, onnxruntime as ort\n"
        "options = ort.SessionOptions(); options.intra_op_num_threads = 2\n"
        "ort.InferenceSession(sys.argv[1] + '/model.onnx', options)\n" + HWM)


def run(script: str, folder: Path) -> dict[str, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True,
                          text=True, check=True)
    return {"wall_s": time.perf_counter() - start, **json.loads(done.stdout.splitlines()[-1])}


def footprint(root: Path) -> dict[str, float] | None:
    wheels = sorted((root / "wheels").glob("*.whl"))
    if not wheels:
        return None
    sizes = {w.name.split("-")[0]: w.stat().st_size / 1e6 for w in wheels}
    installed = sum(p.stat().st_size for p in (root / "site").rglob("*") if p.is_file()) / 1e6
    return {"wheels_mb": sum(sizes.values()), "installed_mb": installed, "by_wheel_mb": sizes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--arm64-root", type=Path, default=Path("/tmp/edgelm-arm64"))
    args = parser.parse_args()
    folder = cached_export(gpt2_checkpoint(), "int8")
    model_mb = sum(p.stat().st_size for p in folder.glob("model.onnx*")) / 1e6
    results: dict[str, list[dict[str, float]]] = {"edgelm": [], "bare onnxruntime": []}
    for _ in range(args.rounds):
        results["edgelm"].append(run(EDGELM, folder))
        results["bare onnxruntime"].append(run(BARE, folder))
    median = {name: {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
              for name, rounds in results.items()}
    arm = footprint(args.arm64_root)
    payload = {"hardware": hardware(), "model_mb": model_mb, "rounds": results,
               "median": median, "arm64_footprint": arm}
    lines = [
        "# Cold start, memory and footprint\n",
        f"{payload['hardware']['cpu']}, 2 threads; GPT-2 124M shapes, int8 (MatMulNBits), "
        f"model files {model_mb:.1f} MB; {args.rounds} alternating rounds of fresh processes, "
        "medians (min in brackets).\n",
        "| process | wall s | peak RSS MB | RSS / model size |", "|---|---|---|---|",
    ]
    for name, m in median.items():
        fastest = min(r["wall_s"] for r in results[name])
        lines.append(f"| {name} | {m['wall_s']:.2f} ({fastest:.2f}) | {m['peak_rss_mb']:.0f} | "
                     f"{m['peak_rss_mb'] / model_mb:.2f}x |")
    lines.append("\nedgelm: import edgelm + Pipeline (sha256 of every file) + first generated "
                 "token; bare: import onnxruntime + InferenceSession only.\n")
    if arm:
        lines += ["## aarch64 runtime footprint (edgelm and its runtime dependencies)\n",
                  f"Wheels {arm['wheels_mb']:.1f} MB, installed {arm['installed_mb']:.1f} MB.\n",
                  "| wheel | MB |", "|---|---|",
                  *[f"| {n} | {mb:.1f} |" for n, mb in sorted(arm["by_wheel_mb"].items(),
                                                               key=lambda x: -x[1])]]
    write_results(HERE / "results" / "edge_startup.md", payload, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
