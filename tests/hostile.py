"""Helpers of the hostile-folder suite: tamper with a copy of an export, then load and call
it in a child process under a time and memory limit, and read back what it raised.

The child runs this interpreter (scripts/lowest_ort.sh runs the whole suite on the
lowest onnxruntime the package allows), or `EDGELM_TEST_PYTHON` when set: an interpreter
with another onnxruntime or another edgelm, to see what the same attacks do there.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgelm.manifest import MANIFEST_NAME, sha256_file

MEMORY = 2 << 30  # the child's address space: ~4x what a load and a call of these take
TIMEOUT = 60.0  # a liveness bound (the time limit the issue asks for), not a speed figure: loads
# and calls here take 1-5 s on a loaded 2-core machine; the quadratic cases took minutes

# Runs `code` with `folder`, `edgelm` and `load(**options)` defined; prints one JSON line.
CHILD = r"""
import json, sys, time
from pathlib import Path
import edgelm
folder = Path(sys.argv[1])
def load(**options):
    options.setdefault("threads", 1)
    return edgelm.Pipeline(folder, **options)
start = time.monotonic()
try:
    result = None
    exec(sys.argv[2])
    out = {"ok": repr(result)[:4000]}
except BaseException as e:
    out = {"error": type(e).__name__, "message": str(e),
           "edgelm": isinstance(e, edgelm.EdgeLMError)}
out["seconds"] = time.monotonic() - start
print("RESULT " + json.dumps(out), flush=True)
"""


@dataclass(frozen=True)
class Outcome:
    ok: str | None  # repr of `result` when the code ran through
    error: str | None  # the exception's class name
    message: str
    edgelm: bool  # the exception is an EdgeLMError
    seconds: float
    stderr: str


def python() -> str:
    return os.environ.get("EDGELM_TEST_PYTHON", sys.executable)


def _limit(memory: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return apply


def child(code: str, folder: Path | str = ".", *, timeout: float = TIMEOUT,
          memory: int = MEMORY) -> Outcome:
    """Run `code` in a fresh process limited to `memory` bytes and `timeout` seconds."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    start = time.monotonic()
    try:
        done = subprocess.run([python(), "-c", CHILD, str(folder), code], capture_output=True,
                              text=True, timeout=timeout, env=env, preexec_fn=_limit(memory))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running after {timeout:.0f} s: {code}") from None
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, (f"the child died (exit {done.returncode}, {time.monotonic() - start:.1f} s) "
                   f"without a result: {done.stderr[-2000:]}")
    data = json.loads(lines[-1][len("RESULT "):])
    return Outcome(ok=data.get("ok"), error=data.get("error"), message=data.get("message", ""),
                   edgelm=data.get("edgelm", False), seconds=data["seconds"],
                   stderr=done.stderr)


def refused(outcome: Outcome, error: str, match: str) -> Outcome:
    """Assert `outcome` is a one-line EdgeLMError of class `error` whose message matches."""
    assert outcome.error == error and outcome.edgelm, (
        f"expected {error} matching {match!r}, got {outcome.error or 'a result'}: "
        f"{outcome.message or outcome.ok} {outcome.stderr[-1500:]}")
    assert "\n" not in outcome.message.strip(), outcome.message
    assert re.search(match, outcome.message), outcome.message
    assert len(outcome.message) < 1000, outcome.message
    return outcome


def copy(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target, symlinks=True)
    return target


def read_manifest_json(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST_NAME).read_text())


def write_manifest_json(folder: Path, data: Any) -> None:
    (folder / MANIFEST_NAME).write_text(json.dumps(data))


def edit_manifest(folder: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    data = read_manifest_json(folder)
    change(data)
    write_manifest_json(folder, data)


def relist(folder: Path, *names: str, drop: tuple[str, ...] = ()) -> None:
    """List `names` with their current sha256 (following symlinks) and drop `drop`."""
    def change(data: dict[str, Any]) -> None:
        for name in drop:
            data["files"].pop(name, None)
        for name in names:
            data["files"][name] = sha256_file(folder / name)

    edit_manifest(folder, change)


def retarget_external_data(model: Path, location: str) -> None:
    """Point every external-data location of `model` (an .onnx file) at `location`."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    model.write_bytes(proto.SerializeToString())


def external_tensor(name: str, location: str, *, size: int = 16, offset: int = 0) -> Any:
    """A float TensorProto of `size` bytes whose data lies in `location`."""
    from onnx import TensorProto

    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[size // 4])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def tiny_model(*, initializers: list[Any] = (), nodes: list[Any] = (), functions: list[Any] = (),
               sparse: list[Any] = ()) -> bytes:
    """A one-input ONNX model y = x (plus whatever is given), serialized."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"]), *nodes], "tiny",
                              [x], [y], initializer=list(initializers))
    graph.sparse_initializer.extend(sparse)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every supported onnxruntime reads
    model.functions.extend(functions)
    return bytes(model.SerializeToString())


def pyproject_floor() -> str:
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    found = re.search(r'"onnxruntime>=([0-9.]+)"', text)
    assert found, "pyproject.toml has no onnxruntime>= floor"
    return found.group(1)
