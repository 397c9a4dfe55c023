"""A small harness: each engine in its own process, alternating rounds, medians.

In one process PyTorch's OpenMP threads keep spinning after a call and skew
the next engine's figures, so every measurement is a fresh worker process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelm.bench.system import hardware, peak_rss_mb

__all__ = ["Engine", "Result", "hardware", "peak_rss_mb", "run_alternating", "write_results"]


@dataclass(frozen=True, kw_only=True)
class Engine:
    name: str
    command: list[str]  # prints one JSON object as its last stdout line


@dataclass(kw_only=True)
class Result:
    name: str
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def median(self, key: str) -> float:
        return statistics.median(r[key] for r in self.rounds)


ROOT = Path(__file__).resolve().parent.parent


def run_alternating(engines: list[Engine], rounds: int) -> dict[str, Result]:
    results = {e.name: Result(name=e.name) for e in engines}
    # Workers run by another environment's Python (CTranslate2's) still import edgelm.bench.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    for r in range(rounds):
        for engine in engines:
            done = subprocess.run(engine.command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise RuntimeError(f"{engine.name} failed:\n{done.stderr[-2000:]}")
            results[engine.name].rounds.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}/{rounds} {engine.name}: {results[engine.name].rounds[-1]}",
                  file=sys.stderr)
    return results


def write_results(path: Path, payload: dict[str, Any], markdown: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown)
