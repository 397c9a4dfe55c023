"""Generation under bad options and inputs, concurrent callers and arbitrary input; and the
export failures not covered elsewhere (no weights, corrupt ONNX, disk full)."""

from __future__ import annotations

import errno
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import edgelm
from edgelm.cli import main
from edgelm.errors import ConfigError, ExportError, ModelFolderError
from edgelm.manifest import MANIFEST_NAME, sha256_file

PROMPTS = ["The quick brown fox", "Edge devices run", "Café déjà vu", "東京は日本"]


@pytest.fixture(scope="module")
def pipe(exported):
    return edgelm.Pipeline(exported("llama", "fp32"), threads=1)


@pytest.mark.parametrize(("options", "message"), [
    ({"max_new_tokens": 0}, "max_new_tokens=0 must be an integer >= 1"),
    ({"max_new_tokens": -5}, "max_new_tokens=-5 must be an integer >= 1"),
    ({"max_new_tokens": 10_000}, "max_new_tokens=10000 leaves no room for a prompt in the "
                                 "model's 128 positions"),
    ({"num_beams": 0}, "num_beams=0 must be an integer >= 1"),
    ({"temperature": -0.5}, r"temperature=-0.5 must be a number in \[0.0001, 100.0\]"),
    ({"temperature": 1e-300}, "temperature=1e-300 must be a number in"),  # 0 in float32
    ({"repetition_penalty": 5e-324}, r"repetition_penalty=5e-324 must be a number in "
                                     r"\[0.01, 100.0\]"),  # logits / it overflow
    ({"repetition_penalty": float("inf")}, "repetition_penalty=inf must be a number in"),
    ({"top_p": 0}, r"top_p=0 must be a number in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p=1.5 must be a number in \(0, 1\]"),
    ({"top_k": -1}, "top_k=-1 must be an integer >= 0"),
    ({"max_new_tokens": 2.5}, "max_new_tokens=2.5 must be an integer"),
    ({"beams": 2}, "unknown generation option"),
])
def test_out_of_range_options_name_the_value_and_the_range(pipe, options, message):
    with pytest.raises(ConfigError, match=message):
        pipe("hello", **options)


@pytest.mark.parametrize(("args", "message"), [
    (["--max-new-tokens", "0"], "max_new_tokens=0 must be an integer >= 1"),
    (["--num-beams", "0"], "num_beams=0"),
    (["--temperature", "-1"], "temperature=-1.0 must be a number in [0.0001, 100.0]"),
    (["--repetition-penalty", "1e-30"], "repetition_penalty=1e-30 must be a number in"),
    (["--top-p", "1.5"], "top_p=1.5"),
    (["--top-k", "-3"], "top_k=-3"),
])
def test_cli_generate_bad_options_are_one_line(exported, args, message):
    result = CliRunner().invoke(main, ["generate", str(exported("llama", "fp32")), "hi", *args])
    assert result.exit_code == 1
    assert result.output.startswith("error:") and message in result.output
    assert result.output.count("\n") == 1


@pytest.mark.parametrize(("bad", "message"), [
    (None, "expected a string or a list of strings"),
    (3, "expected a string"),
    ([], "empty list"),
    (["ok", 7], "expected only strings"),
    (b"\xff\xfe", "decode them first"),
    ("", "encodes to no tokens"),
    ("caf\udce9", "invalid UTF-8"),  # bytes decoded with errors="surrogateescape"
])
def test_bad_prompts(pipe, bad, message):
    with pytest.raises(ConfigError, match=message):
        pipe(bad, max_new_tokens=4)


def test_invalid_utf8_text_for_an_encoder_too(exported):
    with pytest.raises(ConfigError, match="text 1 holds invalid UTF-8"):
        edgelm.Pipeline(exported("bert-cls", "int8"))(["fine", "bad \udcff"])


def test_long_prompt_keeps_its_tail_and_says_so(pipe, caplog):
    result = pipe("word " * 400, max_new_tokens=8, return_full_text=False)
    assert len(result) == 1 and "only its last" in caplog.text


def test_one_generation_pipeline_shared_by_8_threads(pipe):
    """Greedy, seeded sampling and beam search: decoding state lives in each call."""
    jobs = [(PROMPTS[i % 4], options) for i, options in enumerate([
        {"max_new_tokens": 12}, {"max_new_tokens": 10, "do_sample": True, "seed": 3},
        {"max_new_tokens": 8, "num_beams": 3}, {"max_new_tokens": 9, "top_k": 5, "seed": 1},
    ] * 6)]
    sequential = [pipe(prompt, **options) for prompt, options in jobs]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda job: pipe(job[0], **job[1]), jobs))
    assert concurrent == sequential


OPTIONS = st.fixed_dictionaries({}, optional={
    "max_new_tokens": st.integers(-2, 12),
    "min_new_tokens": st.integers(-1, 12),
    "num_beams": st.integers(-1, 4),
    "num_return_sequences": st.integers(0, 3),
    "do_sample": st.booleans(),
    "temperature": st.floats(-1, 3) | st.just(float("nan")),
    "top_k": st.integers(-2, 50),
    "top_p": st.floats(-0.5, 1.5) | st.just(float("nan")),
    "repetition_penalty": st.floats(0, 3),
    "seed": st.integers(-1, 5),
})


@settings(max_examples=60, deadline=None)
@given(prompt=st.text(min_size=1, max_size=60), options=OPTIONS)
def test_any_options_give_text_or_the_documented_error(pipe, prompt, options):
    try:
        results = pipe(prompt, **options)
    except ConfigError:
        return
    assert isinstance(results, list) and results
    assert all(isinstance(r["generated_text"], str) for r in results)


def test_checkpoint_without_weights_is_one_line(checkpoints, tmp_path):
    ckpt = tmp_path / "no-weights"
    shutil.copytree(checkpoints["bert-cls"], ckpt)
    (ckpt / "model.safetensors").unlink()
    result = CliRunner().invoke(main, ["export", str(ckpt), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "has no weights" in result.output
    assert not (tmp_path / "out").exists()


def test_corrupt_onnx_with_a_matching_manifest_is_one_line(exported, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(exported("bert-cls", "int8"), folder)
    (folder / "model.onnx").write_bytes(b"not a protobuf" * 100)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["files"]["model.onnx"] = sha256_file(folder / "model.onnx")  # hash passes
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ModelFolderError, match="onnxruntime cannot load .*export the model again"):
        edgelm.Pipeline(folder)
    result = CliRunner().invoke(main, ["run", str(folder), "hi"])
    assert result.exit_code == 1 and result.output.count("\n") == 1


def test_disk_full_during_the_write_keeps_the_previous_folder(checkpoints, tmp_path,
                                                             monkeypatch):
    import onnx

    from edgelm.export import ExportOptions, export_model

    out = tmp_path / "out"
    export_model(checkpoints["gpt2"], out, ExportOptions(precision="fp32"))
    before = sorted(p.name for p in out.iterdir())

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save", full)
    with pytest.raises(ExportError, match="No space left on device.*free disk space"):
        export_model(checkpoints["gpt2"], out, ExportOptions(precision="fp32", force=True))
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left
