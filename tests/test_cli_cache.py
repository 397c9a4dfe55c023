"""`edgelm cache`: lists the cache folders and clears only them (moved to temp folders here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgelm import caches
from edgelm.cli import main
from edgelm.errors import ConfigError

MB = 1_000_000


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def fill(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))  # random: no file system stores it in fewer blocks
    return path


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The caches moved into tmp_path and filled (bench inside fixtures, as EDGELM_CACHE puts
    it), plus a file beside them that is no cache's."""
    monkeypatch.setenv("EDGELM_CACHE", str(tmp_path / "edgelm"))
    monkeypatch.setenv("EDGELM_BENCH_CACHE", str(tmp_path / "bench-scripts"))
    fill(tmp_path / "edgelm" / "smollm2" / "model.safetensors", 2 * MB)
    fill(tmp_path / "edgelm" / "holdout.jsonl", 1000)
    fill(tmp_path / "edgelm" / "bench" / "gpt2-int8" / "model.onnx", MB)
    fill(tmp_path / "edgelm" / "verified" / ("0" * 64), 64)
    fill(tmp_path / "edgelm" / "packed" / ("1" * 64) / "model.onnx.data", 4 * MB)
    fill(tmp_path / "bench-scripts" / "gpt2-124m" / "model.safetensors", 3 * MB)
    fill(tmp_path / "mine.txt", 10)
    return {"fixtures": tmp_path / "edgelm", "bench": tmp_path / "edgelm" / "bench",
            "verified": tmp_path / "edgelm" / "verified", "packed": tmp_path / "edgelm" / "packed",
            "benchmarks": tmp_path / "bench-scripts", "mine": tmp_path / "mine.txt"}


def listing(output: str) -> dict[str, str]:
    """name -> its line in `edgelm cache`."""
    return {line.split()[0]: line for line in output.splitlines() if line[:1].strip()}


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_cache_lists_each_folder_its_size_and_variable(folders):
    result = invoke("cache")
    assert result.exit_code == 0, result.output
    assert result.output == invoke("cache", "list").output
    rows = listing(result.output)
    assert set(rows) == {*caches.NAMES, "total"}
    for name in caches.NAMES:
        assert rows[name].endswith(str(folders[name])), rows[name]
    # bench lies inside fixtures: counted once, under bench
    assert "2.0 MB" in rows["fixtures"] and "1.0 MB" in rows["bench"]
    assert "4.0 MB" in rows["packed"]
    assert "3.0 MB" in rows["benchmarks"] and "10.0 MB" in rows["total"]
    assert "moved by setting EDGELM_CACHE (to $EDGELM_CACHE/bench)" in result.output
    assert "moved by setting EDGELM_BENCH_CACHE" in result.output


def test_cache_path_follows_the_variables(folders, monkeypatch):
    assert caches.cache_path("bench") == folders["bench"]
    monkeypatch.delenv("EDGELM_CACHE")
    assert caches.cache_path("fixtures") == Path.home() / ".cache" / "edgelm-fixtures"
    assert caches.cache_path("bench") == Path.home() / ".cache" / "edgelm" / "bench"
    with pytest.raises(ConfigError, match="the caches are fixtures, bench, verified, packed, benchmarks"):
        caches.cache_path("hub")


def test_clear_one_cache_leaves_the_others_and_other_files(folders):
    result = invoke("cache", "clear", "fixtures", "--yes")
    assert result.exit_code == 0, result.output
    assert "cleared fixtures" in result.output
    assert files(folders["fixtures"]) == ["bench/gpt2-int8/model.onnx",
                                          f"packed/{'1' * 64}/model.onnx.data",
                                          f"verified/{'0' * 64}"]
    assert files(folders["benchmarks"]) == ["gpt2-124m/model.safetensors"]
    assert folders["mine"].is_file()


def test_clear_all_empties_every_cache_and_nothing_else(folders):
    result = invoke("cache", "clear", "--yes")
    assert result.exit_code == 0, result.output
    assert all(files(folders[name]) == [] for name in caches.NAMES)
    assert folders["mine"].is_file()


def test_clear_asks_first(folders):
    result = invoke("cache", "clear", "benchmarks", input="n\n")
    assert result.exit_code == 1 and "Empty this folder?" in result.output
    assert files(folders["benchmarks"]) == ["gpt2-124m/model.safetensors"]


def test_clear_refuses_a_path_for_a_name(folders):
    result = invoke("cache", "clear", str(folders["benchmarks"]), "--yes")
    assert result.exit_code == 2 and "is not one of 'fixtures', 'bench', 'verified', 'packed', 'benchmarks'" \
        in result.output
    assert files(folders["benchmarks"]) == ["gpt2-124m/model.safetensors"]


def test_clear_refuses_a_cache_moved_onto_a_folder_that_holds_the_current_one(
        folders, monkeypatch):
    monkeypatch.chdir(folders["benchmarks"] / "gpt2-124m")
    result = invoke("cache", "clear", "benchmarks", "--yes")
    assert result.exit_code == 1
    assert result.output.startswith("error: EDGELM_BENCH_CACHE puts the benchmarks cache at")
    assert "a parent of the current folder" in result.output
    assert files(folders["benchmarks"]) == ["gpt2-124m/model.safetensors"]
