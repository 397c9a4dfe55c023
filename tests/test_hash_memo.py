"""A folder's sha256 checks, remembered per file identity: hashed once, still caught when
altered (edgelm.hash_memo)."""

from __future__ import annotations

import os
import shutil
import time

import pytest

import edgelm
import edgelm.caches
import edgelm.files
import edgelm.hash_memo
from edgelm.errors import ModelFolderError


@pytest.fixture()
def folder(exported, tmp_path, monkeypatch):
    """A private copy of an export (it gets altered), with its own memo folder."""
    copy = tmp_path / "model"
    shutil.copytree(exported("bert-cls", "fp32"), copy)
    monkeypatch.setenv("EDGELM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(edgelm.hash_memo, "SETTLE_S", 0.0)  # the copy was just written
    return copy


@pytest.fixture()
def hashed(monkeypatch):
    """The names of the files sha256_regular hashed (those it did not remember)."""
    seen: list[str] = []
    real = edgelm.files.remembered_sha256

    def counting(fd, path, compute):
        def counted():
            seen.append(path.name)
            return compute()
        return real(fd, path, counted)

    monkeypatch.setattr(edgelm.files, "remembered_sha256", counting)
    return seen


def memo_entries(prefix: str = "") -> list[str]:
    """The memo's file digests (named by a file identity's sha256), or its entries named
    `prefix`-<content sha256>."""
    folder = edgelm.caches.cache_path("verified")
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return [n for n in names if (n.startswith(prefix) if prefix else len(n) == 64)]


def test_the_tokenizers_largest_id_is_found_once_per_content(folder, monkeypatch):
    import edgelm.pipelines.base as base

    found: list[int] = []
    real = base.id_bound
    monkeypatch.setattr(base, "id_bound", lambda t: found.append(real(t)) or found[-1])
    first = edgelm.Pipeline(folder, threads=1)("I loved it")
    [entry] = memo_entries("id-bound-")
    digest = entry.removeprefix("id-bound-")
    assert digest == edgelm.files.sha256_bytes((folder / "tokenizer.json").read_bytes())
    assert edgelm.Pipeline(folder, threads=1)("I loved it") == first
    assert len(found) == 1  # remembered by the tokenizer's checked sha256
    # A planted count for that content is what the next load believes: the memo folder is
    # private to this user, as for the digests.
    (edgelm.caches.cache_path("verified") / entry).write_text("1000000000")
    with pytest.raises(ModelFolderError, match="the tokenizer has ids up to 999999999"):
        edgelm.Pipeline(folder, threads=1)


def test_a_folder_is_hashed_once(folder, hashed):
    first = edgelm.Pipeline(folder, threads=1)("I loved it")
    assert "model.onnx" in hashed and len(memo_entries()) == len(hashed)
    hashed.clear()
    assert edgelm.Pipeline(folder, threads=1)("I loved it") == first
    assert hashed == []  # every file remembered


def test_an_altered_file_is_still_caught(folder, hashed):
    edgelm.Pipeline(folder, threads=1)
    time.sleep(0.05)  # past the file clock's tick: the write gets a later change time
    graph = folder / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 1  # one bit, same size, same path and inode
    with open(graph, "r+b") as f:
        f.write(data)
    with pytest.raises(ModelFolderError, match="does not match its sha256"):
        edgelm.Pipeline(folder, threads=1)


def test_a_just_changed_file_is_not_remembered(folder, hashed, monkeypatch):
    monkeypatch.setattr(edgelm.hash_memo, "SETTLE_S", 3600.0)
    edgelm.Pipeline(folder, threads=1)
    assert memo_entries() == []


@pytest.mark.parametrize("how", ["shared folder", "switched off"])
def test_no_memo_where_it_is_not_safe_or_wanted(folder, hashed, monkeypatch, how):
    memo = edgelm.caches.cache_path("verified")
    if how == "shared folder":
        memo.mkdir(parents=True)
        os.chmod(memo, 0o777)  # another user could plant digests: not used
    else:
        monkeypatch.setenv("EDGELM_HASH_MEMO", "0")
    edgelm.Pipeline(folder, threads=1)
    assert memo_entries() == []
    hashed.clear()
    edgelm.Pipeline(folder, threads=1)
    assert "model.onnx" in hashed  # hashed again
