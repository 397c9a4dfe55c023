"""`edgelm bench`: its options, its progress on a terminal or in a log, its outputs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from edgelm.errors import ConfigError
from edgelm.types import Device, Precision


def _int_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None


@click.command(short_help="Measure ONNX variants against PyTorch: speed, memory, accuracy.")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--precision", "precisions", default=None, metavar="LIST",
              help="Variants to export and measure, e.g. fp32,int8,int4 "
                   "[default: fp32,int8; decoders also int4].")
@click.option("--onnx", "onnx_folders", multiple=True, type=click.Path(path_type=Path),
              help="An exported folder to measure as it is (repeatable).")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="JSONL or CSV with text and label: task accuracy.")
@click.option("--text", type=click.Path(path_type=Path), default=None,
              help="Plain text: decoder perplexity and token agreement.")
@click.option("--batch-sizes", default="1,8", show_default=True, callback=_int_list)
@click.option("--seq-lens", default="16,128", show_default=True, callback=_int_list,
              help="Tokens per text (encoders) or prompt tokens (decoders).")
@click.option("--threads", type=int, default=None, help="CPU threads [default: all cores].")
@click.option("--device", type=click.Choice([Device.CPU.value, Device.CUDA.value]),
              default="cpu", show_default=True)
@click.option("--rounds", type=int, default=3, show_default=True,
              help="Rounds: in each, every variant's worker (loaded once) times each grid "
                   "point in a burst, the variants taking turns. 3 or more show the spread.")
@click.option("--runs", type=int, default=10, show_default=True,
              help="Timed calls per burst.")
@click.option("--new-tokens", type=int, default=32, show_default=True)
@click.option("--no-baseline", is_flag=True, help="Skip PyTorch.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
@click.option("--csv", "csv_out", type=click.Path(path_type=Path), default=None)
@click.option("--plot", "plot_out", type=click.Path(path_type=Path), default=None,
              help="PNG charts (needs the bench extra: matplotlib).")
def bench(model_dir: Path, precisions: str | None, onnx_folders: tuple[Path, ...],
          data: Path | None, text: Path | None, batch_sizes: tuple[int, ...],
          seq_lens: tuple[int, ...], threads: int | None, device: str, rounds: int, runs: int,
          new_tokens: int, no_baseline: bool, json_out: Path | None, csv_out: Path | None,
          plot_out: Path | None) -> None:
    """Measure MODEL_DIR in PyTorch against its ONNX variants: speed, memory, size, accuracy."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from edgelm.bench import BenchOptions, report, run_bench

    if plot_out is not None:
        report.check_plotting()
    for path in (json_out, csv_out, plot_out):  # fail now, not after minutes of measuring
        if path is not None and not path.absolute().parent.is_dir():
            raise ConfigError(f"{path.parent} does not exist; create it or choose another path")
    options = BenchOptions(
        precisions=tuple(Precision.parse(p.strip()) for p in precisions.split(",") if p.strip())
        if precisions else None,
        onnx=onnx_folders, data=data, text=text, batch_sizes=batch_sizes, seq_lens=seq_lens,
        device=Device.parse(device), rounds=rounds, runs=runs, new_tokens=new_tokens,
        baseline=not no_baseline, **({"threads": threads} if threads is not None else {}))
    console = Console(stderr=True)
    if not console.is_terminal:  # a log or a pipe: one plain line per step instead of a bar
        start = time.perf_counter()

        def log_line(label: str, done: int, total: int) -> None:
            count = f" ({done}/{total})" if total else ""
            click.echo(f"[{time.perf_counter() - start:6.1f} s] {label}{count}", err=True)

        result = run_bench(model_dir, options, progress=log_line)
    else:
        with Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                      TextColumn("{task.fields[count]}"), TimeElapsedColumn(), console=console,
                      transient=True) as bar:
            task = bar.add_task("preparing", total=None, count="")

            def progress(label: str, done: int, total: int) -> None:  # total 0: not known yet
                bar.update(task, description=label, completed=max(0, done - 1),
                           total=total or None,
                           count=f"{max(0, done - 1)}/{total}" if total else "")

            result = run_bench(model_dir, options, progress=progress)
    report.print_report(result, Console())
    for path, write in ((json_out, report.write_json), (csv_out, report.write_csv),
                        (plot_out, report.write_plot)):
        if path is not None:
            write(result, path)
            console.print(f"wrote {path}")
    if result.interrupted:
        sys.exit(130)
