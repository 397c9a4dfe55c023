"""A bench report as terminal tables, JSON, CSV and PNG charts."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgelm.bench.run import PYTORCH, BenchReport
from edgelm.bench.spec import Point
from edgelm.bench.trust import uncertain
from edgelm.errors import MissingDependencyError
from edgelm.types import Task

WIDE = 140  # columns of the tables when the report goes to a file


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _speedup_cell(point: Point, base: Point | None) -> str:
    """'1.84x', or '1.84x?' where the bursts behind it disagreed (see the notes)."""
    if point.speedup is None:
        return "-"
    if point is base:  # the baseline against itself
        return "1.00x"
    return f"{point.speedup:.2f}x" + ("?" if uncertain(point, base) else "")


def _base_points(report: BenchReport) -> dict[tuple[int, int], Point]:
    base = next((v for v in report.variants if v.name == PYTORCH), None)
    return {(p.batch, p.seq_len): p for p in base.points} if base else {}


def print_report(report: BenchReport, console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal:  # a file or a pipe: no reason to squeeze the tables into 80
        console.width = max(console.width, WIDE)
    hw = report.hardware
    console.print(f"[bold]{escape(report.name)}[/] ({escape(report.model)}, "
                  f"{report.task.value}) on {hw['cpu']}, "
                  f"{hw['cores']} cores, {report.options['threads']} threads, "
                  f"device {report.options['device']}" + (f", GPU {hw['gpu']}" if hw.get("gpu")
                                                          else ""))
    decoder = report.task is Task.TEXT_GENERATION
    summary = Table(title="Variants")
    for column in ("variant", "size MB", "load s", "peak RSS MB"):
        summary.add_column(column, justify="left" if column == "variant" else "right")
    quality = ["perplexity", "token agreement"] if decoder else ["accuracy", "agreement"]
    if decoder:
        summary.add_column("beam tokens/s", justify="right")
    for column in quality:
        summary.add_column(column, justify="right")
    for v in report.variants:
        row = [v.name, _fmt(v.size_mb), _fmt(v.load_s, 2), _fmt(v.peak_rss_mb, 0)]
        if decoder:
            row += [_fmt(v.beam_tokens_per_s), _fmt(v.perplexity, 3), _fmt(v.agreement, 4)]
        else:
            row += [_fmt(v.accuracy, 4), _fmt(v.agreement, 4)]
        summary.add_row(*row, style="red" if v.error else None)
    console.print(summary)
    console.print(_speed_table(report, decoder))
    for v in report.variants:
        if v.error:
            console.print(f"[red]{escape(v.name)} failed:[/] {escape(v.error)}")
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    if report.interrupted:
        console.print("[yellow]interrupted: the figures above are what was measured so far[/]")


def _speed_table(report: BenchReport, decoder: bool) -> Table:
    base = _base_points(report)
    table = Table(title="Speed (speed-up against PyTorch at the same batch and length)")
    columns: tuple[str, ...]
    if decoder:
        columns = ("variant", "batch", "prompt", "TTFT ms", "ms/token", "tokens/s", "spread",
                   "speed-up")
    else:
        columns = ("variant", "batch", "tokens", "p50 ms", "p90 ms", "p99 ms", "texts/s",
                   "spread", "speed-up")
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right")
    for v in report.variants:
        for p in v.points:
            cells = [v.name, str(p.batch), str(p.seq_len)]
            if decoder:
                cells += [_fmt(p.ttft_ms, 2), _fmt(p.per_token_ms, 2), _fmt(p.tokens_per_s)]
            else:
                cells += [_fmt(p.p50_ms, 2), _fmt(p.p90_ms, 2), _fmt(p.p99_ms, 2),
                          _fmt(p.items_per_s)]
            spread = "-" if p.spread is None else f"{p.spread:.0%}"
            table.add_row(*cells, spread, _speedup_cell(p, base.get((p.batch, p.seq_len))))
    return table


def write_json(report: BenchReport, path: Path) -> None:
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")


CSV_FIELDS = ["variant", "engine", "precision", "batch", "seq_len", "p50_ms", "p90_ms", "p99_ms",
              "items_per_s", "ttft_ms", "per_token_ms", "tokens_per_s", "bursts", "spread",
              "speedup", "settled", "size_mb",
              "load_s", "peak_rss_mb", "accuracy", "agreement", "perplexity", "cosine_min"]


def write_csv(report: BenchReport, path: Path) -> None:
    """One row per variant and grid point; the variant's own figures repeat on each."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for v in report.variants:
            points: list[Point | None] = list(v.points) or [None]
            for p in points:
                row: dict[str, Any] = {"variant": v.name, "engine": v.engine,
                                       "precision": v.precision, "size_mb": v.size_mb,
                                       "load_s": v.load_s, "peak_rss_mb": v.peak_rss_mb,
                                       "accuracy": v.accuracy, "agreement": v.agreement,
                                       "perplexity": v.perplexity, "cosine_min": v.cosine_min}
                if p is not None:
                    row |= {k: getattr(p, k) for k in ("batch", "seq_len", "p50_ms", "p90_ms",
                                                       "p99_ms", "items_per_s", "ttft_ms",
                                                       "per_token_ms", "tokens_per_s",
                                                       "bursts", "spread", "speedup",
                                                       "settled")}
                writer.writerow(row)


def check_plotting() -> None:
    """Fail before measuring, not after, when --plot cannot be written."""
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError as e:
        raise MissingDependencyError(e.name or "matplotlib", "bench") from e


def write_plot(report: BenchReport, path: Path) -> None:
    """Four charts: speed by variant and batch, size, peak memory, quality."""
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    decoder = report.task is Task.TEXT_GENERATION
    variants = [v for v in report.variants if v.points]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    speed, size, memory, quality = axes.flat
    keys = sorted({(p.batch, p.seq_len) for v in variants for p in v.points})
    width = 0.8 / max(1, len(variants))
    for i, v in enumerate(variants):
        by_key = {(p.batch, p.seq_len): p for p in v.points}
        values = [(by_key[k].tokens_per_s if decoder else by_key[k].p50_ms)
                  if k in by_key else 0 for k in keys]
        speed.bar([x + i * width for x in range(len(keys))], values, width, label=v.name)
    speed.set_xticks([x + width * (len(variants) - 1) / 2 for x in range(len(keys))])
    speed.set_xticklabels([f"b{b} x {s}" for b, s in keys])
    speed.set_ylabel("tokens/s (higher is better)" if decoder
                     else "p50 latency, ms (lower is better)")
    speed.set_title("Tokens per second" if decoder else "Latency by batch and length")
    speed.legend(fontsize="small")
    names = [v.name for v in report.variants]
    _bars(size, names, [v.size_mb for v in report.variants], "size on disk, MB", "Size")
    _bars(memory, names, [v.peak_rss_mb for v in report.variants], "peak resident memory, MB",
          "Memory")
    if decoder:
        _bars(quality, names, [v.perplexity for v in report.variants],
              "perplexity (lower is better)", "Perplexity")
    else:
        values = [v.accuracy if v.accuracy is not None else v.agreement for v in report.variants]
        label = "accuracy" if any(v.accuracy is not None for v in report.variants) \
            else "agreement with PyTorch"
        _bars(quality, names, values, label, label.capitalize())
    fig.suptitle(f"{report.name}: {report.hardware['cpu']}, "
                 f"{report.options['threads']} threads, {report.options['device']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _bars(ax: Any, names: list[str], values: list[float | None], ylabel: str, title: str) -> None:
    ax.bar(names, [v or 0 for v in values], color="tab:blue")
    for x, v in enumerate(values):
        if v is not None:
            ax.annotate(f"{v:.3g}", (x, v), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=15, labelsize=8)
