"""onnxruntime's packed weights kept on disk per folder, onnxruntime and CPU
(edgelm.packed_cache): same results, written whole, never reused for another CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import edgelm
import edgelm.session
from edgelm import packed_cache

PROMPTS = ["The quick brown fox", "Edge devices run"]


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """The packed cache on, in a folder of its own; returns that folder."""
    monkeypatch.setenv("EDGELM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGELM_PACKED_CACHE", "1")
    return tmp_path / "cache" / "packed"


@pytest.fixture()
def opened(monkeypatch) -> list[str]:
    """The graph paths onnxruntime sessions are created from, in order."""
    paths: list[str] = []
    real = ort.InferenceSession

    def recording(path, *args, **kwargs):
        paths.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(edgelm.session.ort, "InferenceSession", recording)
    return paths


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if not p.name.startswith(".")) \
        if cache.is_dir() else []


def greedy(folder: Path, **kwargs) -> list[str]:
    pipe = edgelm.Pipeline(folder, threads=1, **kwargs)
    return [o[0]["generated_text"] for o in pipe(PROMPTS, max_new_tokens=12)]


def test_a_packed_copy_is_written_once_then_loaded_with_the_same_tokens(exported, cache,
                                                                          opened):
    folder = exported("gpt2", "int8")
    plain = greedy(folder, packed_cache=False)
    assert entries(cache) == []
    assert greedy(folder, packed_cache=True) == plain  # writes the entry
    [entry] = entries(cache)
    assert sorted(p.name for p in entry.iterdir()) == [packed_cache.MODEL, packed_cache.DATA]
    assert (entry.stat().st_mode & 0o077) == 0 or (cache.stat().st_mode & 0o077) == 0
    opened.clear()
    assert greedy(folder, packed_cache=True) == plain  # maps it
    assert opened[0] == str(entry / packed_cache.MODEL)
    assert entries(cache) == [entry]


def test_int8_encoders_give_the_same_logits_from_the_packed_copy(exported, cache):
    folder = exported("bert-cls", "int8")
    texts = ["a short text", "another, somewhat longer text to classify"]
    plain = edgelm.Pipeline(folder, threads=1, packed_cache=False)(texts, top_k=3, function_to_apply="none")
    for _ in range(2):  # the load that writes, and the one that maps
        packed = edgelm.Pipeline(folder, threads=1, packed_cache=True)(texts, top_k=3, function_to_apply="none")
        assert packed == plain
    assert len(entries(cache)) == 1


def test_another_cpu_or_onnxruntime_gets_an_entry_of_its_own(exported, cache, monkeypatch):
    """A packed layout is only valid for the instruction sets it was packed for."""
    folder = exported("gpt2", "int8")
    greedy(folder, packed_cache=True)
    flags = packed_cache.cpu_flags()
    monkeypatch.setattr(packed_cache, "cpu_flags", lambda: f"{flags} amx_int8")
    greedy(folder, packed_cache=True)
    monkeypatch.setattr(packed_cache.ort, "__version__", "0.0.1")
    greedy(folder, packed_cache=True)
    assert len(entries(cache)) == 3


def test_no_entry_where_the_cpu_flags_cannot_be_read(exported, cache, monkeypatch):
    monkeypatch.setattr(packed_cache, "cpu_flags", lambda: None)
    greedy(exported("gpt2", "int8"), packed_cache=True)
    assert entries(cache) == []


def test_a_damaged_entry_is_dropped_and_the_folder_loaded_as_usual(exported, cache):
    folder = exported("gpt2", "int8")
    plain = greedy(folder, packed_cache=False)
    greedy(folder, packed_cache=True)
    [entry] = entries(cache)
    data = entry / packed_cache.DATA
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert greedy(folder, packed_cache=True) == plain
    assert not entry.exists()
    assert greedy(folder, packed_cache=True) == plain  # written again
    assert entries(cache) == [entry]


def test_a_failed_write_leaves_nothing_behind(exported, cache, monkeypatch):
    folder = exported("gpt2", "int8")
    plain = greedy(folder, packed_cache=False)
    monkeypatch.setitem(packed_cache.SAVE_CONFIG,  # onnxruntime refuses it: the load fails
                        "session.optimized_model_external_initializers_min_size_in_bytes",
                        "many")
    assert greedy(folder, packed_cache=True) == plain
    assert list(cache.iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setenv("EDGELM_CACHE", str(cache.parent))
    monkeypatch.setenv("EDGELM_PACKED_CACHE", "1")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(packed_cache.os, "fsync", full)  # written, but not kept
    assert greedy(folder, packed_cache=True) == plain
    assert list(cache.iterdir()) == []


def test_staging_left_by_a_dead_write_is_removed(exported, cache):
    """A writer killed mid-write leaves its staging folder; the next write sweeps it
    (edgelm.staging, as the export does), and leaves a live writer's alone."""
    folder = exported("gpt2", "int8")
    greedy(folder, packed_cache=True)
    [entry] = entries(cache)
    shutil.rmtree(entry)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = cache / f".{entry.name}.partial-{dead}-x"
    fresh = cache / f".{entry.name}.partial-{os.getpid()}-y"
    for staging in (stale, fresh):
        staging.mkdir()
        (staging / packed_cache.DATA).write_bytes(b"half")
    greedy(folder, packed_cache=True)
    assert not stale.exists() and fresh.exists()
    assert entries(cache) == [entry]


def test_too_little_free_disk_writes_nothing(exported, cache, monkeypatch):
    monkeypatch.setattr(packed_cache, "FREE_SPACE_FACTOR", 1 << 50)
    greedy(exported("gpt2", "int8"), packed_cache=True)
    assert entries(cache) == []


def test_the_entries_loaded_least_recently_make_room_first(cache, monkeypatch):
    cache.mkdir(parents=True)

    def entry(letter: str, size: int, last_used: int) -> Path:
        path = cache / (letter * 64)
        path.mkdir()
        (path / packed_cache.DATA).write_bytes(b"w" * size)
        os.utime(path, (last_used, last_used))
        return path

    old, middle, recent = entry("a", 400, 1000), entry("b", 400, 2000), entry("c", 400, 3000)
    note, staging = cache / "notes.txt", cache / f".{'d' * 64}.partial-{os.getpid()}-x"
    note.write_text("not an entry")
    staging.mkdir()
    monkeypatch.setenv("EDGELM_PACKED_CACHE_GB", "1.5e-6")  # 1,500 bytes
    new = packed_cache.PackedEntry(cache / ("d" * 64))
    assert packed_cache.make_room(new, 600)  # 1,200 + 600 held: the oldest goes
    assert [old.exists(), middle.exists(), recent.exists()] == [False, True, True]
    assert not packed_cache.make_room(new, 2000)  # could never fit: nothing removed
    assert middle.exists() and recent.exists()
    assert packed_cache.make_room(new, 1400)  # needs the other two's room
    assert not middle.exists() and not recent.exists()
    assert note.exists() and staging.exists()


def test_a_load_marks_its_entry_used_and_the_budget_bounds_what_is_written(exported, cache,
                                                                           monkeypatch):
    folder = exported("gpt2", "int8")
    plain = greedy(folder, packed_cache=False)
    greedy(folder, packed_cache=True)
    [entry] = entries(cache)
    os.utime(entry, (1, 1))  # as if last loaded in 1970
    assert greedy(folder, packed_cache=True) == plain
    assert entry.stat().st_mtime > 1
    shutil.rmtree(entry)
    monkeypatch.setenv("EDGELM_PACKED_CACHE_GB", "0")  # no entry fits
    assert greedy(folder, packed_cache=True) == plain
    assert entries(cache) == []
    monkeypatch.setenv("EDGELM_PACKED_CACHE_GB", "lots")
    with pytest.raises(edgelm.errors.ConfigError, match="EDGELM_PACKED_CACHE_GB='lots' must be"):
        edgelm.Pipeline(folder, packed_cache=True)


def test_trusted_folders_are_not_cached(exported, cache, tmp_path):
    """trust_folder skips the sha256 checks, so the manifest cannot name the files' content."""
    copy = tmp_path / "copy"
    shutil.copytree(exported("gpt2", "int8"), copy)
    greedy(copy, packed_cache=True, trust_folder=True)
    assert entries(cache) == []


def test_board_and_phone_exports_use_it_by_default(exported, cache):
    greedy(exported("gpt2", "int8", target="cpu"))
    assert entries(cache) == []
    greedy(exported("gpt2", "int8", target="rpi4"))
    assert len(entries(cache)) == 1
    with pytest.raises(edgelm.errors.ConfigError, match="packed_cache"):
        edgelm.Pipeline(exported("gpt2", "int8"), packed_cache="yes")


def test_the_switch_turns_it_off(exported, cache, monkeypatch):
    monkeypatch.setenv("EDGELM_PACKED_CACHE", "0")
    greedy(exported("gpt2", "int8"), packed_cache=True)
    assert not cache.exists()


def test_seq2seq_encoders_and_decoders_both_get_entries(exported, cache):
    folder = exported("t5", "int8")
    texts = ["translate this", "and this one"]
    plain = edgelm.Pipeline(folder, threads=1)(texts, max_new_tokens=8)
    for _ in range(2):
        assert edgelm.Pipeline(folder, threads=1, packed_cache=True)(
            texts, max_new_tokens=8) == plain
    assert len(entries(cache)) == 2
    assert np.all([e.is_dir() for e in entries(cache)])


def test_the_cli_turns_it_on_and_off(exported, cache):
    from click.testing import CliRunner

    from edgelm.cli import main

    def generate(folder: Path, *flags: str) -> str:
        result = CliRunner().invoke(main, ["generate", str(folder), "Edge devices run",
                                           "--max-new-tokens", "4", "--no-stream", *flags],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    plain = generate(exported("gpt2", "int8", target="rpi4"), "--no-packed-cache")
    assert entries(cache) == []
    assert generate(exported("gpt2", "int8"), "--packed-cache") == plain
    assert len(entries(cache)) == 1


def test_serve_keeps_packed_weights_unless_told_not_to(exported, cache):
    """Servers are long-lived: edgelm serve loads through the cache by default."""
    pytest.importorskip("starlette")
    from edgelm.serve.metrics import Metrics
    from edgelm.serve.models import load_models
    from edgelm.serve.options import ServeOptions

    folder = exported("gpt2", "int8")
    load_models([folder], ServeOptions(packed_cache=False), Metrics())
    assert entries(cache) == []
    load_models([folder], ServeOptions(), Metrics())
    assert len(entries(cache)) == 1
