"""The orchestrator's half of `edgelm bench`: workers that stay up and take turns.

Every variant gets one worker process (edgelm.bench.worker for ONNX folders,
edgelm.export.bench_baseline for PyTorch), loaded once, one after another. Then,
round after round, each grid point is measured by every worker in a burst of
`runs` calls, the order of workers rotating from round to round and a pause after
each burst for spinning threads (PyTorch's OpenMP pool) to settle. Engines are thus
compared seconds apart, and drift on a shared machine hits them alike. The protocol
is described in edgelm.bench.measure.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from edgelm.errors import EdgeLMError, first_line

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
Burst = dict[str, list[float]]  # {"ms": [...]} and, for decoders, {"ttft_ms": [...]}


@dataclass(kw_only=True)
class Measured:
    """What one variant's worker reported: bursts per grid point, load and end figures."""

    bursts: list[list[Burst]]  # [point][burst]
    load_s: float | None = None
    final: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Worker:
    """One variant's process, spoken to one JSON line at a time."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self._stderr: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")
        try:  # its own session: Ctrl-C reaches only the orchestrator, which stops the worker
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=self._stderr,
                                          text=True, start_new_session=True, env=env)
        except OSError as e:
            self._stderr.close()
            raise EdgeLMError(f"cannot start the worker {command[0]} ({e})") from e

    def ask(self, request: dict[str, Any] | None) -> dict[str, Any]:
        """Send `request` (None: just read the next reply) and return the reply."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            if request is not None:
                self._proc.stdin.write(json.dumps(request) + "\n")
                self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise EdgeLMError(self._death())
        try:
            return dict(json.loads(line))
        except ValueError as e:
            raise EdgeLMError(f"the worker printed {line[:200]!r} ({e})") from e

    def _death(self) -> str:
        code = self._proc.wait()
        if code < 0:  # the out-of-memory killer, say
            return f"the worker was killed by signal {-code}"
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().splitlines() if line.strip()]
        return lines[-1] if lines else f"the worker stopped (exit code {code})"

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()  # reaps it and closes its pipes
        self._stderr.close()


def interleave(commands: dict[str, list[str]], points: int, *, rounds: int, runs: int,
               pause_s: float, progress: Progress | None = None
               ) -> tuple[dict[str, Measured], bool]:
    """Measure every named worker command; returns what each measured and whether Ctrl-C
    cut the run short. A failing variant gets its error and is left out after."""
    measured = {name: Measured(bursts=[[] for _ in range(points)]) for name in commands}
    workers: dict[str, Worker] = {}
    total, done = rounds * points * len(commands), 0
    try:
        for name, command in commands.items():
            if progress:
                progress(f"loading {name}", 0, total)
            try:
                workers[name] = Worker(command)
            except EdgeLMError as e:
                measured[name].error = first_line(e, 300)
                continue
            loaded = _ask(name, workers, measured, None)
            if loaded is not None:
                measured[name].load_s = loaded["load_s"]
        names = list(commands)
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for point in range(points):
                for name in order:
                    done += 1
                    if name not in workers:
                        continue
                    if progress:
                        progress(f"round {r + 1}/{rounds}, point {point + 1}/{points}: {name}",
                                 done, total)
                    burst = _ask(name, workers, measured, {"point": point, "calls": runs})
                    if burst is not None:
                        measured[name].bursts[point].append(burst)
                    time.sleep(pause_s)
        for name in list(workers):
            if progress:
                progress(f"memory and quality: {name}", total, total)
            measured[name].final = _ask(name, workers, measured, {"finish": True}) or {}
    except KeyboardInterrupt:
        return measured, True
    finally:
        for worker in workers.values():
            worker.close()
    return measured, False


def _ask(name: str, workers: dict[str, Worker], measured: dict[str, Measured],
         request: dict[str, Any] | None) -> Any:
    """One exchange with a worker: its reply, or None when it died (its error is kept
    and the worker dropped)."""
    try:
        return workers[name].ask(request)
    except EdgeLMError as e:
        measured[name].error = first_line(e, 300)
        log.warning("%s failed: %s", name, measured[name].error)
        workers.pop(name).close()
        return None

