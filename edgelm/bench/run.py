"""`run_bench`: variants, worker processes in alternating rounds, and what they measured.

Every measurement is a fresh worker process (edgelm.bench.worker for ONNX
folders, edgelm.export.bench_baseline for PyTorch): in one process PyTorch's
OpenMP threads keep spinning after a call and skew the next engine's figures.
Rounds alternate the variants so that drift on a shared machine hits all of
them alike; timings are pooled over rounds. Quality (accuracy, agreement,
perplexity) is measured once, in the first round.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
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
from edgelm.bench.spec import BenchOptions, Point, VariantResult, WorkerSpec
from edgelm.bench.system import hardware
from edgelm.errors import ConfigError, EdgeLMError, MissingDependencyError, first_line
from edgelm.manifest import Manifest, read_manifest
from edgelm.tokenizer import load_tokenizer
from edgelm.types import Device, Task

log = logging.getLogger(__name__)

PYTORCH = "PyTorch"
PERPLEXITY_WINDOW = 512  # tokens per forward pass when scoring --text
Progress = Callable[[str], None]


@dataclass(kw_only=True)
class BenchReport:
    model: str
    task: Task
    options: dict[str, Any]
    hardware: dict[str, Any]
    variants: list[VariantResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "task": self.task.value, "options": self.options,
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


def _checkpoint_task(model_dir: Path) -> Task:
    """The task config.json's architectures name (the export extra is installed here)."""
    from edgelm.export.specs import named_task

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


def _worker_command(variant: _Variant) -> list[str]:
    module = "edgelm.export.bench_baseline" if variant.engine == "pytorch" \
        else "edgelm.bench.worker"
    return [sys.executable, "-m", module]


def _run_worker(variant: _Variant, spec: WorkerSpec) -> dict[str, Any]:
    # Its own session: Ctrl-C reaches only this process, which stops the worker itself.
    with subprocess.Popen([*_worker_command(variant), spec.to_json()], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate()
        except KeyboardInterrupt:
            proc.kill()
            raise
    if proc.returncode < 0:  # the out-of-memory killer, say
        raise EdgeLMError(f"the worker was killed by signal {-proc.returncode}")
    if proc.returncode != 0:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        raise EdgeLMError(lines[-1] if lines else f"exit code {proc.returncode}")
    try:
        return dict(json.loads(out.strip().splitlines()[-1]))
    except (IndexError, ValueError) as e:
        raise EdgeLMError(f"the worker printed no result ({e})") from e


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
    _check_lengths(task, options, manifest.max_length)
    report = BenchReport(model=str(model_dir), task=task, hardware=hardware(), notes=notes,
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
        raw, outputs, report.interrupted = _rounds(variants, spec, results, options.rounds,
                                                   work, progress)
    for name, out in outputs.items():
        _score(results[name], out, labels, outputs.get(PYTORCH) if name != PYTORCH else None)
    for v in variants:
        _summarize(results[v.name], raw[v.name], task)
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


def _rounds(variants: list[_Variant], template: WorkerSpec, results: dict[str, VariantResult],
            rounds: int, work: Path, progress: Callable[[str, int, int], None] | None
            ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, np.ndarray]], bool]:
    """Every variant once per round, in order; quality outputs from the first round.

    Returns each variant's worker reports, its quality outputs, and whether Ctrl-C
    cut the rounds short. A failing variant gets its error and is skipped after.
    """
    raw: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    done = 0
    try:
        for round_index in range(rounds):
            for v in variants:
                done += 1
                if results[v.name].error:
                    continue
                if progress:
                    progress(f"round {round_index + 1}/{rounds}: {v.name}", done,
                             rounds * len(variants))
                first = round_index == 0
                spec = replace(template, engine=v.engine, path=str(v.path),
                               quality_in=template.quality_in if first else None,
                               quality_out=str(work / f"quality-{done}.npz") if first else None)
                try:
                    raw[v.name].append(_run_worker(v, spec))
                except EdgeLMError as e:
                    results[v.name].error = first_line(e, 300)
                    log.warning("%s failed: %s", v.name, results[v.name].error)
                    continue
                if spec.quality_out:
                    with np.load(spec.quality_out) as data:
                        outputs[v.name] = {k: data[k] for k in data.files}
    except KeyboardInterrupt:
        return raw, outputs, True
    return raw, outputs, False


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


def _summarize(result: VariantResult, rounds: list[dict[str, Any]], task: Task) -> None:
    if not rounds:
        return
    result.rounds = len(rounds)
    result.load_s = round(statistics.median(r["load_s"] for r in rounds), 3)
    result.peak_rss_mb = round(statistics.median(r["peak_rss_mb"] for r in rounds), 1)
    beams = [r["beam_tokens_per_s"] for r in rounds if "beam_tokens_per_s" in r]
    result.beam_tokens_per_s = round(statistics.median(beams), 2) if beams else None
    for i, first in enumerate(rounds[0]["points"]):
        point = Point(batch=first["batch"], seq_len=first["seq_len"])
        at = [r["points"][i] for r in rounds]
        if task is Task.TEXT_GENERATION:
            point.ttft_ms = round(statistics.median(p["ttft_ms"] for p in at), 3)
            point.per_token_ms = round(statistics.median(p["per_token_ms"] for p in at), 3)
            point.tokens_per_s = round(statistics.median(p["tokens_per_s"] for p in at), 2)
        else:
            samples = np.concatenate([p["samples_ms"] for p in at])
            p50, p90, p99 = np.percentile(samples, [50, 90, 99])
            point.p50_ms, point.p90_ms, point.p99_ms = (round(float(x), 3)
                                                        for x in (p50, p90, p99))
            point.items_per_s = round(point.batch / point.p50_ms * 1e3, 2)
        result.points.append(point)
