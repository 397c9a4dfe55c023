"""A manifest is untrusted data: each field is typed and ranged, and the whole is checked
against the graph at load (labels vs the head, inputs and outputs, the decoder's cache,
the tokenizer's ids vs the embedding table). Mismatches are one ModelFolderError naming
the field, raised at load in a child process, never an IndexError at call time."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgelm.errors import ModelFolderError
from edgelm.manifest import Manifest, read_manifest
from tests.hostile import child, copy, edit_manifest, read_manifest_json, refused, relist


@pytest.fixture()
def bert(exported, tmp_path):
    return copy(exported("bert-cls", "int8"), tmp_path / "bert")


@pytest.fixture()
def ner(exported, tmp_path):
    return copy(exported("bert-ner", "int8"), tmp_path / "ner")


@pytest.fixture()
def gpt2(exported, tmp_path):
    return copy(exported("gpt2", "fp32"), tmp_path / "gpt2")


def _set(path: str, value):
    def change(data: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return change


@pytest.mark.parametrize(("field", "value", "message"), [
    ("max_length", 1.5, r"max_length=1\.5 must be an integer in \[1, "),
    ("max_length", "128", r"max_length='128' must be an integer"),
    ("max_length", True, r"max_length=True must be an integer"),
    ("max_length", 10**30, r"max_length=10{30} must be an integer"),
    ("max_length", -1, r"max_length=-1 must be an integer"),
    ("pad_token_id", 2**40, r"pad_token_id=1099511627776 must be an integer"),
    ("labels", "negative", r"labels='negative' must be a list"),
    ("labels", [1, 2, 3], r"labels=\[1, 2, 3\] must be a list of at most \d+ strings"),
    ("inputs", ["input_ids", "input_ids"], r"inputs=.* must be unique names"),
    ("outputs", [], r"outputs=\[\] must be a non-empty list"),
    ("task", "summarize", r"task='summarize' must be one of text-classification"),
    ("precision", 8, r"precision=8 must be one of fp32"),
    ("files", {"model.onnx": "not-a-digest"}, r"files=.* must be an object of relative paths"),
    ("files", ["model.onnx"], r"files=.* must be an object"),
    ("model_file", "/etc/passwd", r"model_file: manifest path '/etc/passwd' is not a relative"),
    ("model_file", "../model.onnx", r"model_file: manifest path '\.\./model\.onnx' points outside"),
    ("fused_ops", {"Attention": -2}, r"fused_ops=.* must be an object of counts"),
    ("validation", [1], r"validation=\[1\] must be an object \(Validation\) or null"),
    ("validation.cases", "all", r"validation\.cases='all' must be a list"),
    ("format_version", "1", r"format_version='1' must be an integer in \[0, 1\]"),
])
def test_field_types_and_ranges_are_checked_at_load(bert, field, value, message):
    edit_manifest(bert, _set(field, value))
    refused(child("result = load()('hi')", bert), "ModelFolderError",
            r"edgelm\.json: manifest field .*" + message + ".*; export the model again")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("decoder.kv_heads", 3, r"decoder\.kv_heads=3 must be a divisor of num_heads=4"),
    ("decoder.num_layers", 0, r"decoder\.num_layers=0 must be an integer in \[1, 4096\]"),
    ("decoder.eos_token_ids", [400], r"decoder\.eos_token_ids=\[400\] must be below vocab_size"),
    ("decoder.bos_token_id", 1.0, r"decoder\.bos_token_id=1\.0 must be an integer"),
    ("decoder.position_ids", "yes", r"decoder\.position_ids='yes' must be true or false"),
    ("decoder.cache_reorder_file", "../x.onnx", r"cache_reorder_file: .* points outside"),
])
def test_decoder_fields_are_checked_at_load(gpt2, field, value, message):
    edit_manifest(gpt2, _set(field, value))
    refused(child("result = load()", gpt2), "ModelFolderError", message)


@pytest.mark.parametrize(("labels", "message"), [
    (["a", "b", "c", "d", "e"], r"labels has 5 entries but the graph's 'logits' has 3 logits"),
    (["a", "b"], r"labels has 2 entries but the graph's 'logits' has 3 logits"),
    ([], r"labels is empty; text-classification needs one per logit"),
])
def test_labels_must_match_the_heads_width(bert, labels, message):
    """More labels than logits was an IndexError at call time; fewer, silently fewer results."""
    edit_manifest(bert, _set("labels", labels))
    refused(child("result = load()('hi', top_k=2)", bert), "ModelFolderError",
            "the manifest does not match the graph: " + message)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("outputs", ["scores"], r"outputs names \['scores'\], which the graph lacks"),
    ("inputs", ["input_ids"], r"inputs=\['input_ids'\] but the graph takes \['attention_mask'"),
    ("task", "token-classification",
     r"outputs\[0\]='logits' is tensor\(float\) of rank 2; token-classification needs .* rank 3"),
    ("task", "text-generation", r"the manifest has no decoder section"),
    ("pad_token_id", 5000, r"pad_token_id=5000 is outside the embedding table's \d+ rows"),
])
def test_encoder_manifest_must_match_its_graph(bert, field, value, message):
    edit_manifest(bert, _set(field, value))
    refused(child("result = load()('hi')", bert), "ModelFolderError", message)


def test_token_classifier_labels_too(ner):
    edit_manifest(ner, _set("labels", ["O", "B-PER"]))
    refused(child("result = load()('Ada Lovelace')", ner), "ModelFolderError",
            r"labels has 2 entries but the graph's 'logits' has 5 logits")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("decoder.num_layers", 3, r"needs inputs \['past_key_values\.2\.key', "
                              r"'past_key_values\.2\.value'\] the graph lacks"),
    ("decoder.kv_heads", 2, r"past_key_values\.0\.key is \['batch', 4, 'past_sequence_length', "
                            r"16\], not \[batch, decoder\.kv_heads=2"),
    ("decoder.head_size", 32, r"decoder\.head_size=32\]"),
    ("decoder.vocab_size", 500, r"decoder\.vocab_size=500 but the embedding table has 400 rows"),
    ("decoder.vocab_size", 300, r"logits is tensor\(float\) \['batch', 'positions', 400\], not "
                                r"float \[batch, positions, decoder\.vocab_size=300\]"),
    ("decoder.position_ids", False, r"takes inputs \['position_ids'\] that the decoder section"),
])
def test_decoder_section_must_match_the_cache_inputs(gpt2, field, value, message):
    edit_manifest(gpt2, _set(field, value))
    refused(child("result = load()('hi', max_new_tokens=2)", gpt2), "ModelFolderError",
            "the manifest does not match the graph: .*" + message)


def test_tokenizer_ids_must_fit_the_embedding_table(gpt2):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(gpt2 / "tokenizer.json"))
    tok.add_tokens([f"<extra_{i}>" for i in range(20)])  # ids 400-419, the table has 400 rows
    tok.save(str(gpt2 / "tokenizer.json"))
    relist(gpt2, "tokenizer.json")
    refused(child("result = load()('hi <extra_19>', max_new_tokens=2)", gpt2),
            "ModelFolderError", r"the tokenizer has ids up to 419 but the embedding table has "
                                r"400 rows")


# -- property tests: any value in any field is a manifest or one ModelFolderError --------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def valid(exported):
    return {"bert": read_manifest_json(exported("bert-cls", "int8")),
            "gpt2": read_manifest_json(exported("gpt2", "fp32"))}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(["bert", "gpt2"]), data=st.data())
def test_any_value_in_any_field_is_a_manifest_or_one_line(valid, which, data):
    manifest = json.loads(json.dumps(valid[which]))
    section = manifest
    if which == "gpt2" and data.draw(st.booleans()):
        section = manifest["decoder"]
    key = data.draw(st.sampled_from(sorted(section)) | st.text(max_size=8))
    section[key] = data.draw(JSON)
    try:
        parsed = Manifest.from_dict(manifest)
    except ModelFolderError as e:
        assert "\n" not in str(e) and len(str(e)) < 2000
        return
    assert isinstance(parsed.max_length, int) and not isinstance(parsed.max_length, bool)
    assert all(isinstance(label, str) for label in parsed.labels)
    assert all(isinstance(v, str) and len(v) == 64 for v in parsed.files.values())


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(
    lambda b: b.decode("latin-1")))
def test_any_manifest_text_reads_or_is_one_line(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("m")
    (folder / "edgelm.json").write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        read_manifest(folder, verify=False)
    except ModelFolderError as e:
        assert "\n" not in str(e)
