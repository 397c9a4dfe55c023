"""Write a folder so that it appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from edgelm.errors import ConfigError, ExportError
from edgelm.staging import staging_folder, sweep_abandoned


def check_target(target: Path, *, force: bool) -> None:
    """Refuse an existing target without force, and an unwritable parent."""
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; pass --force to replace it")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} is a file; choose a folder path for the export")
    parent = target.parent if target.parent != Path("") else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write to {parent}; choose another --output folder")


@contextlib.contextmanager
def atomic_folder(target: Path, *, force: bool) -> Iterator[Path]:
    """Yield a staging folder beside target; rename it into place only on success.

    An exception or an interrupt leaves any previous target untouched and
    removes the staging folder.
    """
    check_target(target, force=force)
    sweep_abandoned(target)
    staging = staging_folder(target)
    try:
        yield staging
        os.chmod(staging, umask_mode(0o777))  # mkdtemp made it private (0o700)
        for path in staging.iterdir():
            # onnx writes external data owner-only (0o600): a folder copied to a service
            # account could not load its weights
            if path.is_file() and not path.is_symlink():
                os.chmod(path, umask_mode(0o666))
        _replace(staging, target)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"could not write {target} ({e.strerror or e}); "
                          "free disk space or choose another folder") from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def umask_mode(base: int) -> int:
    """base (0o666 or 0o777) less the process umask: what a plain open or mkdir would give."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def _replace(staging: Path, target: Path) -> None:
    """Move staging to target; an old target is renamed aside first, then removed."""
    if not target.exists():
        os.rename(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / target.name)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)
