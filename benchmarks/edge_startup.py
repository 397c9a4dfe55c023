"""Cold start and memory of a torch-free process, and the aarch64 install footprint.

    python benchmarks/edge_startup.py [--rounds 7] [--arm64-root /tmp/edgelm-arm64]

Each round starts fresh processes in turn, for the GPT-2 124M-shaped int8 folder and
SmolLM2-135M int4 (2 threads):
- edgelm: import edgelm, load the folder (sha256 checks, remembered per file), generate
  the first token; then 32 more tokens for the speed and the memory once running.
- edgelm, packed cache: the same with `packed_cache=True` (edgelm.packed_cache; the
  default for --target arm64/rpi4/rpi5/mobile exports), its entry written beforehand.
- bare onnxruntime: import onnxruntime and create the session, nothing else.
- once per model, edgelm with onnxruntime's prepacking off (session.disable_prepacking),
  the other way to keep one copy of the weights: its speed is why it is not used.
Cold start is the wall time from the parent's spawn to the first token (to the loaded
session for bare onnxruntime); medians over rounds. Peak resident memory (VmHWM) against
the model files (graph + external data).
Footprint: the aarch64 wheels scripts/arm64_emu.sh downloads for edgelm's runtime (run
`make test-edge` or that script's setup first).
Results: results/edge_startup-<cpu>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpt2_decode import gpt2_checkpoint
from harness import hardware, machine_tag, write_results

from edgelm.bench.exports import cached_export

HERE = Path(__file__).resolve().parent
NEW_TOKENS = 32
MEMORY = ("def memory():\n"
          "    fields = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
          "    return {k: int(fields[k].split()[0]) / 1024 for k in ('VmHWM', 'VmRSS')}\n")
EDGELM = ("import json, sys, time, os\n" + MEMORY +
          "import edgelm\n"
          "pipe = edgelm.Pipeline(sys.argv[1], threads=2, packed_cache=sys.argv[2] == 'packed')\n"
          "pipe(['The quick brown fox'], max_new_tokens=1)\n"
          "first = time.time(); at_first = memory()\n"
          "start = time.perf_counter()\n"
          f"pipe(['The quick brown fox'], max_new_tokens={NEW_TOKENS}, "
          f"min_new_tokens={NEW_TOKENS})\n"
          "seconds = time.perf_counter() - start\n"
          "assert 'torch' not in sys.modules\n"
          "print(json.dumps({'first_token_at': first, 'peak_rss_mb': memory()['VmHWM'], "
          "'rss_at_first_token_mb': at_first['VmRSS'], 'rss_running_mb': memory()['VmRSS'], "
          f"'tokens_per_s': {NEW_TOKENS} / seconds}}))\n")
NO_PREPACK = ("import onnxruntime as ort\n"
              "class Options(ort.SessionOptions):\n"
              "    def __init__(self):\n"
              "        super().__init__()\n"
              "        self.add_session_config_entry('session.disable_prepacking', '1')\n"
              "ort.SessionOptions = Options\n")
BARE = ("import json, sys, time\n" + MEMORY +
        "import onnxruntime as ort\n"
        "options = ort.SessionOptions(); options.intra_op_num_threads = 2\n"
        "ort.InferenceSession(sys.argv[1] + '/model.onnx', options)\n"
        "print(json.dumps({'first_token_at': time.time(), 'peak_rss_mb': memory()['VmHWM']}))\n")
SCRIPTS = {"edgelm": (EDGELM, "plain"), "edgelm, packed cache": (EDGELM, "packed"),
           "bare onnxruntime": (BARE, ""), "edgelm, prepacking off": (NO_PREPACK + EDGELM, "plain")}


def run(name: str, folder: Path, cache: Path) -> dict[str, float]:
    script, mode = SCRIPTS[name]
    env = {**os.environ, "EDGELM_CACHE": str(cache)}
    start = time.time()
    done = subprocess.run([sys.executable, "-c", script, str(folder), mode], env=env,
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.splitlines()[-1])
    result["cold_start_s"] = result.pop("first_token_at") - start
    return result


def measure(folder: Path, rounds: int, cache: Path) -> dict[str, list[dict[str, float]]]:
    run("edgelm, packed cache", folder, cache)  # writes the entry, and warms the file cache
    results: dict[str, list[dict[str, float]]] = {
        name: [] for name in ("edgelm", "edgelm, packed cache", "bare onnxruntime")}
    for _ in range(rounds):
        for name, rows in results.items():
            rows.append(run(name, folder, cache))
    results["edgelm, prepacking off"] = [run("edgelm, prepacking off", folder, cache)]
    return results


def footprint(root: Path) -> dict[str, float] | None:
    wheels = sorted((root / "wheels").glob("*.whl"))
    if not wheels:
        return None
    sizes = {w.name.split("-")[0]: w.stat().st_size / 1e6 for w in wheels}
    installed = sum(p.stat().st_size for p in (root / "site").rglob("*") if p.is_file()) / 1e6
    return {"wheels_mb": sum(sizes.values()), "installed_mb": installed, "by_wheel_mb": sizes}


def table(model: str, model_mb: float, results: dict[str, list[dict[str, float]]]) -> list[str]:
    lines = [f"### {model}: model files {model_mb:.1f} MB\n",
             "| process | cold start s (fastest) | peak RSS MB | peak / model | RSS running MB "
             "| tokens/s |", "|---|---|---|---|---|---|"]
    for name, rows in results.items():
        median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        fastest = min(r["cold_start_s"] for r in rows)
        running = f"{median['rss_running_mb']:.0f}" if "rss_running_mb" in median else "-"
        speed = f"{median['tokens_per_s']:.1f}" if "tokens_per_s" in median else "-"
        lines.append(f"| {name} | {median['cold_start_s']:.2f} ({fastest:.2f}) | "
                     f"{median['peak_rss_mb']:.0f} | {median['peak_rss_mb'] / model_mb:.2f}x | "
                     f"{running} | {speed} |")
    return lines + [""]


def main() -> None:
    from edgelm.export.zoo import smollm2_dir  # the packaged SmolLM2 weights

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--arm64-root", type=Path, default=Path("/tmp/edgelm-arm64"))
    args = parser.parse_args()
    info = hardware()
    models = {"GPT-2 124M shapes, int8": cached_export(gpt2_checkpoint(), "int8"),
              "SmolLM2-135M, int4": cached_export(smollm2_dir(), "int4")}
    payload: dict = {"hardware": info, "rounds": args.rounds, "new_tokens": NEW_TOKENS,
                     "models": {}}
    lines = ["# Cold start, memory and footprint\n",
             f"{info['cpu']} ({machine_tag(info)}), 2 threads; {args.rounds} alternating "
             "rounds of fresh processes, medians. Cold start: spawn to first token "
             "(import, load with sha256 checks remembered per file, first token); bare "
             "onnxruntime: spawn to a loaded session. Peak RSS: VmHWM after "
             f"{NEW_TOKENS} more tokens. The prepacking-off row is one run.\n"]
    with tempfile.TemporaryDirectory(prefix="edgelm-startup-") as cache:
        for model, folder in models.items():
            model_mb = sum(p.stat().st_size for p in folder.glob("model.onnx*")) / 1e6
            results = measure(folder, args.rounds, Path(cache))
            payload["models"][model] = {"folder": folder.name, "model_mb": model_mb,
                                        "rounds": results}
            lines += table(model, model_mb, results)
    arm = payload["arm64_footprint"] = footprint(args.arm64_root)
    if arm:
        lines += ["## aarch64 runtime footprint (edgelm and its runtime dependencies)\n",
                  f"Wheels {arm['wheels_mb']:.1f} MB, installed {arm['installed_mb']:.1f} MB.\n",
                  "| wheel | MB |", "|---|---|",
                  *[f"| {n} | {mb:.1f} |" for n, mb in sorted(arm["by_wheel_mb"].items(),
                                                               key=lambda x: -x[1])]]
    name = f"edge_startup-{machine_tag(info)}"
    write_results(HERE / "results" / name, payload, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
