"""The served models: each folder loaded once, named, with its batching worker."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from edgelm.errors import ConfigError
from edgelm.pipelines import Pipeline
from edgelm.serve.batcher import Batcher
from edgelm.serve.errors import ApiError
from edgelm.serve.metrics import Metrics
from edgelm.serve.options import NAME, ServeOptions
from edgelm.serve.scheduler import Scheduler
from edgelm.types import Task

log = logging.getLogger(__name__)
# Cache positions per row unless --max-context says otherwise: every row holds this many
# (SmolLM2-135M: 94 MB a row at 2048), and joins and drops copy the running cache.
DEFAULT_CONTEXT = 2048


@dataclass
class ServedModel:
    name: str
    pipe: Any
    task: Task
    worker: Scheduler | Batcher
    capacity: int = 0  # generation: cache positions per row

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()


def model_names(folders: Sequence[str | Path], names: Sequence[str]) -> list[str]:
    """--name once per folder, in order; the rest are their folder names."""
    if len(names) > len(folders):
        raise ConfigError(f"{len(names)} --name values for {len(folders)} folders; give at "
                          "most one per folder")
    chosen = list(names) + [Path(f).resolve().name for f in folders[len(names):]]
    for name in chosen:
        if not NAME.fullmatch(name) or ".." in name:
            raise ConfigError(f"model name {name!r} must be letters, digits or ._:/-; "
                              "pass --name")
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"model names {chosen} must be distinct; pass --name per folder")
    return chosen


def load_models(folders: Sequence[str | Path], options: ServeOptions, metrics: Metrics
                ) -> dict[str, ServedModel]:
    if not folders:
        raise ConfigError("pass at least one exported folder to serve")
    models = {}
    for folder, name in zip(folders, model_names(folders, options.names)):
        pipe = Pipeline(folder, device="cpu", threads=options.threads,
                        trust_folder=options.trust_folder, packed_cache=options.packed_cache)
        models[name] = _serve(name, pipe, options, metrics)
        log.info("serving %s as %r (%s)", folder, name, pipe.task.value)
    return models


def _serve(name: str, pipe: Any, options: ServeOptions, metrics: Metrics) -> ServedModel:
    task = pipe.task
    if task in (Task.QUESTION_ANSWERING, Task.TEXT2TEXT_GENERATION):
        raise ConfigError(f"{name} is a {task.value} model, which edgelm serve does "
                          "not serve yet; run it with edgelm.Pipeline")
    if task is Task.TEXT_GENERATION:
        capacity = min(pipe.info.max_positions, options.max_context or DEFAULT_CONTEXT)
        pipe.runner.check_memory(options.max_batch, capacity)
        scheduler = Scheduler(pipe.runner, name=name, capacity=capacity,
                              max_rows=options.max_batch, max_queue=options.max_queue,
                              pad_id=pipe.pad_id, metrics=metrics)
        return ServedModel(name, pipe, task, scheduler, capacity)
    batcher = Batcher(_encoder_call(pipe), name=name, max_batch=options.max_batch,
                      window_s=options.batch_window_ms / 1000, max_queue=options.max_queue,
                      metrics=metrics)
    return ServedModel(name, pipe, task, batcher)


def _encoder_call(pipe: Any) -> Any:
    """texts -> one result per text: (embedding row, token count), ranked labels, or
    entities."""
    if pipe.task is Task.TEXT_CLASSIFICATION:
        labels = len(pipe.manifest.labels)
        return lambda texts, _key: pipe(texts, top_k=labels) if labels > 1 \
            else [[r] for r in pipe(texts)]
    if pipe.task is Task.TOKEN_CLASSIFICATION:
        return lambda texts, _key: list(pipe(texts))

    def embed(texts: list[str], _key: Any) -> list[tuple[Any, int]]:
        vectors, counts = pipe.embed_counted(texts)
        return list(zip(vectors, counts))  # (vector, tokens) per text

    return embed


def find(models: dict[str, ServedModel], name: str | None, tasks: tuple[Task, ...],
         endpoint: str) -> ServedModel:
    """The model `name` (or the only one of these tasks), or a 404 / 400."""
    if name is None:
        fitting = [m for m in models.values() if m.task in tasks]
        if len(fitting) != 1:
            raise ApiError(400, f"model is required: {endpoint} serves "
                           f"{', '.join(m.name for m in fitting) or 'no model here'}",
                           param="model")
        return fitting[0]
    model = models.get(name)
    if model is None:
        raise ApiError(404, f"model {name[:128]!r} does not exist; served: "
                       f"{', '.join(models)}", param="model", code="model_not_found")
    if model.task not in tasks:
        raise ApiError(400, f"model {name!r} is a {model.task.value} model; {endpoint} takes "
                       f"{' or '.join(t.value for t in tasks)} models", param="model")
    return model
