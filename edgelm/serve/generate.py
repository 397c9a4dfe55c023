"""The generation endpoints' core: submit a request's jobs, then collect or stream them."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from edgelm.generation.config import GenerationConfig
from edgelm.serve import responses as shapes
from edgelm.serve.errors import ApiError, error_body
from edgelm.serve.job import End, Event, Failed, Job, Piece
from edgelm.serve.metrics import Metrics
from edgelm.serve.models import ServedModel
from edgelm.serve.prompts import completion_text
from edgelm.serve.schema import Sampling

DISCONNECT_POLL = 1.0  # seconds between checks that a waiting client is still there


class Generation:
    """One request: jobs for its prompts (n rows each), their events on one queue."""

    def __init__(self, model: ServedModel, prompts: list[list[int]], config: GenerationConfig,
                 *, chat: bool, metrics: Metrics) -> None:
        self.model, self.prompts, self.config, self.chat = model, prompts, config, chat
        self.metrics, self.started = metrics, time.perf_counter()
        self.n = config.num_return_sequences
        self.choices = [shapes.Choice() for _ in range(len(prompts) * self.n)]
        self.events: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
        loop, pipe = asyncio.get_running_loop(), model.pipe
        self.jobs = [Job(ids, config, self._emitter(loop, k), tokenizer=pipe.tokenizer,
                         eos_ids=pipe.eos_ids, pad_id=pipe.pad_id)
                     for k, ids in enumerate(prompts)]
        self.first_token = False

    def _emitter(self, loop: asyncio.AbstractEventLoop, k: int) -> Any:
        def emit(event: Event) -> None:  # called on the scheduler's thread
            try:
                loop.call_soon_threadsafe(self.events.put_nowait, (k, event))
            except RuntimeError:  # the event loop is gone: nobody is listening
                self.jobs[k].cancelled.set()
        return emit

    def submit(self) -> None:
        try:
            for job in self.jobs:
                self.model.worker.submit(job)  # type: ignore[arg-type]
        except BaseException:
            self.cancel()
            raise
        self.metrics.tokens.labels(self.model.name, "prompt").inc(sum(map(len, self.prompts)))

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancelled.set()

    def usage(self) -> dict[str, int]:
        return shapes.usage(sum(map(len, self.prompts)), sum(len(c.tokens) for c in self.choices))

    async def next(self) -> tuple[int, Event]:
        """The next event, as (choice index, event); Failed raises a 500."""
        k, event = await self.events.get()
        if isinstance(event, Failed):
            raise ApiError(500, f"generation failed: {event.message}", type="server_error")
        index = k * self.n + event.index
        if isinstance(event, Piece):
            self.choices[index].text += event.text
            if not self.first_token:
                self.first_token = True
                self.metrics.first_token.labels(self.model.name).observe(
                    time.perf_counter() - self.started)
        elif isinstance(event, End):
            self.choices[index].reason, self.choices[index].tokens = event.reason, event.tokens
            self.metrics.tokens.labels(self.model.name, "completion").inc(len(event.tokens))
        return index, event

    def ended(self) -> bool:
        return all(c.reason is not None for c in self.choices)


async def respond(request: Request, generation: Generation, sampling: Sampling) -> Response:
    generation.submit()
    rid = shapes.new_id("chatcmpl" if generation.chat else "cmpl")
    if sampling.stream:
        return StreamingResponse(_stream(generation, rid, sampling.include_usage),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    waiting: asyncio.Task[Any] | None = None  # the next event, kept across polls
    try:
        while not generation.ended():
            if waiting is None:
                waiting = asyncio.ensure_future(generation.next())
            done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL)
            if done:
                task, waiting = waiting, None
                task.result()  # raises a Failed event's ApiError
            elif await request.is_disconnected():
                return Response(status_code=499)
    finally:
        if waiting is not None:
            waiting.cancel()
        generation.cancel()  # a no-op for finished jobs; frees the rows of abandoned ones
    model, choices = generation.model, generation.choices
    if generation.chat:
        return JSONResponse(shapes.chat_completion(rid, model.name, choices, generation.usage()))
    for index, choice in enumerate(choices):  # the pipeline's text for these tokens
        prompt = generation.prompts[index // generation.n]
        choice.text = completion_text(model.pipe, prompt, choice.tokens, generation.config.stop)
    return JSONResponse(shapes.completion(rid, model.name, choices, generation.usage()))


async def _stream(generation: Generation, rid: str, include_usage: bool
                  ) -> AsyncIterator[bytes]:
    name, chat = generation.model.name, generation.chat
    try:
        if chat:
            for index in range(len(generation.choices)):
                yield shapes.sse(shapes.chunk(rid, name, chat, index, role=True))
        while not generation.ended():
            try:
                index, event = await generation.next()
            except ApiError as e:
                yield shapes.sse(json.dumps(error_body(e)))
                return
            if isinstance(event, Piece):
                yield shapes.sse(shapes.chunk(rid, name, chat, index, text=event.text))
            elif isinstance(event, End):
                yield shapes.sse(shapes.chunk(rid, name, chat, index, reason=event.reason))
        if include_usage:
            yield shapes.sse(shapes.usage_chunk(rid, name, chat, generation.usage()))
        yield shapes.sse("[DONE]")
    finally:  # also when the client disconnects: the scheduler drops the rows next step
        generation.cancel()
