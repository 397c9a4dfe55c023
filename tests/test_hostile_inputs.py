"""Small inputs cannot cost a lot, and bad ones are one line: huge texts are cut before
they are tokenized, stop strings match in linear time, thread counts and batch sizes
are capped, chat templates run under time, output and work limits (README: Threat
model). Each call runs in a child process under a time and memory limit."""

from __future__ import annotations

import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgelm.generation.streaming import StopMatcher
from tests.hostile import MEMORY, child, copy, python, refused, relist


@pytest.fixture(scope="module")
def bert(exported):
    return exported("bert-cls", "int8")


@pytest.fixture(scope="module")
def gpt2(exported):
    return exported("gpt2", "fp32")


HUGE = "'word ' * 6_000_000"  # 30 MB of text, as Python source for the child


def test_a_huge_text_to_a_classifier_is_cut_before_tokenizing(bert):
    """It took 6 GB and 42 s (tokenized whole, then truncated); under a memory limit the
    process was killed by a signal."""
    outcome = child(f"result = load()({HUGE})", bert)
    assert outcome.ok and "'truncated': True" in outcome.ok, outcome


def test_a_huge_prompt_and_chat_message_keep_their_tail(gpt2):
    outcome = child(f"result = load()({HUGE}, max_new_tokens=4)", gpt2)
    assert outcome.ok and "generated_text" in outcome.ok, outcome
    assert "cut to its last" in outcome.stderr
    outcome = child(f"result = load().chat([{{'role': 'user', 'content': {HUGE}}}], "
                    "max_new_tokens=4)", gpt2)
    assert outcome.ok is not None, outcome


def test_long_stop_strings_cost_linear_time(gpt2):
    """A 1 MB stop took 45 s for 4 tokens (the hold-back search was quadratic)."""
    outcome = child("p = load()\n"
                    "plain = ''.join(p.stream('hello', max_new_tokens=16))\n"
                    "stopped = ''.join(p.stream('hello', max_new_tokens=16, "
                    "stop=['ab' * 16_000, 'x' * 32_000]))\n"
                    "result = plain == stopped", gpt2)
    assert outcome.ok == "True", outcome
    refused(child("result = load()('hi', stop='x' * (1 << 20))", gpt2), "ConfigError",
            r"stop has 1 strings of 1048576 characters in all; at most 64 strings of 65536")


@pytest.mark.parametrize(("code", "message"), [
    ("load(threads=10_000)", r"threads=10000 must be an integer from 1 to \d+ \(4 per core"),
    ("load(threads=0)", r"threads=0 must be an integer from 1 to"),
    ("load(threads=2.5)", r"threads=2\.5 must be an integer"),
    ("load(threads=True)", r"threads=True must be an integer"),
    ("load(batch_size=10**9)", r"batch_size=1000000000 must be an integer from 1 to 4096"),
    ("load(batch_size='8')", r"batch_size='8' must be an integer"),
    ("load()('hi', top_k=1.5)", r"top_k=1\.5 must be between 1 and 3"),
    ("load()(['ok', 'caf\\udce9'])", r"text 1 holds invalid UTF-8"),
])
def test_absurd_encoder_options_are_one_line(bert, code, message):
    refused(child(f"result = {code}", bert), "ConfigError", message)


MESSAGE = "{'role': 'user', 'content': 'hi'}"


@pytest.mark.parametrize(("code", "message"), [
    ("p('hi', num_beams=10**6)", r"1000000 sequences of up to \d+ tokens need about"),
    ("p('hi', do_sample=True, num_return_sequences=10**6)", r"1000000 sequences"),
    ("p('hi', max_new_tokens=10**12)", r"leaves no room for a prompt"),
    ("p('hi', stop=['x'] * 100)", r"stop has 100 strings"),
    ("p('hi', stop=['\\udcff'])", r"stop string 0 holds invalid UTF-8"),
    ("p.chat([{'role': 'user', 'content': 'caf\\udce9'}])",
     r"message 0's 'content' holds invalid UTF-8"),
    ("p.chat([{'role': 'system', 'content': '\\ud800'}, " + MESSAGE + "])",
     r"message 0's 'content' holds invalid UTF-8"),
    ("p.chat([{'role': 'user', 'content': 7}])", r"message 0 needs a 'role' and a 'content'"),
    ("p.chat('hi')", r"messages must be a non-empty list"),
    ("p.chat([{'role': 'user', 'content': 'x', 'tools': [[[[[[[[[[[]]]]]]]]]]]}])",
     r"nests deeper than 8 levels"),
    ("p.chat([{'role': 'user', 'content': 'x', 'meta': object()}])",
     r"holds a object; messages hold only strings"),
])
def test_absurd_generation_options_and_messages_are_one_line(gpt2, code, message):
    refused(child(f"p = load()\nresult = {code}", gpt2), "ConfigError", message)


# -- hostile chat templates -----------------------------------------------------------

TEMPLATES = [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "ModelFolderError", r"ran longer than 2 s and was stopped"),
    ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "ModelFolderError",
     r"failed \(RecursionError"),
    ("{{ 1/0 }}", "ModelFolderError", r"failed \(ZeroDivisionError: division by zero\)"),
    ("{% for %}", "ModelFolderError", r"does not compile \(line 1: "),
    ("{{ 'x' * 10**9 }}", "ModelFolderError", r"asked for a repetition of more than"),
    ("{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}{{ ns.s }}", "ModelFolderError", r"asked for a ~ concatenation of more than"),
    ("{% set s = 'x' * 500000 %}{% for i in range(100000) %}{{ s }}{% endfor %}",
     "ModelFolderError", r"wrote more than \d+ characters"),
    ("{{ 'x'|center(10**9) }}{{ '%999999999s' % 1 }}", "ModelFolderError",
     r"center\(\) with a width or count of more than"),
    ("{{ 2 ** 1000000 }}", "ModelFolderError", r"computed a power of more than 65536 bits"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "ModelFolderError",
     r"failed \(SecurityError: access to attribute '__class__'"),
    ("{% include '/etc/passwd' %}", "ModelFolderError", r"failed \(TypeError: no loader"),
    ("{{ raise_exception('only user and assistant roles') }}", "ConfigError",
     r"the chat template refused the messages: only user and assistant roles"),
]


@pytest.mark.parametrize(("template", "error", "message"), TEMPLATES)
def test_hostile_chat_templates_are_bounded_and_one_line(gpt2, tmp_path, template, error,
                                                         message):
    folder = copy(gpt2, tmp_path / "gpt2")
    (folder / "chat_template.jinja").write_text(template)
    relist(folder, "chat_template.jinja")
    refused(child(f"result = load().chat([{MESSAGE}], max_new_tokens=2)", folder,
                            timeout=30), error, message)


# -- the CLI: the same errors, one line, exit code 1 --------------------------------------

def _cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8:surrogateescape")
    return subprocess.run([python(), "-m", "edgelm", *args], input=stdin, capture_output=True,
                          timeout=60, env=env, preexec_fn=lambda: __import__(
                              "resource").setrlimit(__import__("resource").RLIMIT_AS,
                                                    (MEMORY, MEMORY)))


def test_cli_refuses_absurd_threads_and_bad_bytes_in_one_line(bert, gpt2):
    done = _cli("run", str(bert), "hi", "--threads", "10000")
    assert done.returncode == 1 and done.stderr.decode().count("\n") == 1, done.stderr
    assert done.stderr.decode().startswith("error: threads=10000 must be an integer")
    # chat input decoded with surrogateescape: the bad byte is a lone surrogate (was exit 2)
    done = _cli("chat", str(gpt2), "--max-new-tokens", "2", stdin=b"caf\xe9\n")
    assert done.returncode == 1, done.stderr
    assert done.stderr.decode().strip().splitlines()[-1].startswith(
        "error: message 0's 'content' holds invalid UTF-8")


# -- stop strings: the linear matcher agrees with the obvious search ----------------------

def _naive(text: str, stops: tuple[str, ...]) -> tuple[int | None, int]:
    found = [i for s in stops if (i := text.find(s)) >= 0]
    held = max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
    return (min(found) if found else None), held


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.text(alphabet="ab\u00e9", max_size=6), max_size=8),
       stops=st.lists(st.text(alphabet="ab\u00e9", min_size=1, max_size=5), min_size=1,
                      max_size=3).map(tuple))
def test_stop_matcher_agrees_with_the_obvious_search(pieces, stops):
    matcher, text = StopMatcher(stops), ""
    for piece in pieces:
        text += piece
        matcher.feed(piece)
        found, held = _naive(text, stops)
        assert matcher.found == found
        if found is None:
            assert matcher.held() == held
            assert matcher.would_stop("ab") == (_naive(text + "ab", stops)[0] is not None)
