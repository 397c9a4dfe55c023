"""The `edgelm` command. Errors become one line and a non-zero exit here, once."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from edgelm import __version__
from edgelm.errors import EdgeLMError
from edgelm.manifest import read_manifest
from edgelm.types import Device, Precision, Task


class _Group(click.Group):
    """Turns EdgeLMError into `error: ...` and exit code 1 (traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeLMError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: unexpected {type(e).__name__}: {str(e)[:300]} "
                       "(run with --debug for the traceback)", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="edgelm")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Export Hugging Face checkpoints to fast ONNX folders and run them torch-free."""
    ctx.obj = {"debug": debug}
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: MODEL_DIR-edgelm-PRECISION].")
@click.option("--precision", type=click.Choice(Precision.values()), default="int8",
              show_default=True)
@click.option("--task", type=click.Choice(Task.values()), default=None,
              help="Override the task detected from config.architectures.")
@click.option("--keep-float", default="", metavar="GROUPS",
              help="int8: leave these node groups in float, comma-separated: "
                   "first-layer, attention (the most accuracy-sensitive; slower).")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@click.option("--trust-pickle", is_flag=True,
              help="Allow pytorch_model.bin weights (loaded with weights_only=True).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def export(model_dir: Path, output: Path | None, precision: str, task: str | None,
           keep_float: str, force: bool, trust_pickle: bool, quiet: bool) -> None:
    """Export MODEL_DIR (a Hugging Face checkpoint) to a validated ONNX folder."""
    from edgelm._extras import load_export

    export_module = load_export()
    options = export_module.ExportOptions(
        precision=Precision(precision), task=Task(task) if task else None,
        force=force, trust_pickle=trust_pickle,
        keep_float=tuple(k.strip() for k in keep_float.split(",") if k.strip()),
    )
    output = output or model_dir.with_name(f"{model_dir.name}-edgelm-{precision}")
    progress = None if quiet else (lambda message: click.echo(f"· {message}", err=True))
    manifest = export_module.export_model(model_dir, output, options, progress=progress)
    if not quiet:
        _print_summary(output, manifest, stderr=True)


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1, required=True)
@click.option("--top-k", type=int, default=1, show_default=True,
              help="Labels per text (classification).")
@click.option("--device", type=click.Choice(Device.values()), default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads [default: all cores].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def run(folder: Path, texts: tuple[str, ...], top_k: int, device: str,
        threads: int | None, as_json: bool) -> None:
    """Run an exported FOLDER on TEXTS and print the results."""
    from edgelm.pipelines import Pipeline, TextClassificationPipeline

    pipe = Pipeline(folder, device=device, threads=threads)
    if isinstance(pipe, TextClassificationPipeline):
        results: Any = pipe(list(texts), top_k=top_k)
    else:
        results = pipe(list(texts))
    if isinstance(results, np.ndarray):
        results = results.tolist()
    if as_json:
        click.echo(json.dumps(results, ensure_ascii=False))
        return
    for text, result in zip(texts, results):
        click.echo(f"{text!r}: {_short(result)}")


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest.")
def info(folder: Path, as_json: bool) -> None:
    """Summarize an exported FOLDER's manifest (and check its files)."""
    manifest = read_manifest(folder)
    if as_json:
        click.echo(manifest.to_json(), nl=False)
    else:
        _print_summary(folder, manifest, stderr=False)


def _short(result: Any) -> str:
    if isinstance(result, list) and result and isinstance(result[0], float):
        head = ", ".join(f"{x:.4f}" for x in result[:4])
        return f"[{head}, ...] ({len(result)} dims)"
    return json.dumps(result, ensure_ascii=False)


def _print_summary(folder: Path, manifest: Any, *, stderr: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=str(folder), show_header=False)
    table.add_row("task", manifest.task.value)
    table.add_row("architecture", manifest.architecture)
    table.add_row("precision", manifest.precision.value)
    table.add_row("max length", str(manifest.max_length))
    if manifest.labels:
        table.add_row("labels", ", ".join(manifest.labels[:8]))
    table.add_row("fused ops", ", ".join(f"{k} {v}" for k, v in manifest.fused_ops.items()))
    size = sum((folder / name).stat().st_size for name in manifest.files
               if (folder / name).is_file())
    table.add_row("size", f"{size / 1e6:.1f} MB")
    if manifest.validation:
        v = manifest.validation
        agreement = (f"top-1 agreement {v.top1_agreement:.3f}" if v.top1_agreement is not None
                     else f"min cosine {v.cosine_min:.4f}")
        table.add_row("vs PyTorch", f"max |diff| {v.max_abs_diff:.2e}, {agreement}")
    Console(stderr=stderr).print(table)
