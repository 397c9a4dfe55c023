"""A small harness: each engine in its own process, alternating, medians.

In one process PyTorch's OpenMP threads keep spinning after a call and skew
the next engine's figures, so every engine runs in a worker process of its own.

run_alternating starts a fresh worker per engine and round. run_interleaved
keeps one loaded worker per engine and asks each in turn for a short burst of
calls, with a pause between bursts for spinning threads to settle: engines are
compared a second apart instead of minutes apart, which matters on a shared
machine whose speed drifts by 20% over minutes.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelm.bench.interleave import Worker
from edgelm.bench.measure import timed
from edgelm.bench.system import hardware, peak_rss_mb

__all__ = ["Engine", "Interleaved", "Result", "hardware", "machine_tag", "paired_ratio",
           "peak_rss_mb", "run_alternating", "run_interleaved", "serve", "timed", "versus",
           "versus_lines", "write_results"]


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
    env = _env()
    for r in range(rounds):
        for engine in engines:
            done = subprocess.run(engine.command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise RuntimeError(f"{engine.name} failed:\n{done.stderr[-2000:]}")
            results[engine.name].rounds.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}/{rounds} {engine.name}: {results[engine.name].rounds[-1]}",
                  file=sys.stderr)
    return results


@dataclass(kw_only=True)
class Interleaved:
    """Per engine: every call's ms, grouped by burst; what the worker reported at its end."""

    name: str
    bursts: list[list[float]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)

    @property
    def ms(self) -> float:
        return statistics.median(t for burst in self.bursts for t in burst)

    @property
    def fastest_decile_ms(self) -> float:
        """The 10th-percentile call time (where the fastest 10% of calls end): what the
        engine does when the machine lets it. Noise from other tenants only adds time,
        and added time pulls ratios toward 1.
        """
        calls = [t for burst in self.bursts for t in burst]
        return statistics.quantiles(calls, n=10, method="inclusive")[0]

    def burst_medians(self) -> list[float]:
        return [statistics.median(burst) for burst in self.bursts]


def paired_ratio(slower: Interleaved, faster: Interleaved) -> float:
    """Median over bursts of slower/faster, each pair measured seconds apart."""
    return statistics.median(
        a / b for a, b in zip(slower.burst_medians(), faster.burst_medians()))


def versus(theirs: Interleaved, ours: Interleaved) -> dict[str, float]:
    """How much faster `ours` is: paired per-burst ratio, and fastest-decile ratio."""
    return {"paired_bursts": paired_ratio(theirs, ours),
            "fastest_decile": theirs.fastest_decile_ms / ours.fastest_decile_ms}


def versus_lines(results: dict[str, Interleaved], pairs: list[tuple[str, str]]
                 ) -> tuple[list[str], dict[str, dict[str, float]]]:
    """A markdown line and the ratios for each (ours, theirs) pair that both ran."""
    lines, ratios = [], {}
    for ours, theirs in pairs:
        if ours in results and theirs in results:
            ratio = ratios[f"{ours} vs {theirs}"] = versus(results[theirs], results[ours])
            lines.append(f"\n{ours} vs {theirs}: **{ratio['paired_bursts']:.2f}x** (paired "
                         f"bursts), {ratio['fastest_decile']:.2f}x (fastest 10%)")
    return lines, ratios


def _env() -> dict[str, str]:
    # Workers run by another environment's Python (CTranslate2's) still import edgelm.bench.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def run_interleaved(engines: list[Engine], *, bursts: int, calls: int, pause_s: float = 0.5
                    ) -> dict[str, Interleaved]:
    """Each engine.command + ['--serve'] loads once, then serves `bursts` bursts of `calls`.

    The protocol is edgelm bench's (edgelm.bench.measure), on one grid point: the worker
    says {"loaded": true}; {"calls": N} gets one untimed call and N timed ones, answered
    as {"ms": [...]}; {"finish": true} gets its end figures (peak RSS, load time).
    The order of engines rotates from burst to burst.
    """
    results = {e.name: Interleaved(name=e.name) for e in engines}
    workers: dict[str, Worker] = {}
    try:
        for engine in engines:
            workers[engine.name] = Worker([*engine.command, "--serve"], env=_env())
            workers[engine.name].ask(None)
        for b in range(bursts):
            for engine in engines[b % len(engines):] + engines[:b % len(engines)]:
                burst = workers[engine.name].ask({"calls": calls})
                results[engine.name].bursts.append(burst["ms"])
                time.sleep(pause_s)
            print(f"burst {b + 1}/{bursts}: " + ", ".join(
                f"{n} {r.bursts[-1][len(r.bursts[-1]) // 2]:.1f}" for n, r in results.items()),
                file=sys.stderr)
        for name, worker in workers.items():  # each measures its end figures in turn
            results[name].final = worker.ask({"finish": True})
    finally:
        for worker in workers.values():
            worker.close()
    return results


def serve(call: Callable[[], Any], finish: Callable[[], dict[str, Any]],
          settle: Callable[[], Any] | None = None) -> None:
    """The worker's half of run_interleaved: bursts of timed calls on request, then `finish()`.

    Before each burst one untimed call (`settle`, else `call`): the other engines ran since.
    """
    print(json.dumps({"loaded": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("finish"):
            break
        (settle or call)()
        print(json.dumps({"ms": timed(call, int(request["calls"]), warmup=0)}), flush=True)
    print(json.dumps(finish()), flush=True)


def machine_tag(info: dict[str, Any]) -> str:
    """'amd-avx2', 'intel-amx', 'amd-zen5', ...: int8 results differ by the CPU's best int8
    path, so results files that depend on it carry this in their name. AMD's Zen 5 has a
    tag of its own: its flags nearly match Zen 4's ('amd-vnni') but its AVX-512 units are
    twice as wide."""
    if "Zen 5" in info["cpu"]:
        return "amd-zen5"
    vendor = "amd" if "AMD" in info["cpu"] else "intel" if "Intel" in info["cpu"] else "cpu"
    simd = set(info["simd"])
    level = next((name for flag, name in (("amx_int8", "amx"), ("avx512_vnni", "vnni"),
                                          ("avx_vnni", "vnni"), ("avx2", "avx2"),
                                          ("asimddp", "arm-dot"), ("asimd", "neon"))
                  if flag in simd), "plain")
    return f"{vendor}-{level}"


def write_results(path: Path, payload: dict[str, Any], markdown: str) -> None:
    """path.json and path.md (a .json or .md ending of `path` is dropped first; any other
    dot belongs to the name, as in qwen2.5-0.5b)."""
    stem = str(path.with_suffix("") if path.suffix in (".json", ".md") else path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    Path(f"{stem}.md").write_text(markdown)


def edgelm_serve_command(models: dict[str, Path], *, port: int | str, threads: int,
                         max_batch: int, max_context: int) -> list[str]:
    """`edgelm serve` of `models` (name -> folder) in this Python, for the serve benchmarks."""
    names = [part for name in models for part in ("--name", name)]
    return [sys.executable, "-m", "edgelm", "serve", *map(str, models.values()), *names,
            "--port", str(port), "--threads", str(threads), "--max-batch", str(max_batch),
            "--max-context", str(max_context)]
