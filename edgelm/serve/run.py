"""Run the app under uvicorn: in the foreground (`edgelm serve`) or in a thread."""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Sequence

import uvicorn

from edgelm.errors import ConfigError
from edgelm.serve.app import create_app
from edgelm.serve.options import ServeOptions

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(folders: Sequence[str | Path], options: ServeOptions, *, log_level: str = "info"
          ) -> None:
    """Load the folders, then serve until interrupted (Ctrl-C stops it cleanly)."""
    warn_if_open(options)
    app = create_app(folders, options)
    uvicorn.run(app, host=options.host, port=options.port, log_level=log_level,
                timeout_graceful_shutdown=5)


def warn_if_open(options: ServeOptions) -> None:
    if options.host not in LOOPBACK and options.api_key is None:
        log.warning("serving on %s without --api-key: anyone who can reach it can use it",
                    options.host)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (tests, benchmarks)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def in_thread(app: Any, *, host: str = "127.0.0.1", port: int | None = None,
              timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` from a background thread (a free port by default); yields its base URL
    and stops the server when the block ends."""
    port = free_port(host) if port is None else port
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name="edgelm-serve-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            thread.join(timeout)
            raise ConfigError(f"the server did not start on {host}:{port} within {timeout} s")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


@contextlib.contextmanager
def spawned(command: Sequence[str], port: int, *, health: str = "/health",
            env: dict[str, str] | None = None, cwd: str | Path | None = None,
            start_timeout: float = 120.0) -> Iterator[str]:
    """Run `command`, a server that will listen on 127.0.0.1:port (tests, benchmarks); yield
    its base URL once GET `health` answers 200, and stop it when the block ends (SIGTERM,
    then SIGKILL). A server that exits or never answers raises with what it printed.

    Its output goes to a temporary file, not a pipe: nobody reads a pipe while the server
    runs, and a full one (64 KiB of access log) blocks the server's next log line."""
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as printed:
        process = subprocess.Popen(list(command), stdout=printed, stderr=subprocess.STDOUT,
                                   env=env, cwd=cwd)
        try:
            deadline, up = time.monotonic() + start_timeout, False
            while time.monotonic() < deadline and process.poll() is None and not up:
                try:
                    with urllib.request.urlopen(url + health, timeout=2) as reply:
                        up = reply.status == 200
                except OSError:  # refused, reset, timed out, or an HTTP error status
                    time.sleep(0.2)
            if not up:
                process.kill()
                process.wait(10)
                printed.seek(0)
                tail = printed.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"{command[0]} did not answer {health} on port {port}:\n"
                                   f"{tail}")
            yield url
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
