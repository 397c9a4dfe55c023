"""`edgelm serve`: exported folders behind OpenAI-shaped HTTP endpoints.

    app.py        routes, auth, errors as OpenAI objects; create_app(folders, options)
    schema.py     request bodies checked into typed requests
    models.py     folders loaded once, named, each with its worker
    scheduler.py  continuous batching of a generation model (one thread)
    job.py        one request's rows inside the running batch
    slots.py      the running batch's cache: rows join and leave without copying it
    batcher.py    micro-batching of an encoder model (one thread)
    generate.py   the generation endpoints: collect or stream (server-sent events)
    responses.py  OpenAI's response and chunk shapes
    prompts.py    prompt text to ids, as the pipeline encodes it
    metrics.py    Prometheus metrics
    options.py    ServeOptions
    errors.py     ApiError and HTTP statuses
    run.py        uvicorn: serve() for the CLI, in_thread() for tests and benchmarks

Needs the `serve` extra: pip install 'edgelm[serve]'.
"""

from edgelm.serve.app import create_app
from edgelm.serve.options import ServeOptions

__all__ = ["create_app", "ServeOptions"]
