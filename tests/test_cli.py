"""The CLI through click's CliRunner: happy paths and one-line errors."""

from __future__ import annotations

import io
import json
import re
import sys

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


# --- the rough edges a new user hit -------------------------------------------------------

STEP_LINE = re.compile(r"^\[\s*\d+\.\d s\] (.+)$")


def test_export_prints_one_stamped_line_per_step_when_not_a_terminal(checkpoints, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the summary table unwrapped
    out = tmp_path / "cls"
    result = CliRunner().invoke(main, ["export", str(checkpoints["bert-cls"]), "-o", str(out),
                                       "--precision", "int8"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    steps = [m.group(1) for m in map(STEP_LINE.match, result.stderr.splitlines()) if m]
    assert [s.split()[0] for s in steps] == [
        "loading", "exporting", "fusing", "quantizing", "validating", "writing", "wrote"]
    assert "0/None" not in result.output
    assert "expected" in result.stderr and "agreement or cosine close to 1" in result.stderr


def test_int4_summary_says_what_to_expect_and_where_to_read_more(exported, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    result = invoke("info", exported("gpt2", "int4"))
    assert result.exit_code == 0, result.output
    assert "greedy-token agreement" in result.output
    assert "greedy agreement around 0.7 is normal for small models" in result.output
    assert "README: Decoding performance and quality" in result.output
    assert "edgelm bench" in result.output


def test_steps_on_a_terminal_show_each_step_with_its_time(monkeypatch):
    from edgelm.cli import _Steps

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with _Steps() as steps:
        steps("loading the checkpoint")
        steps("validating [against] PyTorch")
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.getvalue())  # colours, cursor
    assert "loading the checkpoint" in shown and "validating [against] PyTorch" in shown
    assert re.search(r"✓ loading the checkpoint\s+\d+\.\d s", shown)


def test_help_lists_every_command_with_its_whole_short_help():
    listed = " ".join(invoke("--help").output.split("Commands:")[1].split())
    for name, command in main.commands.items():
        assert command.short_help, name
        assert f"{name} {command.short_help}" in listed
    assert "..." not in listed  # click's mark of a cut description


CHAT = ["--max-new-tokens", "6", "--threads", "1"]
TURNS = ["hello", "the lazy dog"]


def expected_replies(folder) -> list[str]:
    """What the pipeline replies to TURNS, one after the other, with CHAT's options."""
    from edgelm.pipelines import TextGenerationPipeline

    pipe, messages, replies = TextGenerationPipeline(folder, threads=1), [], []
    for turn in TURNS:
        messages.append({"role": "user", "content": turn})
        replies.append(pipe.chat(messages, max_new_tokens=6))
        messages.append({"role": "assistant", "content": replies[-1]})
    return replies


def chat_with_spy(monkeypatch, folder, *options: str):
    """Run `edgelm chat` on TURNS; returns the result and the `stream` of each pipe.chat."""
    from edgelm.pipelines import TextGenerationPipeline

    streamed: list[bool] = []
    real = TextGenerationPipeline.chat

    def spy(self, messages, /, *, stream=False, **kwargs):
        streamed.append(stream)
        return real(self, messages, stream=stream, **kwargs)

    monkeypatch.setattr(TextGenerationPipeline, "chat", spy)
    result = CliRunner().invoke(main, ["chat", str(folder), *CHAT, *options],
                                input="\n".join(TURNS) + "\n\n", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result, streamed


@pytest.mark.parametrize("options, streams", [((), True), (("--no-stream",), False)])
def test_chat_streams_by_default_and_no_stream_prints_whole_replies(exported, monkeypatch,
                                                                    options, streams):
    folder = exported("gpt2")
    result, streamed = chat_with_spy(monkeypatch, folder, *options)
    assert streamed == [streams] * len(TURNS)
    for reply in expected_replies(folder):
        assert f"assistant> {reply}\n" in result.stdout


def test_chat_json_prints_one_object_per_reply_on_stdout(exported, monkeypatch):
    folder = exported("gpt2")
    result, streamed = chat_with_spy(monkeypatch, folder, "--json")
    assert streamed == [False] * len(TURNS)
    lines = result.stdout.splitlines()
    assert [json.loads(line) for line in lines] == [
        {"role": "assistant", "content": reply} for reply in expected_replies(folder)]
    assert "you> " in result.stderr


@pytest.mark.parametrize("command", [["chat"], ["generate", "hi"]])
def test_explicit_stream_with_json_is_refused(exported, command):
    result = CliRunner().invoke(main, [command[0], str(exported("gpt2")), *command[1:],
                                       "--stream", "--json"])
    assert result.exit_code == 2 and "--json prints whole texts" in result.output
