"""A real `edgelm serve` process for tests: started, waited for, stopped."""

from __future__ import annotations

import contextlib
import subprocess
import time
from typing import Iterator, Sequence

import httpx


@contextlib.contextmanager
def server_process(command: Sequence[str], port: int, *, env: dict[str, str] | None = None,
                   cwd: str | None = None, start_timeout: float = 120.0) -> Iterator[str]:
    """Run `command` (a server listening on 127.0.0.1:port), yield its base URL once
    /health answers, and stop it at the end (SIGTERM, then SIGKILL). A server that exits or
    never answers fails the test with what it printed."""
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, up = time.monotonic() + start_timeout, False
        while time.monotonic() < deadline and process.poll() is None and not up:
            try:
                up = httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                time.sleep(0.2)
        if not up:
            process.kill()
            printed = process.communicate(timeout=10)[0].decode(errors="replace")
            raise AssertionError(f"the server did not answer /health:\n{printed[-3000:]}")
        yield url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
