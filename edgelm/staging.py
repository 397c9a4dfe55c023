"""Folders that appear whole or not at all: written in a staging folder beside their
target, named for the writing process, then renamed into place. Used by the export
(edgelm.export.atomic) and by the packed-weights cache (edgelm.packed_cache)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def staging_folder(target: Path) -> Path:
    """A new private folder beside `target`, named for this process, to rename into place."""
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-",
                                 dir=target.parent))


def sweep_abandoned(target: Path) -> None:
    """Remove staging folders of target left by writers that were killed (their pid is gone)."""
    for stale in target.parent.glob(f".{target.name}.partial-*"):
        pid = stale.name.rsplit(".partial-", 1)[1].split("-", 1)[0]
        if stale.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        pass
    return True
