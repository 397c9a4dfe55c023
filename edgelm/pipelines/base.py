"""`Pipeline(folder)`: reads the manifest and becomes the pipeline for its task."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from tokenizers import Encoding, Tokenizer

from edgelm.errors import ConfigError, ModelFolderError
from edgelm.folder import ModelFolder
from edgelm.graph_check import check_graph
from edgelm.hash_memo import remembered_count
from edgelm.limits import LIMITS
from edgelm.manifest import Manifest, read_manifest
from edgelm.onnx_wire import GraphFacts
from edgelm.session import check_threads, create_session, resolve_device, running
from edgelm.tokenizer import (
    TOKENIZER_FILE,
    EncodedBatch,
    Text,
    TextTokenizer,
    id_bound,
    load_tokenizer,
)
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

    The folder is untrusted: its files must be listed in the manifest with their
    sha256, stay inside it and under their size caps, and the manifest must match the
    graph (edgelm/folder.py, edgelm/graph_check.py). `trust_folder=True` relaxes the
    file checks only (listing, sha256, size caps, confinement) and logs a warning.
    `packed_cache=True` keeps onnxruntime's packed weights on disk so that later loads
    map them (edgelm/packed_cache.py); None, the default, turns it on for folders
    exported for a board or phone.
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
        trust_folder: bool = False,
        packed_cache: bool | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) \
                or not 1 <= batch_size <= LIMITS.batch_size:
            raise ConfigError(f"batch_size={batch_size!r} must be an integer from 1 to "
                              f"{LIMITS.batch_size}")
        check_threads(threads)
        self.folder = Path(folder)
        self.files = ModelFolder(self.folder, trust_folder=trust_folder)
        self.manifest: Manifest = self.files.manifest
        if self.manifest.task is not self.task:
            raise ConfigError(
                f"{self.folder} holds a {self.manifest.task.value} model, "
                f"not {self.task.value}; use edgelm.Pipeline(folder)"
            )
        self.device = resolve_device(device)
        model_path, self._facts = self.files.graph(self.manifest.model_file)
        self._packed = self._packed_identity(packed_cache)
        self.session = create_session(model_path, device=self.device, threads=threads,
                                      **self._packed_load(model_path, self._facts))
        self._threads = threads
        self.batch_size = batch_size
        self._input_names = [i.name for i in self.session.get_inputs()]

    def _packed_identity(self, wanted: bool | None) -> str | None:
        """The folder's identity when its loads go through the packed-weights cache: asked
        for, or (None) the export's target is a board or phone."""
        if wanted is not None and not isinstance(wanted, bool):
            raise ConfigError(f"packed_cache={wanted!r} must be True, False or None")
        if wanted is None:
            wanted = self.manifest.target.is_edge()
        return self.files.identity() if wanted else None

    def _packed_load(self, graph: Path, facts: GraphFacts) -> dict[str, Any]:
        """create_session's packed-cache arguments for one of the folder's graphs."""
        if self._packed is None:
            return {}
        data = {graph.parent / ref.location for ref in facts.external if ref.location}
        size = sum(path.stat().st_size for path in {graph, *data})
        return {"packed_identity": f"{self._packed}:{graph.name}", "model_bytes": size}

    def _load_tokenizer(self) -> Tokenizer:
        """The folder's tokenizer, once the manifest is checked against it and the graph."""
        tokenizer = load_tokenizer(self.files)  # checked against its sha256 as it is read
        digest = None if self.files.trusted else self.manifest.files.get(TOKENIZER_FILE)
        vocab = (remembered_count("id-bound", digest, lambda: id_bound(tokenizer))
                 if digest else id_bound(tokenizer))
        check_graph(self.manifest, self.session, self._facts, vocab=vocab,
                    label=str(self.folder))
        return tokenizer

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
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
            self.files,
            max_length=self.manifest.max_length,
            pad_token_id=self.manifest.pad_token_id,
            tokenizer=self._load_tokenizer(),
        )

    def _feed(self, batch: EncodedBatch) -> dict[str, np.ndarray]:
        """Feed only the inputs the graph declares."""
        available = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids,
        }
        return {name: available[name] for name in self._input_names}

    def _check_output(self, output: np.ndarray, batch: EncodedBatch) -> None:
        """The head's shape, on each call: the graph may leave its dimensions symbolic."""
        rows, width = batch.input_ids.shape
        labels = len(self.manifest.labels)
        want = {Task.TEXT_CLASSIFICATION: (rows, labels),
                Task.TOKEN_CLASSIFICATION: (rows, width, labels),
                Task.QUESTION_ANSWERING: (rows, width, labels)}.get(self.task)
        fine = output.shape == want if want else output.ndim == 2 and output.shape[0] == rows
        if not fine:
            raise ModelFolderError(
                f"{self.folder}: the graph's {self.manifest.outputs[0]!r} has shape "
                f"{list(output.shape)} for {rows} texts of {width} tokens; the manifest "
                f"expects {list(want) if want else [rows, 'dim']} (labels: {labels}); "
                "export the model again")

    def _forward(self, batch: EncodedBatch) -> np.ndarray:
        """The graph's first output for one padded batch, its shape checked."""
        with running(self.folder / self.manifest.model_file):
            (output,) = self.session.run([self.manifest.outputs[0]], self._feed(batch))
        self._check_output(output, batch)
        return output

    def _run(self, texts: Sequence[Text], *, strategy: str = "longest_first"
             ) -> list[TextOutput]:
        """The graph's first output for each text (or pair), in input order.

        Texts are grouped by length so that batches carry little padding; pairs are
        truncated as transformers' `strategy`.
        """
        def length(i: int) -> int:
            text = texts[i]
            return len(text) if isinstance(text, str) else len(text[0]) + len(text[1])

        order = sorted(range(len(texts)), key=length)
        results: list[TextOutput | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = self.tokenizer.encode_batch([texts[i] for i in chunk], strategy=strategy)
            output = self._forward(batch)
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
