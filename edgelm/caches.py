"""The folders edgelm fills on disk, in one table: what each holds and the variable that moves it.

    fixtures    $EDGELM_CACHE, else ~/.cache/edgelm-fixtures
    bench       $EDGELM_CACHE/bench, else ~/.cache/edgelm/bench
    verified    $EDGELM_CACHE/verified, else ~/.cache/edgelm/verified
    packed      $EDGELM_CACHE/packed, else ~/.cache/edgelm/packed
    benchmarks  $EDGELM_BENCH_CACHE, else ~/.cache/edgelm-bench

The code that fills a folder reads its path here (`cache_path(name)`), and
`edgelm cache` lists and clears them. One variable moves two folders:
EDGELM_CACHE puts `bench` inside `fixtures`, so sizes and clearing leave a
folder that another cache holds to that cache. Torch-free.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from edgelm.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class CacheFolder:
    name: str
    env: str  # the variable that moves it
    default: str  # where it is while `env` is unset ("~" is the home folder)
    under_env: str = ""  # its subfolder of $env when `env` is set
    holds: str
    filled_by: str

    @property
    def path(self) -> Path:
        moved = os.environ.get(self.env)
        if moved:
            return Path(moved).expanduser() / self.under_env
        return Path(self.default).expanduser()


CACHES = (
    CacheFolder(
        name="fixtures", env="EDGELM_CACHE", default="~/.cache/edgelm-fixtures",
        holds="checkpoints built from packaged weights: SmolLM2-135M-Instruct dequantized "
              "from its GGUF, the fine-tuned sentiment classifier, the VADER movie snippets",
        filled_by="make demo, make test, make bench (edgelm.export.zoo)"),
    CacheFolder(
        name="bench", env="EDGELM_CACHE", under_env="bench", default="~/.cache/edgelm/bench",
        holds="ONNX exports per checkpoint, precision and target, reused while neither the "
              "checkpoint nor the exporter changes",
        filled_by="edgelm bench, make bench, benchmarks/*.py (edgelm.bench.exports)"),
    CacheFolder(
        name="verified", env="EDGELM_CACHE", under_env="verified",
        default="~/.cache/edgelm/verified",
        holds="the sha256 of each model file already checked, per file identity, so a "
              "folder is hashed once rather than at every load (64 bytes a file), and the "
              "largest id of each tokenizer.json content",
        filled_by="every load of an exported folder (edgelm.hash_memo)"),
    CacheFolder(
        name="packed", env="EDGELM_CACHE", under_env="packed", default="~/.cache/edgelm/packed",
        holds="onnxruntime's optimized graphs with their weights packed for this CPU, per "
              "folder, onnxruntime version and CPU, so a load maps the packed weights instead "
              "of packing them again (about 2.4x the model files); at most $EDGELM_PACKED_CACHE_GB "
              "gigabytes (8), the entries loaded least recently removed first",
        filled_by="loads with packed_cache=True, and by default loads of folders exported "
                  "for a board or phone (--target arm64|rpi4|rpi5|mobile) (edgelm.packed_cache)"),
    CacheFolder(
        name="benchmarks", env="EDGELM_BENCH_CACHE", default="~/.cache/edgelm-bench",
        holds="the benchmark scripts' checkpoints (GPT-2 124M, BERT-base) and their "
              "optimum and CTranslate2 exports",
        filled_by="python benchmarks/*.py"),
)
NAMES = tuple(c.name for c in CACHES)


def cache_folder(name: str) -> CacheFolder:
    for cache in CACHES:
        if cache.name == name:
            return cache
    raise ConfigError(f"no cache is named {name!r}; the caches are {', '.join(NAMES)}")


def cache_path(name: str) -> Path:
    """Where the cache `name` is now (its variable read at each call)."""
    return cache_folder(name).path


def private_cache(name: str, *, off_variable: str) -> Path | None:
    """The cache folder `name`, created private if missing; None when `off_variable` is "0"
    or the folder is not safe to trust (not owned by this user, or group/world writable)."""
    if os.environ.get(off_variable, "1") == "0":
        return None
    folder = cache_path(name)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    private = not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    owned = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return folder if private and owned and stat.S_ISDIR(info.st_mode) else None


def _nested(cache: CacheFolder) -> list[Path]:
    """The other caches' folders inside this one (EDGELM_CACHE puts bench inside fixtures)."""
    own = cache.path.absolute()
    return [other.path.absolute() for other in CACHES
            if other is not cache and own in other.path.absolute().parents]


def _holds_any(entry: Path, paths: list[Path]) -> bool:
    return any(entry == p or entry in p.parents for p in paths)


def _disk_bytes(path: Path) -> int:
    try:
        stat = path.lstat()
    except OSError:  # removed meanwhile
        return 0
    blocks = getattr(stat, "st_blocks", None)
    return stat.st_size if blocks is None else blocks * 512


def disk_usage(cache: CacheFolder) -> int:
    """Bytes on disk under the cache's folder (0 when absent), other caches inside it left out."""
    root, skip = cache.path.absolute(), _nested(cache)
    total = 0
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        subfolders[:] = [d for d in subfolders if here / d not in skip]
        total += sum(_disk_bytes(here / name) for name in files)
    return total


def check_clearable(cache: CacheFolder) -> None:
    """Refuse a folder that holds more than a cache: a file-system root, the home or current
    folder, or a parent of either (where EDGELM_CACHE=~, say, would put it)."""
    path = cache.path.resolve()
    for keep, what in ((Path.home().resolve(), "the home folder"),
                       (Path.cwd().resolve(), "the current folder")):
        if path == keep or path in keep.parents or path.parent == path:
            where = what if path == keep else f"a parent of {what}"
            raise ConfigError(f"{cache.env} puts the {cache.name} cache at {path}, {where}; "
                              f"not emptying it: point {cache.env} at a folder of its own")


def clear(cache: CacheFolder) -> int:
    """Remove what the cache's folder holds (not other caches inside it); returns bytes freed.

    The folder itself stays (empty); the code that fills it makes what it needs again.
    """
    check_clearable(cache)
    root = cache.path.absolute()
    if not root.is_dir():
        return 0
    before, skip = disk_usage(cache), _nested(cache)
    for entry in root.iterdir():
        if _holds_any(entry, skip):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return before - disk_usage(cache)
