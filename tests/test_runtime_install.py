"""`pip install .` with no extras runs an exported folder; torch is not even importable."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runtime_python(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("runtime-venv")
    venv.EnvBuilder(with_pip=True).create(home)
    python = home / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", str(ROOT)], check=True, timeout=600)
    return python


def test_runtime_only_install_runs_a_folder(runtime_python, exported, tmp_path):
    script = (
        "import importlib.util, sys, edgelm\n"
        "assert importlib.util.find_spec('torch') is None\n"
        "assert importlib.util.find_spec('transformers') is None\n"
        "print(edgelm.Pipeline(sys.argv[1], threads=1)('hello world'))\n"
    )
    done = subprocess.run([runtime_python, "-c", script, str(exported("bert-cls", "int8"))],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # cwd elsewhere: the installed copy is what runs
    assert "'label'" in done.stdout


def test_export_without_the_extra_names_it(runtime_python, tmp_path):
    done = subprocess.run([runtime_python, "-m", "edgelm", "export", str(tmp_path), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 1
    assert "pip install 'edgelm[export]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_bench_without_the_extra_compares_onnx_folders_alone(runtime_python, exported, tmp_path):
    folder = exported("bert-cls", "int8")
    done = subprocess.run([runtime_python, "-m", "edgelm", "bench", str(folder.parent), "--onnx",
                           str(folder), "--rounds", "1", "--runs", "2", "--batch-sizes", "1",
                           "--seq-lens", "8", "--threads", "1", "--json",
                           str(tmp_path / "b.json")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "PyTorch baseline skipped" in done.stdout and "'edgelm[export]'" in done.stdout
    report = json.loads((tmp_path / "b.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["edgelm int8"]
    assert report["variants"][0]["points"][0]["p50_ms"] > 0
