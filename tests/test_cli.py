"""The CLI through click's CliRunner: happy paths and one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgelm import __version__
from edgelm.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_version_and_help():
    assert __version__ in invoke("--version").output
    for command in ([], ["export"], ["run"], ["info"]):
        result = invoke(*command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_export_info_run(checkpoints, tmp_path):
    out = tmp_path / "cls"
    result = invoke("export", checkpoints["bert-cls"], "-o", out, "--precision", "int8", "-q")
    assert result.exit_code == 0, result.output
    info = invoke("info", out, "--json")
    assert json.loads(info.output)["fused_ops"]["QAttention"] == 2
    ran = invoke("run", out, "hello world", "the lazy dog", "--json", "--threads", "1")
    results = json.loads(ran.output)
    assert len(results) == 2
    assert {r["label"] for r in results} <= {"negative", "neutral", "positive"}


def test_export_refuses_existing_output_without_force(checkpoints, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = invoke("export", checkpoints["bert-cls"], "-o", out)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "--force" in result.output
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "file.txt").write_text("x") and p / "file.txt", "is a file"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no config.json"),
    ],
)
def test_export_bad_model_dir_is_one_line(make, message, tmp_path):
    result = invoke("export", make(tmp_path), "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output.startswith("error:") and message in result.output
    assert "Traceback" not in result.output


def test_run_on_a_folder_without_manifest(tmp_path):
    result = invoke("run", tmp_path, "hi")
    assert result.exit_code == 1 and "no edgelm.json" in result.output


def test_debug_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(main, ["--debug", "run", str(tmp_path), "hi"])
    assert result.exception is not None
