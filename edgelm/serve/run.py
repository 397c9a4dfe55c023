"""Run the app under uvicorn: in the foreground (`edgelm serve`) or in a thread."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
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
