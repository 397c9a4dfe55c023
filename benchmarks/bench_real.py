"""`edgelm bench` on the real packaged models: the MiniLM sentiment classifier with its
held-out data, and SmolLM2-135M-Instruct.

    python benchmarks/bench_real.py [--models classifier,smollm2] [--threads 2]

Writes results/bench_{classifier,smollm2}-CPUKIND.{json,csv,png,txt} (CPUKIND as
harness.machine_tag: amd-avx2, intel-amx, ...): the command's own outputs, plus its
terminal table. The exact commands are printed and saved.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from harness import hardware, machine_tag

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def classifier_args(threads: int) -> list[str]:
    from edgelm.export.zoo import CACHE_DIR, sentiment_classifier_dir, sentiment_holdout

    data = Path(CACHE_DIR) / "sentiment-holdout.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                            for t, y in sentiment_holdout()), encoding="utf-8")
    return [str(sentiment_classifier_dir()), "--data", str(data), "--batch-sizes", "1,8",
            "--seq-lens", "16,128", "--rounds", "3", "--runs", "20", "--threads", str(threads)]


def smollm2_args(threads: int) -> list[str]:
    from edgelm.export.zoo import smollm2_dir

    return [str(smollm2_dir()), "--batch-sizes", "1,4", "--seq-lens", "16", "--new-tokens", "32",
            "--rounds", "3", "--runs", "4", "--threads", str(threads)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="classifier,smollm2")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    makers = {"classifier": classifier_args, "smollm2": smollm2_args}
    tag = machine_tag(hardware())
    for name in args.models.split(","):
        out = RESULTS / f"bench_{name}-{tag}"
        command = [sys.executable, "-m", "edgelm", "bench", *makers[name](args.threads),
                   "--json", f"{out}.json", "--csv", f"{out}.csv", "--plot", f"{out}.png"]
        shown = "edgelm " + shlex.join(command[3:])
        print(shown, flush=True)
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              env={**os.environ, "COLUMNS": "140"})
        sys.stderr.write(done.stderr[-3000:])
        if done.returncode != 0:
            raise SystemExit(f"{name}: edgelm bench failed")
        out.with_suffix(".txt").write_text(f"$ {shown}\n\n{done.stdout}", encoding="utf-8")
        print(done.stdout)


if __name__ == "__main__":
    main()
