"""Bad input gets a clear EdgeLMError naming the fix."""

from __future__ import annotations

import json
import shutil

import pytest

import edgelm
from edgelm.errors import ConfigError, ModelFolderError, UnsupportedModelError
from edgelm.export import ExportOptions, export_model


@pytest.fixture()
def folder_copy(exported, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(exported("bert-cls", "int8"), target)
    return target


def test_unsupported_architecture_lists_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "pegasus"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UnsupportedModelError,
                       match="'pegasus' is not supported; supported: .*bert"):
        export_model(tmp_path, tmp_path / "out")


def test_unsupported_task_lists_supported(checkpoints, tmp_path):
    with pytest.raises(UnsupportedModelError, match="text-generation.*supported: text-class"):
        export_model(checkpoints["bert-cls"], tmp_path / "o", ExportOptions(task="text-generation"))


def test_bad_precision_names_the_choices():
    with pytest.raises(ConfigError, match="'int3' is not one of: fp32, fp16, int8"):
        ExportOptions(precision="int3")


def test_pickle_weights_refused_without_trust(checkpoints, tmp_path):
    ckpt = tmp_path / "pickled"
    shutil.copytree(checkpoints["bert-cls"], ckpt)
    (ckpt / "model.safetensors").rename(ckpt / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="--trust-pickle"):
        export_model(ckpt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failed_export_leaves_nothing_behind(checkpoints, tmp_path):
    ckpt = tmp_path / "truncated"
    shutil.copytree(checkpoints["bert-cls"], ckpt)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(edgelm.ExportError, match="cannot load the weights"):
        export_model(ckpt, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [ckpt]


def test_tampered_model_is_refused(folder_copy):
    with (folder_copy / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelFolderError, match="model.onnx does not match its sha256"):
        edgelm.Pipeline(folder_copy)


def test_newer_manifest_format_is_refused(folder_copy):
    path = folder_copy / "edgelm.json"
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFolderError, match="format version 99.*upgrade edgelm"):
        edgelm.Pipeline(folder_copy)


def test_manifest_path_outside_folder_is_refused(folder_copy):
    path = folder_copy / "edgelm.json"
    data = json.loads(path.read_text())
    data["files"]["../../etc/passwd"] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFolderError, match="outside"):
        edgelm.Pipeline(folder_copy)


def test_corrupt_manifest_and_missing_tokenizer(folder_copy):
    (folder_copy / "edgelm.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        edgelm.Pipeline(folder_copy)


@pytest.mark.parametrize("bad", [None, 3, [1, 2], [], b"bytes", ["ok", None]])
def test_bad_texts(exported, bad):
    pipe = edgelm.Pipeline(exported("bert-cls", "int8"), threads=1)
    with pytest.raises(ConfigError):
        pipe(bad)


def test_top_k_out_of_range(exported):
    pipe = edgelm.Pipeline(exported("bert-cls", "int8"), threads=1)
    with pytest.raises(ConfigError, match="top_k=9 must be between 1 and 3"):
        pipe("hi", top_k=9)


def test_long_text_is_truncated_and_reported(exported, caplog):
    pipe = edgelm.Pipeline(exported("bert-cls", "int8"), threads=1)
    (result,) = pipe(["word " * 1000])
    assert result["truncated"] is True
    assert "truncated" in caplog.text


def test_cuda_without_provider_names_the_gpu_extra(exported):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here")
    with pytest.raises(edgelm.ProviderUnavailableError, match=r"edgelm\[gpu\]"):
        edgelm.Pipeline(exported("bert-cls", "int8"), device="cuda")
