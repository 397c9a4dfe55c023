"""The same app on Ray Serve: N replicas, each loading the folders once, behind Ray's proxy.

    edgelm serve FOLDERS --ray --replicas N    (one machine, or the Ray cluster this
                                                machine belongs to: `ray start` first)

Each replica is a Ray actor that builds edgelm's ASGI app (create_app) from the folder
paths, so the folders must be at the same path on every node that may host a replica.
Ray's HTTP proxy listens on --host/--port and routes requests to replicas; streaming,
errors, the API key and the body limit are the app's own, as without Ray. /metrics is
per replica (the one that answers).

Needs the `ray` extra: pip install 'edgelm[ray]'.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any, Sequence

import ray
from ray import serve

from edgelm.errors import ConfigError
from edgelm.manifest import read_manifest
from edgelm.serve.options import ServeOptions
from edgelm.serve.run import warn_if_open

log = logging.getLogger(__name__)
APP_NAME = "edgelm"


def application(folders: Sequence[Path], options: ServeOptions, *, replicas: int) -> Any:
    """The Ray Serve application: `replicas` copies of edgelm's app over `folders`."""
    paths = [str(Path(f).resolve()) for f in folders]

    def build() -> Any:  # runs in each replica: load the folders there
        from edgelm.serve.app import create_app

        return create_app(paths, options)

    @serve.ingress(build)
    class EdgelmReplica:
        pass

    deployment = serve.deployment(
        name="edgelm", num_replicas=replicas,
        # a replica's onnxruntime sessions use --threads cores: reserve them in the cluster
        ray_actor_options={"num_cpus": options.threads or 1},
        # a generation request holds its HTTP stream for its whole decode
        max_ongoing_requests=max(options.max_queue, options.max_batch))(EdgelmReplica)
    return deployment.bind()


def check_folders(folders: Sequence[Path]) -> None:
    """Fail here, in one line, on a folder that is not an export (before starting Ray);
    each replica checks the files' hashes as it loads them."""
    for folder in folders:
        read_manifest(folder, verify=False)


def serve_on_ray(folders: Sequence[Path], options: ServeOptions, *, replicas: int,
                 address: str | None = None) -> None:
    """Deploy on Ray (the cluster at `address`, $RAY_ADDRESS, one already running on this
    machine, or a new local one) and block until interrupted; then tear the app down."""
    if replicas < 1:
        raise ConfigError(f"replicas={replicas} must be at least 1")
    check_folders(folders)
    warn_if_open(options)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no telemetry call home
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    stop = threading.Event()

    def interrupted(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        serve.start(http_options={"host": options.host, "port": options.port})
        try:
            serve.run(application(folders, options, replicas=replicas), name=APP_NAME,
                      route_prefix="/")
        except RuntimeError as e:  # a replica failed to build the app: its last line
            lines = [line for line in str(e).splitlines() if line.strip()]
            raise ConfigError(f"a Ray replica could not start: {lines[-1] if lines else e}"
                              ) from None
        log.warning("edgelm on Ray Serve: %d replica(s) at http://%s:%d", replicas,
                    options.host, options.port)
        stop.wait()
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
