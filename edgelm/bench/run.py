"""`run_bench`: the variants, their workers taking turns, and what they measured.

Every variant runs in a worker process of its own (in one process PyTorch's
OpenMP threads keep spinning after a call and skew the next engine's figures),
loaded once and asked for short bursts in turn (edgelm.bench.interleave), so that
drift on a shared machine hits all variants alike. Timings are pooled over the
bursts; speed-ups are paired per burst and marked when the bursts disagree
(edgelm.bench.trust). Quality (accuracy, agreement, perplexity) is measured once,
at the end of each worker.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgelm._extras import load_export
from edgelm.bench.data import (
    SAMPLE_PARAGRAPH,
    generated_sentences,
    label_indices,
    load_labelled,
    read_text,
)
from edgelm.bench.exports import cached_export
from edgelm.bench.interleave import Measured, interleave
from edgelm.bench.spec import BenchOptions, Point, VariantResult, WorkerSpec
from edgelm.bench.system import hardware
from edgelm.bench.trust import compare as _compare
from edgelm.bench.trust import trust_notes
from edgelm.errors import ConfigError, EdgeLMError, MissingDependencyError
from edgelm.manifest import Manifest, read_manifest
from edgelm.tokenizer import load_tokenizer
from edgelm.types import Device, Task

log = logging.getLogger(__name__)

PYTORCH = "PyTorch"
WORKER_MODULES = {"pytorch": "edgelm.export.bench_baseline", "onnx": "edgelm.bench.worker"}
PERPLEXITY_WINDOW = 512  # tokens per forward pass when scoring --text
Progress = Callable[[str], None]
GENERIC_FOLDERS = {"model", "models", "checkpoint", "weights", "snapshot", "hf", "pytorch"}


@dataclass(kw_only=True)
class BenchReport:
    model: str  # the checkpoint folder
    name: str  # what tables and charts call it (model_name)
    task: Task
    options: dict[str, Any]
    hardware: dict[str, Any]
    variants: list[VariantResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "name": self.name, "task": self.task.value, "options": self.options,
                "hardware": self.hardware, "interrupted": self.interrupted, "notes": self.notes,
                "variants": [v.to_dict() for v in self.variants]}


@dataclass(frozen=True, kw_only=True)
class _Variant:
    name: str
    engine: str  # "pytorch" | "onnx"
    path: Path
    precision: str
    size_mb: float


def folder_size_mb(path: Path, patterns: tuple[str, ...] = ("*",)) -> float:
    files = {p for pattern in patterns for p in path.glob(pattern) if p.is_file()}
    return sum(p.stat().st_size for p in files) / 1e6


def model_name(model_dir: Path) -> str:
    """The folder's name, or its parent's where the folder has a generic one
    (a packaged checkpoint often sits in `.../some_package/model`)."""
    folder = model_dir.resolve()
    generic = folder.name.lower() in GENERIC_FOLDERS or folder.name.startswith("checkpoint-")
    return folder.parent.name if generic and folder.parent.name else folder.name


def _checkpoint_task(model_dir: Path) -> Task:
    """The task config.json's architectures name (the export extra is installed here)."""
    from edgelm.export.architectures import named_task

    path = model_dir / "config.json"
    try:
        architectures = json.loads(path.read_text(encoding="utf-8")).get("architectures")
    except (OSError, ValueError) as e:
        raise ConfigError(f"{model_dir} has no readable config.json ({e}); pass the PyTorch "
                          "checkpoint folder") from e
    return named_task(architectures)


def _variants(model_dir: Path, options: BenchOptions, step: Progress, notes: list[str]
              ) -> tuple[list[_Variant], Manifest]:
    try:
        load_export()
        can_export = True
    except MissingDependencyError:
        if not options.onnx:
            raise  # nothing to measure: the error names the export extra
        can_export = False
    folders: list[Path] = []
    if can_export:
        precisions = options.precisions if options.precisions is not None \
            else options.default_precisions(_checkpoint_task(model_dir))
        folders += [cached_export(model_dir, p, options.target, step=step) for p in precisions]
    given = [Path(f) for f in options.onnx]
    folders += given
    if not folders:
        raise ConfigError("nothing to measure: name precisions or --onnx folders")
    manifests = [read_manifest(f) for f in folders]
    tasks = sorted({m.task.value for m in manifests})
    if len(tasks) > 1:
        raise ConfigError(f"the variants hold different tasks ({', '.join(tasks)}); "
                          "compare folders of one task")
    # Exports made here are keyed by this checkpoint; only --onnx folders may come from another.
    source = _checkpoint_hash(model_dir, folders, manifests, given) \
        if can_export and options.onnx else None
    variants = []
    if options.baseline and can_export:
        weights = ("*.safetensors", "*.bin", "*.pt")
        variants.append(_Variant(name=PYTORCH, engine="pytorch", path=model_dir,
                                 precision="fp16" if options.device is Device.CUDA else "fp32",
                                 size_mb=folder_size_mb(model_dir, weights)))
    elif options.baseline:
        notes.append("PyTorch baseline skipped: it needs the export extra "
                     "(pip install 'edgelm[export]'); the ONNX variants are compared alone")
    for folder, manifest in zip(folders, manifests):
        name = _unique(f"edgelm {manifest.precision.value}", folder.name,
                       {v.name for v in variants})
        if source is not None and folder in given and manifest.source_sha256 != source:
            notes.append(f"{folder} was exported from another checkpoint than {model_dir}: "
                         "its agreement with PyTorch compares different models")
        variants.append(_Variant(name=name, engine="onnx", path=folder,
                                 precision=manifest.precision.value,
                                 size_mb=folder_size_mb(folder)))
    return variants, manifests[0]


def _unique(name: str, folder: str, taken: set[str]) -> str:
    """`name`, else `name (folder)`, else `name (folder) 2`, 3, ... (results are keyed by it)."""
    candidates = [name, f"{name} ({folder})"]
    candidates += (f"{name} ({folder}) {i}" for i in range(2, len(taken) + 3))
    return next(c for c in candidates if c not in taken)


def _checkpoint_hash(model_dir: Path, folders: list[Path], manifests: list[Manifest],
                     given: list[Path]) -> str | None:
    """The checkpoint's hash as exports record it (source_sha256); None if unreadable.

    An export made here from `model_dir` already holds it; else the weights are read.
    """
    made = [m.source_sha256 for f, m in zip(folders, manifests) if f not in given]
    if made:
        return made[0]
    from edgelm.export.checkpoint import checkpoint_sha256  # the export extra is there

    try:
        return checkpoint_sha256(model_dir)
    except EdgeLMError:
        return None


def _quality_input(task: Task, options: BenchOptions, manifest: Manifest, folder: Path,
                   work: Path) -> tuple[Path, list[int] | None]:
    """The file both engines read their quality inputs from; the labels, if any."""
    labels = None
    if task is Task.TEXT_GENERATION:
        text = read_text(options.text) if options.text else SAMPLE_PARAGRAPH
        payload: dict[str, Any] = {"ids": load_tokenizer(folder).encode(text).ids}
        if len(payload["ids"]) < 2:
            raise ConfigError("the text encodes to fewer than 2 tokens; pass a longer --text")
    elif options.data is not None:
        texts, raw = load_labelled(options.data)
        if task is Task.TEXT_CLASSIFICATION:
            labels = label_indices(raw, manifest.labels)
        payload = {"texts": texts}
    else:
        payload = {"texts": generated_sentences()}
    path = work / "quality.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path, labels


def run_bench(model_dir: str | Path, options: BenchOptions = BenchOptions(), *,
              progress: Callable[[str, int, int], None] | None = None) -> BenchReport:
    """Measure PyTorch and each ONNX variant of `model_dir`; see the module docstring.

    `progress(label, done, total)` is called before each worker run. Ctrl-C stops
    the run and returns what was measured, with `interrupted` set.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(f"{model_dir} is not a folder; pass the PyTorch checkpoint folder")
    notes: list[str] = []
    variants, manifest = _variants(
        model_dir, options, lambda message: progress and progress(message, 0, 0), notes)
    task = manifest.task
    if task is Task.QUESTION_ANSWERING:
        raise ConfigError("edgelm bench does not measure question-answering models yet; "
                          "time edgelm.Pipeline(folder)(question=..., context=...) directly")
    if task is Task.TEXT2TEXT_GENERATION:
        raise ConfigError("edgelm bench does not measure encoder-decoders yet; "
                          "see benchmarks/seq2seq_decode.py")
    _check_lengths(task, options, manifest.max_length)
    report = BenchReport(model=str(model_dir), name=model_name(model_dir), task=task, hardware=hardware(), notes=notes,
                         options=_recorded(options))
    results = {v.name: VariantResult(name=v.name, engine=v.engine, path=str(v.path),
                                     precision=v.precision, size_mb=round(v.size_mb, 2))
               for v in variants}
    with tempfile.TemporaryDirectory(prefix="edgelm-bench-") as work_dir:
        work = Path(work_dir)
        onnx_folder = next(v.path for v in variants if v.engine == "onnx")
        quality_in, labels = _quality_input(task, options, manifest, onnx_folder, work)
        spec = WorkerSpec(
            engine="", path="", task=task, threads=options.threads, device=options.device,
            grid=[(b, s) for b in options.batch_sizes for s in options.seq_lens],
            runs=options.runs, new_tokens=options.new_tokens, beams=options.beams,
            max_length=min(manifest.max_length, PERPLEXITY_WINDOW)
            if task is Task.TEXT_GENERATION else manifest.max_length,
            quality_in=str(quality_in))
        quality_out = {v.name: work / f"quality-{i}.npz" for i, v in enumerate(variants)}
        commands = {v.name: [sys.executable, "-m", WORKER_MODULES[v.engine],
                             replace(spec, engine=v.engine, path=str(v.path),
                                     quality_out=str(quality_out[v.name])).to_json()]
                    for v in variants}
        measured, report.interrupted = interleave(
            commands, len(spec.grid), rounds=options.rounds, runs=options.runs,
            pause_s=options.pause_s, progress=progress)
        outputs = {name: _arrays(quality_out[name]) for name, m in measured.items() if m.final}
    for name, out in outputs.items():
        _score(results[name], out, labels, outputs.get(PYTORCH) if name != PYTORCH else None)
    for v in variants:
        _summarize(results[v.name], measured[v.name], spec)
    _compare(list(results.values()))
    report.notes += trust_notes(list(results.values()), options.rounds)
    report.variants = list(results.values())
    return report


def _check_lengths(task: Task, options: BenchOptions, positions: int) -> None:
    extra = options.new_tokens if task is Task.TEXT_GENERATION else 0
    too_long = [s for s in options.seq_lens if s + extra > positions]
    if too_long:
        what = f" + new_tokens={extra}" if extra else ""
        raise ConfigError(f"seq_lens {too_long}{what} exceed the model's {positions} "
                          "positions; pass shorter --seq-lens")


def _recorded(options: BenchOptions) -> dict[str, Any]:
    """The options as the report records them."""
    return {"batch_sizes": list(options.batch_sizes), "seq_lens": list(options.seq_lens),
            "threads": options.threads, "device": options.device.value,
            "rounds": options.rounds, "runs": options.runs, "new_tokens": options.new_tokens,
            "beams": options.beams, "data": str(options.data) if options.data else None,
            "text": str(options.text) if options.text else None}


def _score(result: VariantResult, out: dict[str, np.ndarray], labels: list[int] | None,
           base: dict[str, np.ndarray] | None) -> None:
    """Accuracy against the labels; perplexity; agreement with PyTorch's outputs (`base`)."""
    if "labels" in out and labels is not None:
        result.accuracy = float(np.mean(out["labels"] == np.array(labels)))
    if "nll" in out:
        result.perplexity = float(np.exp(out["nll"].mean()))
    if base is None:
        return
    if "embeddings" in out:
        cosine = (out["embeddings"] * base["embeddings"]).sum(-1)
        result.cosine_min = float(cosine.min())
        result.agreement = float(np.mean(cosine > 0.99))  # share of texts within 0.99
    else:
        key = next(k for k in ("labels", "entities", "argmax") if k in out)
        result.agreement = float(np.mean(out[key] == base[key]))


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _summarize(result: VariantResult, measured: Measured, spec: WorkerSpec) -> None:
    """Pool each point's bursts: latency percentiles, or TTFT / ms per token / tokens/s."""
    result.error = result.error or measured.error
    result.load_s = None if measured.load_s is None else round(measured.load_s, 3)
    result.peak_rss_mb = measured.final.get("peak_rss_mb")
    if result.peak_rss_mb is not None:
        result.peak_rss_mb = round(result.peak_rss_mb, 1)
    beam = measured.final.get("beam_tokens_per_s")
    result.beam_tokens_per_s = None if beam is None else round(beam, 2)
    result.rounds = max((len(b) for b in measured.bursts), default=0)
    for (batch, length), bursts in zip(spec.grid, measured.bursts):
        if not bursts:
            continue
        point = Point(batch=batch, seq_len=length, bursts=len(bursts),
                      burst_ms=[round(statistics.median(b["ms"]), 3) for b in bursts])
        calls = np.concatenate([b["ms"] for b in bursts])
        if "ttft_ms" in bursts[0]:
            first = np.concatenate([b["ttft_ms"] for b in bursts])
            point.ttft_ms = round(float(np.median(first)), 3)
            # each call's own decode steps: no difference of medians from different calls
            per_token = (calls - first) / max(1, spec.new_tokens - 1)
            point.per_token_ms = round(float(np.median(per_token)), 3)
            point.tokens_per_s = round(batch * spec.new_tokens / float(np.median(calls)) * 1e3, 2)
        else:
            p50, p90, p99 = np.percentile(calls, [50, 90, 99])
            point.p50_ms, point.p90_ms, point.p99_ms = (round(float(x), 3)
                                                        for x in (p50, p90, p99))
            point.items_per_s = round(batch / point.p50_ms * 1e3, 2)
        result.points.append(point)
