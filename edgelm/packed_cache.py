"""onnxruntime's packed weights kept on disk, so that a CPU load maps them instead of packing.

At every load onnxruntime repacks each quantized weight (MatMulNBits, DynamicQuantizeMatMul,
QAttention) into the layout its kernels read on this CPU, on the heap: for GPT-2 124M int8
that is about half of the session's load time. With the cache on, the first load also
writes the optimized graph and its packed weights (onnxruntime's
session.save_external_prepacked_constant_initializers) under the `packed` cache folder
(edgelm.caches); later loads open that copy, and onnxruntime maps its packed weights from
the file.

A packed layout belongs to one CPU's instruction sets and one onnxruntime build, and
onnxruntime does not check it when it maps it. An entry is therefore keyed by the folder's
verified sha256s, onnxruntime's version and build, the machine, the CPU's feature flags (Linux's
/proc/cpuinfo; where they cannot be read the cache stays off) and the session settings that
shape the graph. Entries are written whole (a staging folder, synced, renamed into place:
edgelm.staging); one that fails to load is removed and the folder loaded as usual. The
entries are trusted as the hash memo is: a folder only this user can write.

Cost: the first load takes longer and writes the graph's weights twice (the originals and
their packed copy: 2.4x the model for GPT-2 124M int8). The cache holds at most
EDGELM_PACKED_CACHE_GB gigabytes (8 by default): before an entry is written, the entries
loaded least recently are removed to make room, and a model whose entry could not fit is
not cached. EDGELM_PACKED_CACHE=0 turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import onnxruntime as ort

from edgelm.caches import private_cache
from edgelm.errors import ConfigError
from edgelm.staging import staging_folder, sweep_abandoned

log = logging.getLogger(__name__)

MODEL = "model.onnx"
DATA = "model.onnx.data"
# What a load that writes an entry asks of onnxruntime besides the optimized graph's path.
SAVE_CONFIG = {
    "session.optimized_model_external_initializers_file_name": DATA,
    "session.optimized_model_external_initializers_min_size_in_bytes": "1024",
    "session.save_external_prepacked_constant_initializers": "1",
}
# Free space a write needs, as a multiple of the model's files (originals + packed copy,
# with room to spare for the disk's other users).
FREE_SPACE_FACTOR = 4
# An entry's size as a multiple of the model's files: 2.1-2.4x measured (GPT-2 int8 to a
# 1.5B int8), rounded up, so that making room before a write leaves room after it.
ENTRY_FACTOR = 2.5
BUDGET_VARIABLE, DEFAULT_BUDGET_GB = "EDGELM_PACKED_CACHE_GB", 8.0
ENTRY_NAME = re.compile(r"[0-9a-f]{64}")  # a key's sha256; staging folders start with "."

# Opens `graph` as a session; with a path as second argument the session also writes its
# optimized graph there (with SAVE_CONFIG).
OpenSession = Callable[[Path, "Path | None"], ort.InferenceSession]


@functools.cache
def cpu_flags() -> str | None:
    """The CPU's feature flags as the kernel lists them, or None where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return " ".join(sorted(value.split()))
    except OSError:
        pass
    return None


@functools.cache
def _build() -> str:
    """onnxruntime's package and build (a nightly or a package of another name can pack
    differently under the same version)."""
    info = getattr(ort, "get_build_info", lambda: "")()
    return f"{ort.get_device()} {info}"


@dataclass(frozen=True)
class PackedEntry:
    """One folder's packed copy for this CPU and onnxruntime: `<cache>/<key>/`."""

    path: Path

    @property
    def model(self) -> Path:
        return self.path / MODEL

    def ready(self) -> bool:
        return self.model.is_file() and (self.path / DATA).is_file()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def size(self) -> int:
        try:
            return sum(p.stat().st_size for p in self.path.iterdir())
        except OSError:  # removed meanwhile
            return 0

    def mark_used(self) -> None:
        """The entry's last use is its folder's mtime: what room-making removes last."""
        try:
            os.utime(self.path)
        except OSError:
            pass


def budget_bytes() -> int:
    """The most the packed cache may hold: EDGELM_PACKED_CACHE_GB gigabytes, 8 unset."""
    raw = os.environ.get(BUDGET_VARIABLE, "")
    try:
        gigabytes = float(raw) if raw.strip() else DEFAULT_BUDGET_GB
    except ValueError:
        gigabytes = -1.0
    if not 0 <= gigabytes < float("inf"):  # also NaN
        raise ConfigError(f"{BUDGET_VARIABLE}={raw!r} must be a number of gigabytes >= 0")
    return int(gigabytes * 1e9)


def make_room(new: PackedEntry, needed: int) -> bool:
    """Remove the entries beside `new` loaded least recently until `needed` more bytes fit
    within the budget; False, removing nothing, when they could not fit even alone."""
    budget = budget_bytes()
    if needed > budget:
        return False
    others = []
    for path in new.path.parent.iterdir():
        if path != new.path and ENTRY_NAME.fullmatch(path.name) and path.is_dir() \
                and not path.is_symlink():
            entry = PackedEntry(path)
            others.append((path.stat().st_mtime, entry.size(), entry))
    used = sum(size for _, size, _ in others)
    for _, size, entry in sorted(others, key=lambda o: o[0]):
        if used + needed <= budget:
            break
        entry.remove()  # a process that maps it keeps its pages until it exits
        used -= size
    return True


def entry_for(identity: str, settings: Iterable[str]) -> PackedEntry | None:
    """The entry for a folder whose verified files hash to `identity`, loaded with `settings`;
    None when the cache is off, not safe to use, or this CPU's flags cannot be read."""
    flags = cpu_flags()
    folder = private_cache("packed", off_variable="EDGELM_PACKED_CACHE")
    if flags is None or folder is None:
        return None
    budget_bytes()  # a mistyped EDGELM_PACKED_CACHE_GB fails every load, not only writes
    key = json.dumps([identity, ort.__version__, _build(), platform.machine(), flags,
                      sorted(settings)])
    return PackedEntry(folder / hashlib.sha256(key.encode()).hexdigest())


def open_packed(entry: PackedEntry, graph: Path, model_bytes: int,
                open_session: OpenSession) -> ort.InferenceSession | None:
    """A session from the entry, writing it first when it is missing; None when neither
    works (the caller then loads `graph` as usual)."""
    if entry.ready():
        try:
            session = open_session(entry.model, None)
            entry.mark_used()
            return session
        except Exception as e:  # a damaged entry: drop it, the next load writes it again
            log.warning("the packed copy %s does not load (%s); removing it", entry.path, e)
            entry.remove()
            return None
    try:
        sweep_abandoned(entry.path)  # staging folders of writers that died
        if not make_room(entry, int(ENTRY_FACTOR * model_bytes)):
            log.info("not writing a packed copy of %s: larger than %s allows", graph,
                     BUDGET_VARIABLE)
            return None
        if shutil.disk_usage(entry.path.parent).free < FREE_SPACE_FACTOR * model_bytes:
            log.info("not writing a packed copy of %s: too little free disk", graph)
            return None
        staging = staging_folder(entry.path)
    except OSError:
        return None
    try:
        session = open_session(graph, staging / MODEL)
    except Exception as e:  # the caller's own load reports what is wrong with the graph
        log.info("no packed copy of %s (%s)", graph, e)
        shutil.rmtree(staging, ignore_errors=True)
        return None
    try:
        for name in (MODEL, DATA):
            with open(staging / name, "rb") as f:
                os.fsync(f.fileno())
        os.rename(staging, entry.path)  # fails when another process kept its copy first
    except OSError as e:
        log.info("packed copy of %s not kept (%s)", graph, e)
        shutil.rmtree(staging, ignore_errors=True)
    return session

