"""Exports made once per checkpoint, precision and target, then reused.

A cached folder is found again while neither the checkpoint's files nor the
exporter's code change: its name carries a digest of both. `edgelm bench` and
the scripts in benchmarks/ share this cache.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path

import edgelm
from edgelm import __version__
from edgelm._extras import load_export
from edgelm.caches import cache_path
from edgelm.types import Precision, Target


def cache_root() -> Path:
    return cache_path("bench")


@functools.cache
def _code_digest() -> str:
    """The exporter's code: edgelm.export and the runtime modules it uses (manifest,
    session options, tokenizer), i.e. every source file of both packages."""
    digest = hashlib.sha256(__version__.encode())
    roots = {Path(edgelm.__file__).parent, Path(str(load_export().__file__)).parent}
    for source in sorted(p for root in roots for p in root.rglob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def checkpoint_key(model_dir: Path) -> str:
    """Changes when any file of the checkpoint, or the exporter's code, changes."""
    digest = hashlib.sha256(f"{model_dir.resolve()}|{_code_digest()}".encode())
    for p in sorted(model_dir.iterdir()):
        if p.is_file():
            stat = p.stat()
            digest.update(f"{p.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def cached_export(model_dir: str | Path, precision: str | Precision,
                  target: str | Target = Target.CPU, *,
                  step: Callable[[str], None] | None = None, block_size: int = 32,
                  table_bits: int = 8) -> Path:
    """The export of `model_dir` at `precision` for `target`: made once, then reused.

    `block_size`, `table_bits`: a decoder's quantization options (defaults: the export's).
    """
    model_dir, precision, target = Path(model_dir), Precision(precision), Target(target)
    key = checkpoint_key(model_dir)
    options = ("" if block_size == 32 else f"-b{block_size}") + \
        ("" if table_bits == 8 else f"-t{table_bits}")
    out = cache_root() / f"{model_dir.name}-{key}-{precision.value}-{target.value}{options}"
    if (out / "edgelm.json").is_file():
        return out
    if step is not None:
        step(f"exporting {precision.value}")
    export = load_export()
    progress = None if step is None else (lambda m: step(f"exporting {precision.value}: {m}"))
    export.export_model(model_dir, out, export.ExportOptions(
        precision=precision, target=target, force=True, block_size=block_size,
        table_bits=table_bits), progress=progress)
    return out
