"""Prometheus metrics of one server (its own registry, so apps in one process are apart)."""

from __future__ import annotations

import uuid

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Which server answered a scrape (replicas behind one address each have their own
        # metrics), and its process's memory and CPU (process_resident_memory_bytes, ...)
        self.server = Info("edgelm_server", "This server process", registry=r)
        self.server.info({"id": uuid.uuid4().hex[:12]})
        ProcessCollector(registry=r)
        self.requests = Counter("edgelm_requests", "HTTP requests answered",
                                ["endpoint", "status"], registry=r)
        self.tokens = Counter("edgelm_tokens", "Tokens read (prompt) and written (completion)",
                              ["model", "kind"], registry=r)
        self.queue = Gauge("edgelm_queue_depth", "Requests waiting for a batch", ["model"],
                           registry=r)
        self.running = Gauge("edgelm_running_rows", "Rows in a model's running batch",
                             ["model"], registry=r)
        self.batch = Histogram("edgelm_batch_size", "Rows per generation step or texts per "
                               "encoder run", ["model"], buckets=SIZES, registry=r)
        self.latency = Histogram("edgelm_request_seconds", "Request latency", ["endpoint"],
                                 buckets=LATENCY, registry=r)
        self.first_token = Histogram("edgelm_time_to_first_token_seconds",
                                     "From request to its first generated token", ["model"],
                                     buckets=LATENCY, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
