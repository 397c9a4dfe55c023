"""Exports are all-or-nothing; pipelines are safe to share between threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgelm


def start_export(checkpoint: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edgelm", "export", str(checkpoint), "-o", str(out),
         "--force", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_staging(out: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not list(out.parent.glob(f".{out.name}.partial-*")):
        assert process.poll() is None, "export ended before it started writing"
        assert time.monotonic() < deadline, "export never started writing"
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_export_keeps_the_previous_folder(sig, checkpoints, exported, tmp_path):
    out = tmp_path / "model"
    previous = exported("bert-cls", "int8")
    subprocess.run(["cp", "-r", str(previous), str(out)], check=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    process = start_export(checkpoints["bert-cls"], out)
    wait_for_staging(out, process)
    process.send_signal(sig)
    process.wait(timeout=60)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    edgelm.Pipeline(out)("still works")
    if sig is signal.SIGINT:  # interrupted cleanly: nothing left beside it
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    # the next export sweeps what a killed one left, and replaces the folder whole
    process = start_export(checkpoints["bert-cls"], out)
    assert process.wait(timeout=120) == 0, process.stderr.read().decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    edgelm.Pipeline(out)("works")


def test_unwritable_output_is_one_line(checkpoints, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(edgelm.ConfigError, match="cannot write"):
        from edgelm.export import export_model

        export_model(checkpoints["bert-cls"], locked / "out")


def test_exported_files_have_the_modes_a_plain_write_gives(exported):
    """onnx writes external data owner-only; the folder must not keep that, or a copy
    served by another account (a systemd service's) could not read its weights."""
    from edgelm.export.atomic import umask_mode

    folder = exported("llama", "int4")
    assert (folder / "model.onnx.data").is_file()
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert modes == {name: umask_mode(0o666) for name in modes}


TEXTS = ["The quick brown fox.", "Café déjà vu 🙂", "short", "A longer sentence " * 20, ""]


@pytest.mark.parametrize("name", ["bert-cls", "bert-emb", "bert-ner"])
def test_one_pipeline_shared_by_8_threads(name, exported):
    import numpy as np

    pipe = edgelm.Pipeline(exported(name, "int8"), threads=1)
    jobs = [TEXTS[i % len(TEXTS):] + TEXTS[:i % len(TEXTS)] for i in range(32)]
    sequential = [pipe(texts) for texts in jobs]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(pipe, jobs))
    for a, b in zip(sequential, concurrent):
        if isinstance(a, np.ndarray):
            assert np.array_equal(a, b)
        else:
            assert a == b


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=6), st.integers(1, 3))
def test_any_unicode_batch_gives_one_valid_result_per_text(exported, texts, top_k):
    pipe = edgelm.Pipeline(exported("roberta-cls", "int8"), threads=1)
    results = pipe(texts, top_k=top_k)
    assert len(results) == len(texts)
    for result in results:
        ranked = [result] if top_k == 1 else result
        assert len(ranked) == top_k
        assert all(0.0 <= r["score"] <= 1.0 for r in ranked)
        assert {r["label"] for r in ranked} <= {"negative", "neutral", "positive"}
