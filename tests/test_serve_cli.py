"""`edgelm serve`: its options, the missing-extra error, and a real server process."""

from __future__ import annotations

import os
import sys

import pytest
from click.testing import CliRunner

from edgelm.cli import main

pytest.importorskip("uvicorn")

import httpx  # noqa: E402

from edgelm.serve.run import free_port, spawned  # noqa: E402


def test_missing_extra_names_the_install(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "edgelm.serve.run", raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = CliRunner().invoke(main, ["serve", str(tmp_path)])
    assert result.exit_code == 1
    assert "pip install 'edgelm[serve]'" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--max-batch", "0"], "max_batch=0"),
    (["--port", "70000"], "port=70000"),
    (["--name", "a", "--name", "b"], "2 --name values for 1 folders"),
    (["--name", "../x"], "model name '../x'"),
    (["--replicas", "2"], "--replicas and --ray-address need --ray"),
])
def test_bad_options_are_one_line_errors(exported, args, message):
    folder = exported("bert-emb", "fp32")
    result = CliRunner().invoke(main, ["serve", str(folder), *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_serve_command_runs_a_server(exported):
    folder = exported("bert-emb", "fp32")
    port = free_port()
    env = {**os.environ, "EDGELM_API_KEY": "k"}
    command = [sys.executable, "-m", "edgelm", "serve", str(folder), "--port", str(port),
               "--threads", "1", "--name", "emb"]
    with spawned(command, port, env=env) as url:
        assert httpx.get(f"{url}/v1/models", timeout=5).status_code == 401
        reply = httpx.post(f"{url}/v1/embeddings", json={"model": "emb", "input": "hi"},
                           headers={"Authorization": "Bearer k"}, timeout=30)
        assert reply.status_code == 200 and len(reply.json()["data"][0]["embedding"]) > 0
