"""Opening a file of an untrusted folder: confined to it, regular, capped in size, hashed.

`confine` is the one place a relative path from a folder (a manifest entry, an
external-data location) becomes a path on disk: it refuses absolute paths, `..`,
backslashes and NUL, then resolves symlinks and refuses anything that lands outside
the folder. Files are opened without following a final symlink and without blocking
(a FIFO would otherwise wait for a writer for ever), and only regular files are read.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from pathlib import Path
from typing import Any

from edgelm.errors import ModelFolderError
from edgelm.hash_memo import remembered_sha256

CHUNK = 1 << 20


def normalize(relative: Any, what: str = "manifest path") -> str:
    """`relative` as a plain POSIX path inside a folder, or a one-line ModelFolderError."""
    if not isinstance(relative, str) or not relative or len(relative) > 4096:
        raise ModelFolderError(f"{what} {relative!r} must be a non-empty relative path")
    bad = next((c for c in ("\0", "\\") if c in relative), None)
    if bad or relative.startswith("/") or (len(relative) > 1 and relative[1] == ":"):
        raise ModelFolderError(f"{what} {relative!r} is not a relative path inside the folder "
                               "(absolute, drive letter, backslash or NUL)")
    parts = relative.split("/")
    if ".." in parts:
        raise ModelFolderError(f"{what} {relative!r} points outside the folder ('..')")
    return posixpath.normpath(relative)


def confine(root: Path, relative: str, what: str = "manifest path") -> Path:
    """The real path of `relative` in the resolved folder `root`, symlinks resolved."""
    name = normalize(relative, what)
    try:
        path = (root / name).resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
        raise ModelFolderError(f"{what} {relative!r} cannot be resolved ({e})") from e
    if not path.is_relative_to(root):
        raise ModelFolderError(f"{what} {relative!r} points outside {root} (to {path})")
    return path


def open_regular(path: Path, *, cap: int, label: str) -> tuple[int, int]:
    """An open descriptor of the regular file `path` and its size, at most `cap` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ModelFolderError(f"{label} is missing") from None
    except OSError as e:
        raise ModelFolderError(f"{label} cannot be opened ({e.strerror})") from e
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ModelFolderError(f"{label} is not a regular file (a FIFO, device or folder)")
    if info.st_size > cap:
        os.close(fd)
        raise ModelFolderError(f"{label} is {info.st_size} bytes, over the {cap}-byte limit "
                               "for this kind of file")
    return fd, info.st_size


def regular_size(path: Path, *, cap: int, label: str) -> int:
    """The size of the regular file `path`, refusing anything else or past `cap` bytes."""
    fd, size = open_regular(path, cap=cap, label=label)
    os.close(fd)
    return size


def read_capped(path: Path, *, cap: int, label: str) -> bytes:
    """The whole regular file, refusing it past `cap` bytes (even if it grows meanwhile)."""
    fd, _ = open_regular(path, cap=cap, label=label)
    chunks, total = [], 0
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(CHUNK):
            total += len(chunk)
            if total > cap:
                raise ModelFolderError(f"{label} grew past the {cap}-byte limit while being read")
            chunks.append(chunk)
    return b"".join(chunks)


def sha256_regular(path: Path, *, cap: int, label: str) -> str:
    """The sha256 of the regular file `path` (at most `cap` bytes), read in 1 MiB chunks,
    unless this file, unchanged since, was hashed before (edgelm.hash_memo)."""
    fd, _ = open_regular(path, cap=cap, label=label)
    with os.fdopen(fd, "rb") as f:
        def compute() -> str:
            digest = hashlib.sha256()
            for chunk in iter(lambda: f.read(CHUNK), b""):
                digest.update(chunk)
            return digest.hexdigest()

        return remembered_sha256(fd, path, compute)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
