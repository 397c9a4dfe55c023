"""The registry of families: each one covered by a fixture (and so by every parity test
parametrized over the fixtures), and checkpoints refused from config.json alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import transformers

import edgelm
from edgelm.export.architectures import FAMILIES, EncoderRecipe, Family, identify, named_task
from edgelm.types import Task
from tests.fixtures import DECODERS, ENCODERS, SEQ2SEQ, decoder_config, encoder_config


def test_every_registered_family_has_a_fixture():
    """A family without a fixture would have no parity test: the fixtures' tables feed
    test_generation_parity (decoders), test_export_encoders (encoders) and test_seq2seq."""
    covered = {FAMILIES[encoder_config(name, 300).model_type].name for name in ENCODERS}
    covered |= {FAMILIES[decoder_config(name, 400).model_type].name for name in DECODERS}
    covered |= {FAMILIES[getattr(transformers, model_class).config_class.model_type].name
                for model_class, _ in SEQ2SEQ.values()}
    assert covered == {family.name for family in FAMILIES.values()}


def test_every_decoder_fixture_is_a_decoder_family_and_encoder_an_encoder():
    for name in DECODERS:
        assert FAMILIES[decoder_config(name, 400).model_type].decoder is not None, name
    for name in ENCODERS:
        assert FAMILIES[encoder_config(name, 300).model_type].encoder is not None, name


def _checkpoint(tmp_path, **config):
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize("architecture", ["BertForMaskedLM", "BertForMultipleChoice",
                                          "BertForPreTraining", "BertForNextSentencePrediction"])
def test_an_unknown_head_is_refused_never_dropped(architecture, tmp_path):
    folder = _checkpoint(tmp_path, model_type="bert", architectures=[architecture])
    with pytest.raises(edgelm.UnsupportedModelError,
                       match=f"{architecture}'s head is not supported.*--task feature-extraction"):
        identify(folder)
    # Exporting the body is a deliberate choice.
    assert identify(folder, Task.FEATURE_EXTRACTION).task is Task.FEATURE_EXTRACTION


def test_a_bare_body_is_feature_extraction():
    assert named_task(["BertModel"]) is Task.FEATURE_EXTRACTION
    assert named_task(None) is Task.FEATURE_EXTRACTION
    assert named_task(["Qwen2ForCausalLM"]) is Task.TEXT_GENERATION
    assert named_task(["DebertaV2ForQuestionAnswering"]) is Task.QUESTION_ANSWERING


def test_unsupported_architecture_is_refused_before_torch_is_imported(tmp_path):
    folder = _checkpoint(tmp_path, model_type="pegasus",
                         architectures=["PegasusForConditionalGeneration"])
    code = (
        "import sys, edgelm\n"
        "from edgelm.cli import main\n"
        f"try:\n    main(['export', {str(folder)!r}, '-o', {str(tmp_path / 'out')!r}])\n"
        "except SystemExit as e:\n    code = e.code\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules, code)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.stdout.split() == ["False", "False", "1"], run.stdout + run.stderr
    assert "architecture 'pegasus' is not supported; supported: albert, bart, bert" in run.stderr
    assert not (tmp_path / "out").exists()


def test_a_family_is_an_encoder_or_a_decoder_and_registers_once():
    with pytest.raises(TypeError, match="exactly one"):
        Family(name="x", model_types=("x",))
    from edgelm.export.architectures.registry import register

    with pytest.raises(ValueError, match="registered twice"):
        register(Family(name="bert-again", model_types=("bert",), encoder=EncoderRecipe()))
