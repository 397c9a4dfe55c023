"""The runtime never imports torch or transformers."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys, edgelm
pipe = edgelm.Pipeline(sys.argv[1], threads=1)
print(pipe(["hello world"]))
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers', 'optimum', 'onnx'})
assert not heavy, heavy
print("torch-free")
"""


def test_pipeline_runs_without_importing_torch(exported):
    folder = exported("bert-cls", "int8")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(folder)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "torch-free" in done.stdout


def test_runtime_source_has_no_heavy_imports():
    import pathlib
    import re

    import edgelm

    root = pathlib.Path(edgelm.__file__).parent
    pattern = re.compile(r"^\s*(import|from)\s+(torch|transformers|optimum|onnx)\b", re.M)
    offenders = [p.name for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
