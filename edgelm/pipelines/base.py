"""`Pipeline(folder)`: reads the manifest and becomes the pipeline for its task."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tokenizers import Encoding

from edgelm.errors import ConfigError, ModelFolderError
from edgelm.manifest import Manifest, read_manifest
from edgelm.session import create_session, resolve_device
from edgelm.tokenizer import EncodedBatch, TextTokenizer
from edgelm.types import Device, Precision, Task

log = logging.getLogger(__name__)

_REGISTRY: dict[Task, type[Pipeline]] = {}


@dataclass(frozen=True)
class TextOutput:
    """One text's row of the graph's output, with its tokens."""

    output: np.ndarray
    encoding: Encoding
    truncated: bool


class Pipeline:
    """An exported folder, ready to run: `Pipeline(folder)(texts)`.

    Constructing `Pipeline` returns the subclass registered for the folder's
    task (TextClassificationPipeline, EmbeddingPipeline, ...).
    """

    task: ClassVar[Task]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "task" in cls.__dict__:
            _REGISTRY[cls.task] = cls

    def __new__(cls, folder: str | Path, **kwargs: Any) -> Pipeline:
        if cls is Pipeline:
            task = read_manifest(folder, verify=False).task
            if task not in _REGISTRY:
                raise ModelFolderError(
                    f"{folder} holds a {task.value} model, which this edgelm cannot run yet; "
                    f"it runs: {', '.join(sorted(t.value for t in _REGISTRY))}"
                )
            cls = _REGISTRY[task]
        return super().__new__(cls)

    def __init__(
        self,
        folder: str | Path,
        *,
        device: str | Device = "auto",
        threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be >= 1")
        self.folder = Path(folder)
        self.manifest: Manifest = read_manifest(self.folder)
        if self.manifest.task is not self.task:
            raise ConfigError(
                f"{self.folder} holds a {self.manifest.task.value} model, "
                f"not {self.task.value}; use edgelm.Pipeline(folder)"
            )
        self.device = resolve_device(device)
        self.session = create_session(
            self.folder / self.manifest.model_file, device=self.device, threads=threads
        )
        self.batch_size = batch_size
        self._input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, texts: Any, /) -> Any:
        """Run the pipeline; each task documents its own options and result."""
        raise NotImplementedError

    def __repr__(self) -> str:
        m = self.manifest
        return f"{type(self).__name__}({str(self.folder)!r}, {m.architecture}, {m.precision.value})"


class EncoderPipeline(Pipeline):
    """Shared by the encoder tasks: tokenize, batch by length, run the graph."""

    def __init__(self, folder: str | Path, **kwargs: Any) -> None:
        super().__init__(folder, **kwargs)
        if self.device is Device.CUDA and self.manifest.precision is Precision.INT8:
            log.warning("int8 encoders run slower than fp16 on CUDA (onnxruntime#10267: its "
                        "int8 operators have no fast CUDA kernels); export with --target cuda "
                        "for fp16")
        self.tokenizer = TextTokenizer(
            self.folder,
            max_length=self.manifest.max_length,
            pad_token_id=self.manifest.pad_token_id,
        )

    def _feed(self, batch: EncodedBatch) -> dict[str, np.ndarray]:
        """Feed only the inputs the graph declares."""
        available = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids,
        }
        return {name: available[name] for name in self._input_names}

    def _run(self, texts: list[str]) -> list[TextOutput]:
        """The graph's first output for each text, in input order.

        Texts are grouped by length so that batches carry little padding.
        """
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[TextOutput | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = self.tokenizer.encode_batch([texts[i] for i in chunk])
            (output,) = self.session.run([self.manifest.outputs[0]], self._feed(batch))
            for row, i in enumerate(chunk):
                results[i] = TextOutput(
                    output=output[row],
                    encoding=batch.encodings[row],
                    truncated=batch.truncated[row],
                )
        done = [r for r in results if r is not None]
        truncated = sum(r.truncated for r in done)
        if truncated:
            log.warning(
                "%d of %d texts were longer than %d tokens and were truncated",
                truncated, len(texts), self.manifest.max_length,
            )
        return done
