"""A small harness: each engine in its own process, alternating rounds, medians.

In one process PyTorch's OpenMP threads keep spinning after a call and skew
the next engine's figures, so every measurement is a fresh worker process.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


def run_alternating(engines: list[Engine], rounds: int) -> dict[str, Result]:
    results = {e.name: Result(name=e.name) for e in engines}
    for r in range(rounds):
        for engine in engines:
            done = subprocess.run(engine.command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{engine.name} failed:\n{done.stderr[-2000:]}")
            results[engine.name].rounds.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}/{rounds} {engine.name}: {results[engine.name].rounds[-1]}",
                  file=sys.stderr)
    return results


def peak_rss_mb() -> float:
    """This process's high-water resident memory (VmHWM; ru_maxrss survives exec)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hardware() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    flags: set[str] = set()
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
            if f in flags]
    versions = {}
    for package in ("onnxruntime", "onnxruntime-gpu", "torch", "transformers", "edgelm"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = None
    return {"cpu": cpu, "simd": simd, "cores": os.cpu_count(), "python": platform.python_version(),
            "machine": platform.machine(), "gpu": gpu(), "versions": versions}


def gpu() -> str | None:
    """The NVIDIA GPU's name, driver and memory, when nvidia-smi is there."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


def write_results(path: Path, payload: dict[str, Any], markdown: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown)
