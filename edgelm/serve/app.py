"""The ASGI app: OpenAI-shaped endpoints over the served models (Starlette).

`create_app(folders, options)` loads every folder once and returns the app; its
workers (one scheduler or batcher thread per model) start and stop with the app's
lifespan, so the app can be built, and tested, without a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgelm.generation.config import GenerationConfig
from edgelm.serve import responses as shapes
from edgelm.serve import schema
from edgelm.serve.errors import ApiError, as_api_error, error_body
from edgelm.serve.generate import Generation, respond
from edgelm.serve.metrics import Metrics
from edgelm.serve.models import ServedModel, find, load_models
from edgelm.serve.options import ServeOptions
from edgelm.serve.prompts import encode_prompt
from edgelm.types import Task

log = logging.getLogger(__name__)
Handler = Callable[[Request], Awaitable[Response]]
ENCODERS = (Task.TEXT_CLASSIFICATION, Task.TOKEN_CLASSIFICATION)


class Server:
    """The app's state: options, models and metrics."""

    def __init__(self, models: dict[str, ServedModel], options: ServeOptions,
                 metrics: Metrics) -> None:
        self.models, self.options, self.metrics = models, options, metrics
        self.created = int(time.time())

    # -- plumbing --------------------------------------------------------------------
    def endpoint(self, name: str, fn: Handler, *, public: bool = False) -> Handler:
        """Auth, OpenAI error objects for every failure, and the request metrics."""
        async def handler(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if not public:
                    self._check_key(request)
                response = await fn(request)
            except Exception as e:
                error = as_api_error(e)
                if error.status >= 500:
                    log.error("%s failed: %s", name, e, exc_info=e)
                response = JSONResponse(error_body(error), status_code=error.status)
            self.metrics.requests.labels(name, str(response.status_code)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)
            return response
        return handler

    def _check_key(self, request: Request) -> None:
        key = self.options.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            raise ApiError(401, "a valid API key is required: send 'Authorization: Bearer KEY'",
                           code="invalid_api_key")

    async def body(self, request: Request) -> dict[str, Any]:
        limit = self.options.max_body_bytes
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise ApiError(413, f"the body has {length} bytes; at most {limit} are accepted")
        data = bytearray()
        async for part in request.stream():
            data += part
            if len(data) > limit:
                raise ApiError(413, f"the body is over the {limit}-byte limit")
        return schema.parse_json(bytes(data))

    # -- generation ------------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        req = schema.chat_request(await self.body(request), max_n=self.options.max_batch)
        model = find(self.models, req.model, (Task.TEXT_GENERATION,), "/v1/chat/completions")
        text = await run_in_threadpool(model.pipe.template.render, req.messages)
        return await self._generate(request, model, [text], req.sampling, chat=True)

    async def completions(self, request: Request) -> Response:
        req = schema.completion_request(await self.body(request), max_n=self.options.max_batch)
        model = find(self.models, req.model, (Task.TEXT_GENERATION,), "/v1/completions")
        return await self._generate(request, model, req.prompts, req.sampling, chat=False)

    async def _generate(self, request: Request, model: ServedModel, texts: list[str],
                        sampling: schema.Sampling, *, chat: bool) -> Response:
        encoded = [await run_in_threadpool(
            encode_prompt, model.pipe, t, max_tokens=sampling.max_tokens,
            capacity=model.capacity, special_tokens=not chat) for t in texts]
        max_tokens = min(room for _, room in encoded)
        config = GenerationConfig.make(**sampling.options(max_tokens))
        generation = Generation(model, [ids for ids, _ in encoded], config, chat=chat,
                                metrics=self.metrics)
        return await respond(request, generation, sampling)

    # -- encoders --------------------------------------------------------------------
    async def embeddings(self, request: Request) -> Response:
        req = schema.embedding_request(await self.body(request))
        model = find(self.models, req.model, (Task.FEATURE_EXTRACTION,), "/v1/embeddings")
        counted = await asyncio.wrap_future(model.worker.submit(req.inputs))  # type: ignore
        vectors = [vector for vector, _ in counted]
        tokens = sum(count for _, count in counted)
        self.metrics.tokens.labels(model.name, "prompt").inc(tokens)
        return shapes.FloatsResponse(shapes.embeddings(model.name, vectors, req.base64, tokens))

    async def classify(self, request: Request) -> Response:
        req = schema.classify_request(await self.body(request))
        model = find(self.models, req.model, ENCODERS, "/v1/classify")
        results = await asyncio.wrap_future(model.worker.submit(req.inputs))  # type: ignore
        out = shapes.labels(results)
        return JSONResponse(out[0] if req.single else out)

    # -- the rest --------------------------------------------------------------------
    async def list_models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [self._card(m)
                                                        for m in self.models.values()]})

    async def get_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        return JSONResponse(self._card(find(self.models, name, tuple(Task), "/v1/models")))

    def _card(self, model: ServedModel) -> dict[str, Any]:
        return {"id": model.name, "object": "model", "created": self.created,
                "owned_by": "edgelm", "task": model.task.value}

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "models": list(self.models)})

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def build_app(models: dict[str, ServedModel], options: ServeOptions, metrics: Metrics
              ) -> Starlette:
    """The app over already loaded models (create_app loads them)."""
    server = Server(models, options, metrics)
    e = server.endpoint
    routes = [
        Route("/v1/chat/completions", e("chat", server.chat), methods=["POST"]),
        Route("/v1/completions", e("completions", server.completions), methods=["POST"]),
        Route("/v1/embeddings", e("embeddings", server.embeddings), methods=["POST"]),
        Route("/v1/classify", e("classify", server.classify), methods=["POST"]),
        Route("/v1/models", e("models", server.list_models), methods=["GET"]),
        Route("/v1/models/{name:path}", e("models", server.get_model), methods=["GET"]),
        Route("/health", e("health", server.health, public=True), methods=["GET"]),
        Route("/metrics", e("metrics", server.prometheus), methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for model in models.values():
            model.start()
        try:
            yield
        finally:
            for model in models.values():
                model.stop()

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "") or "error"
        error = ApiError(status, f"{request.method} {request.url.path[:200]}: {detail}",
                         code="not_found" if status == 404 else None)
        return JSONResponse(error_body(error), status_code=status)

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error})
    app.state.server = server
    return app


def create_app(folders: Sequence[str | Path], options: ServeOptions | None = None
               ) -> Starlette:
    """Load each folder once and return the ASGI app serving them."""
    options = options or ServeOptions()
    metrics = Metrics()
    return build_app(load_models(folders, options, metrics), options, metrics)
