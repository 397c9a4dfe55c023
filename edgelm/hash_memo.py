"""sha256 checks remembered per file identity: a folder is hashed once, not at every load.

A digest is kept under the `verified` cache folder (edgelm.caches), keyed by the file's
real path and identity: device, inode, size, modification and change times in
nanoseconds. Writing a file's bytes changes its change time (ctime), which no user can
set back, so an altered file misses the memo and is hashed again; the check stays, only
its repeated cost goes (GPT-2 124M int8: 147 MB hashed at each load, 0.14 s).

Two guards: a file changed less than SETTLE_S ago is hashed but not remembered (file
times are coarse, a few milliseconds: a write in the same tick could keep the identity),
and a memo folder that other users could write (not owned by this user, or group/world
writable) is not used. EDGELM_HASH_MEMO=0 hashes every file at every load.

The same folder keeps counts derived from a file's content, keyed by its checked sha256
(`remembered_count`): the largest token id of a tokenizer.json takes 0.1 s to find for a
151k-token vocabulary, at every load otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from edgelm.caches import private_cache

SETTLE_S = 2.0
_HEX = frozenset("0123456789abcdef")


def _folder() -> Path | None:
    """The memo folder; None when EDGELM_HASH_MEMO=0 or it is not private (edgelm.caches)."""
    return private_cache("verified", off_variable="EDGELM_HASH_MEMO")


def _key(path: Path, info: os.stat_result) -> str:
    identity = (f"{os.path.realpath(path)}\0{info.st_dev}\0{info.st_ino}\0{info.st_size}\0"
                f"{info.st_mtime_ns}\0{info.st_ctime_ns}")
    return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()


def remembered_sha256(fd: int, path: Path, compute: Callable[[], str]) -> str:
    """The sha256 of the open regular file `fd` (at `path`): remembered, else compute()."""
    folder = _folder()
    if folder is None:
        return compute()
    info = os.fstat(fd)
    entry = folder / _key(path, info)
    try:
        digest = entry.read_text(encoding="ascii").strip()
        if len(digest) == 64 and set(digest) <= _HEX:
            return digest
    except (OSError, UnicodeDecodeError):
        pass
    digest = compute()
    after = os.fstat(fd)
    settled = time.time_ns() - after.st_ctime_ns > SETTLE_S * 1e9
    if settled and (after.st_mtime_ns, after.st_ctime_ns) == (info.st_mtime_ns,
                                                               info.st_ctime_ns):
        _write(entry, digest)
    return digest


def remembered_count(name: str, sha256: str, compute: Callable[[], int]) -> int:
    """A count derived from the content whose checked sha256 is `sha256`: remembered, else
    compute(). The caller must have checked the content against the digest."""
    folder = _folder()
    if folder is None or len(sha256) != 64 or not set(sha256) <= _HEX:
        return compute()
    entry = folder / f"{name}-{sha256}"
    try:
        text = entry.read_text(encoding="ascii").strip()
        if text.isdigit() and len(text) <= 18:
            return int(text)
    except (OSError, UnicodeDecodeError):
        pass
    count = compute()
    _write(entry, str(count))
    return count


def _write(entry: Path, digest: str) -> None:
    """Write the memo entry whole or not at all (a failure only costs a later hash)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(digest)
        os.replace(tmp, entry)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
