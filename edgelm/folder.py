"""An exported folder as the runtime opens it: every file goes through `ModelFolder.path`.

A folder is untrusted unless its user says otherwise. Each file the runtime opens (the
graphs, the external data of each of their tensors, tokenizer.json, the tokenizer
config, the chat template) must be listed in the manifest's `files` with its sha256,
resolve inside the folder once symlinks are followed, be a regular file and stay under
its kind's size cap (edgelm/limits.py). Every listed file's sha256 is checked at load
and small files are hashed again as they are read. External-data locations are checked
here, whatever the onnxruntime version does.

`trust_folder=True` relaxes exactly these file checks: listing, sha256, size caps and
confinement (paths and symlinks may leave the folder). The manifest's fields, the
graph-against-manifest checks, the input bounds and the template sandbox stay.
"""

from __future__ import annotations

import json
import logging
import posixpath
from enum import Enum
from pathlib import Path

from edgelm.errors import ConfigError, ModelFolderError
from edgelm.files import (
    confine,
    normalize,
    read_capped,
    regular_size,
    sha256_bytes,
    sha256_regular,
)
from edgelm.limits import LIMITS
from edgelm.manifest import MANIFEST_NAME, Manifest, read_manifest, verify_files
from edgelm.onnx_wire import ExternalRef, GraphFacts, read_graph_facts

log = logging.getLogger(__name__)

UNLIMITED = 1 << 62


class Kind(str, Enum):
    """What a file is, which sets its size cap."""

    GRAPH = "graph"
    WEIGHTS = "external data"
    TOKENIZER = "tokenizer"
    CONFIG = "config"
    TEMPLATE = "chat template"

    def cap(self) -> int:
        return {Kind.GRAPH: LIMITS.graph_bytes, Kind.WEIGHTS: LIMITS.weights_bytes,
                Kind.TOKENIZER: LIMITS.tokenizer_bytes, Kind.CONFIG: LIMITS.config_bytes,
                Kind.TEMPLATE: LIMITS.template_bytes}[self]


class ModelFolder:
    """A folder's manifest, checked files, and the one way to open them."""

    def __init__(self, folder: str | Path, *, trust_folder: bool = False,
                 verify_all: bool = True) -> None:
        """verify_all: hash every listed file now; otherwise each file is hashed when it is
        first opened (graphs, external data) or read (the rest)."""
        if not isinstance(trust_folder, bool):
            raise ConfigError(f"trust_folder={trust_folder!r} must be True or False")
        self.folder = Path(folder)
        self.trusted = trust_folder
        self.manifest: Manifest = read_manifest(self.folder, verify=False)
        self.root = self.folder.resolve()
        self._hashed: set[str] = set()
        if trust_folder:
            log.warning("trust_folder=True: the files of %s are opened without the listing, "
                        "sha256, size and stay-inside-the-folder checks", self.folder)
        elif verify_all:
            verify_files(self.folder, self.manifest)
            self._hashed.update(self.manifest.files)

    def path(self, relative: str, kind: Kind) -> Path:
        """The checked path of a file the runtime is about to open."""
        if self.trusted:
            return self.folder / relative
        name = normalize(relative)
        if name not in self.manifest.files:
            raise ModelFolderError(
                f"{self.folder}: {name} ({kind.value}) is not listed with its sha256 in "
                f"{MANIFEST_NAME}; export the model again with this edgelm (or pass "
                "trust_folder=True if you trust the folder)")
        path, label = confine(self.root, name), f"{self.folder / name} ({kind.value})"
        regular_size(path, cap=kind.cap(), label=label)
        if kind in (Kind.GRAPH, Kind.WEIGHTS) and name not in self._hashed:
            self._check_sha256(name, sha256_regular(path, cap=kind.cap(), label=label))
            self._hashed.add(name)
        return path

    def identity(self) -> str | None:
        """A digest of every listed file's sha256, once all were checked; None before, and
        for a trusted folder (its files may no longer match the manifest)."""
        files = self.manifest.files
        if self.trusted or not self._hashed >= set(files):
            return None
        return sha256_bytes(json.dumps(sorted(files.items())).encode())

    def _check_sha256(self, name: str, actual: str) -> None:
        if actual != self.manifest.files[name]:
            raise ModelFolderError(f"{self.folder}: {name} does not match its sha256 (altered "
                                   "or truncated); export the model again")

    def _data_file_size(self, name: str, what: str, location: str) -> int | str:
        """The size of the external data file `name`, or why it may not be read."""
        if name not in self.manifest.files:
            return f"{what} ({location!r}) is not a file listed in {MANIFEST_NAME}"
        try:  # path() confines it, and checks it is regular, under its cap and unaltered
            return self.path(name, Kind.WEIGHTS).stat().st_size
        except ModelFolderError as e:
            return f"{what}: {e}"
        except OSError as e:
            return f"{what} ({name}) cannot be read: {e.strerror}"

    def present(self, relative: str) -> bool:
        """Whether the folder has this file, or its manifest lists it."""
        name = normalize(relative)
        there = self.folder / name
        return name in self.manifest.files or there.exists() or there.is_symlink()

    def read_bytes(self, relative: str, kind: Kind) -> bytes:
        """The file's bytes, checked against its sha256 as read (not only at load)."""
        path = self.path(relative, kind)
        name = relative if self.trusted else normalize(relative)
        data = read_capped(path, cap=UNLIMITED if self.trusted else kind.cap(),
                           label=f"{self.folder / name} ({kind.value})")
        if not self.trusted:
            self._check_sha256(name, sha256_bytes(data))
        return data

    def read_text(self, relative: str, kind: Kind) -> str:
        data = self.read_bytes(relative, kind)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ModelFolderError(f"{self.folder / relative} is not UTF-8 text ({e.reason} at "
                                   f"byte {e.start}); export the model again") from None

    def optional_text(self, relative: str, kind: Kind) -> str | None:
        """The text of an optional file; None when it is neither listed nor in the folder."""
        return self.read_text(relative, kind) if self.present(relative) else None

    def graph(self, relative: str) -> tuple[Path, GraphFacts]:
        """A graph's checked path, and what its protobuf says (its external data checked)."""
        path = self.path(relative, Kind.GRAPH)
        facts = read_graph_facts(path, max_fields=LIMITS.graph_fields,
                                 max_depth=LIMITS.graph_depth, label=str(self.folder / relative))
        if not self.trusted:
            base = path.relative_to(self.root).parent.as_posix()  # onnxruntime's base folder
            sizes: dict[str, int | str] = {}  # each data file checked once, not per tensor
            problems = list(dict.fromkeys(p for ref in facts.external
                                          if (p := self._external_problem(base, ref, sizes))))
            if problems:
                shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)"
                                                   if len(problems) > 3 else "")
                raise ModelFolderError(f"{self.folder / relative}: {shown}; export the model "
                                       "again (or pass trust_folder=True if you trust it)")
        return path, facts

    def _external_problem(self, base: str, ref: ExternalRef, sizes: dict[str, int | str]
                          ) -> str | None:
        """Why the external data of one tensor may not be read, or None. `sizes` keeps each
        data file's size, or why it may not be read, across the tensors of one graph."""
        what = f"the external data of tensor {ref.tensor!r}"
        if ref.location is None:
            return f"{what} has no location"
        try:
            name = posixpath.normpath(posixpath.join(base, normalize(ref.location, what)))
        except ModelFolderError as e:
            return str(e)
        if name not in sizes:
            sizes[name] = self._data_file_size(name, what, ref.location)
        size = sizes[name]
        if isinstance(size, str):
            return size
        numbers = [v for v in (ref.offset, ref.length) if v is not None]
        if not all(v.isascii() and v.isdigit() for v in numbers):
            return f"{what} has a non-numeric offset or length ({ref.offset!r}, {ref.length!r})"
        offset = int(ref.offset or 0)
        if offset + int(ref.length or 0) > size:
            return f"{what} runs past the end of {name} ({size} bytes)"
        return None

