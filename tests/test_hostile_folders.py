"""A folder from a stranger cannot read outside itself or hang the load: every file is
confined, listed with its sha256 and capped, external data included (README: Threat
model). Each load runs in a child process under a time and memory limit."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.hostile import (
    child,
    copy,
    edit_manifest,
    external_tensor,
    pyproject_floor,
    read_manifest_json,
    refused,
    relist,
    retarget_external_data,
    tiny_model,
    write_manifest_json,
)

SECRET = b"TOP SECRET 0123456789abcdef" * 4


@pytest.fixture()
def gpt2(exported, tmp_path):
    return copy(exported("gpt2", "fp32"), tmp_path / "gpt2" / "model")


@pytest.fixture()
def bert(exported, tmp_path):
    return copy(exported("bert-cls", "int8"), tmp_path / "bert" / "model")


def test_untampered_copies_load_and_run(gpt2, bert):
    assert child("result = load()('hello', max_new_tokens=2)", gpt2).ok
    assert "label" in child("result = load()('hello')", bert).ok


# -- external data -------------------------------------------------------------------

@pytest.mark.parametrize(("form", "message"), [
    ("dotdot", r"'\.\./secret\.bin' points outside the folder"),
    ("nested-dotdot", r"'sub/\.\./\.\./secret\.bin' points outside the folder"),
    ("absolute", r"is not a relative path inside the folder"),
    ("symlink", r"'weights\.bin' points outside .* \(to .*secret\.bin\)"),
    ("unlisted", r"'copied\.bin'\) is not a file listed in edgelm\.json"),
    ("ort-memory-address", r"'\*/_ORT_MEM_ADDR_/\*'\) is not a file listed"),
])
def test_external_data_outside_the_folder_is_refused(gpt2, form, message):
    """The issue's attack: onnxruntime 1.20-1.23 would read the secret as weights."""
    secret = gpt2.parent / "secret.bin"
    (gpt2 / "model.onnx.data").rename(secret)
    location = {"dotdot": "../secret.bin", "nested-dotdot": "sub/../../secret.bin",
                "absolute": str(secret), "symlink": "weights.bin", "unlisted": "copied.bin",
                "ort-memory-address": "*/_ORT_MEM_ADDR_/*"}[form]
    if form == "symlink":  # listed, with the right sha256: confinement still refuses it
        (gpt2 / "weights.bin").symlink_to(secret)
        relist(gpt2, "weights.bin")
    if form == "unlisted":
        shutil.copyfile(secret, gpt2 / "copied.bin")
    retarget_external_data(gpt2 / "model.onnx", location)
    relist(gpt2, "model.onnx", drop=("model.onnx.data",))
    outcome = child("result = load()('hello', max_new_tokens=2)", gpt2)
    refused(outcome, "ModelFolderError", r"external data of tensor '.*" + message
            if form != "symlink" else message)  # the listed symlink fails the load's hashing


def test_trusted_folder_still_meets_onnxruntimes_own_check(gpt2):
    """trust_folder drops edgelm's checks; the onnxruntime floor refuses on its own."""
    (gpt2 / "model.onnx.data").rename(gpt2.parent / "secret.bin")
    retarget_external_data(gpt2 / "model.onnx", "../secret.bin")
    outcome = child("result = load(trust_folder=True)('hello', max_new_tokens=2)", gpt2)
    refused(outcome, "ModelFolderError", "onnxruntime cannot load")
    assert "trust_folder=True" in outcome.stderr  # the warning says what it relaxes


def _swap_graph(folder, proto: bytes, *extra: str):
    (folder / "model.onnx").write_bytes(proto)
    relist(folder, "model.onnx", *extra)


@pytest.mark.parametrize("place", ["subgraph", "constant", "sparse", "function"])
def test_external_data_anywhere_in_the_graph_is_checked(bert, place):
    """Tensors hide in If/Loop subgraphs, Constant nodes, sparse initializers and
    functions too: each location is checked, not only the main graph's initializers."""
    from onnx import TensorProto, helper

    (bert.parent / "secret.bin").write_bytes(SECRET)
    hidden = external_tensor("hidden", "../secret.bin")
    constant = helper.make_node("Constant", [], ["c"], value=hidden)
    parts: dict = {}
    if place == "subgraph":
        branch = helper.make_graph([], "branch", [], [helper.make_tensor_value_info(
            "hidden", TensorProto.FLOAT, [4])], initializer=[hidden])
        parts["nodes"] = [helper.make_node("If", ["x"], ["z"], then_branch=branch,
                                           else_branch=branch)]
    elif place == "constant":
        parts["nodes"] = [constant]
    elif place == "sparse":
        indices = helper.make_tensor("i", TensorProto.INT64, [4], [0, 1, 2, 3])
        parts["sparse"] = [helper.make_sparse_tensor(hidden, indices, [8])]
    else:
        parts["functions"] = [helper.make_function("local", "f", [], ["c"], [constant],
                                                   [helper.make_opsetid("", 17)])]
    _swap_graph(bert, tiny_model(**parts))
    refused(child("result = load()", bert), "ModelFolderError",
            r"external data of tensor 'hidden' .*points outside the folder")


@pytest.mark.parametrize(("case", "message"), [
    ("no-location", "external data of tensor 'w' has no location"),
    ("past-the-end", r"external data of tensor 'w' runs past the end of w\.bin \(16 bytes\)"),
    ("bad-offset", "non-numeric offset or length"),
    ("second-location", r"'\.\./secret\.bin' points outside"),
])
def test_external_data_entries_are_checked(bert, case, message):
    (bert / "w.bin").write_bytes(b"\0" * 16)
    (bert.parent / "secret.bin").write_bytes(SECRET)
    tensor = external_tensor("w", "w.bin", offset=1 << 40 if case == "past-the-end" else 0)
    if case == "no-location":
        del tensor.external_data[0]
    elif case == "bad-offset":
        tensor.external_data[1].value = "-1"
    elif case == "second-location":  # protobuf keeps the last; both must pass
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", "../secret.bin"
    _swap_graph(bert, tiny_model(initializers=[tensor]), "w.bin")
    refused(child("result = load()", bert), "ModelFolderError", message)


def test_a_corrupt_or_bottomless_protobuf_is_one_line(bert):
    _swap_graph(bert, b"\x3a\xff\xff\xff\xff\x0f" + b"\0" * 64)  # graph field, length 4 GB
    refused(child("result = load()", bert), "ModelFolderError",
            r"cannot load .*model\.onnx: not a valid ONNX protobuf \(a field runs past its "
            "message\)")
    nested = b""
    for _ in range(200):  # a graph in a node in an attribute in a graph ...
        attr = b"\x32" + _varint(len(nested)) + nested  # AttributeProto.g
        node = b"\x2a" + _varint(len(attr)) + attr  # NodeProto.attribute
        nested = b"\x0a" + _varint(len(node)) + node  # GraphProto.node
    _swap_graph(bert, b"\x3a" + _varint(len(nested)) + nested)
    refused(child("result = load()", bert), "ModelFolderError", "nested deeper than 64")


def _varint(n: int) -> bytes:
    out = b""
    while True:
        out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


# -- files the manifest does not list --------------------------------------------------

@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json",
                                  "chat_template.jinja"])
@pytest.mark.parametrize("form", ["unlisted-symlink", "listed-symlink", "unlisted-copy"])
def test_side_files_must_be_listed_and_inside(gpt2, name, form):
    """The issue's attack: a symlink to a secret file put it into the prompt."""
    secret = gpt2.parent / "secret.txt"
    shutil.copyfile(gpt2 / name, secret)  # a valid file of its kind, outside the folder
    (gpt2 / name).unlink()
    if form == "unlisted-copy":
        shutil.copyfile(secret, gpt2 / name)
    else:
        (gpt2 / name).symlink_to(secret)
    if form == "listed-symlink":
        relist(gpt2, name)
    else:
        relist(gpt2, drop=(name,))
    outcome = child("p = load(); result = p.chat([{'role': 'user', 'content': 'hi'}], "
                    "max_new_tokens=2)", gpt2)
    refused(outcome, "ModelFolderError", rf"'{name}' points outside .*secret\.txt|{name} \(.*\) "
            r"is not listed with its sha256 .*export the model again .*trust_folder=True")


def test_an_empty_files_listing_opens_nothing(bert):
    edit_manifest(bert, lambda m: m.update(files={}))
    refused(child("result = load()('hi')", bert), "ModelFolderError",
            r"model\.onnx \(graph\) is not listed with its sha256")


def test_trust_folder_relaxes_the_listing_and_says_so(bert):
    edit_manifest(bert, lambda m: m.update(files={}))
    outcome = child("result = load(trust_folder=True)('hi')", bert)
    assert outcome.ok and "label" in outcome.ok
    assert "trust_folder=True: the files of" in outcome.stderr
    refused(child("result = load(trust_folder='yes')", bert), "ConfigError",
            "trust_folder='yes' must be True or False")


@pytest.mark.parametrize("target", ["fifo", "dev-zero", "folder", "loop"])
def test_a_file_that_never_ends_is_refused_at_once(bert, target):
    path = bert / "tokenizer.json"
    path.unlink()
    if target == "fifo":
        os.mkfifo(path)
    elif target == "dev-zero":
        path.symlink_to("/dev/zero")
    elif target == "folder":
        path.mkdir()
    else:
        path.symlink_to(path)
    refused(child("result = load()('hi')", bert, timeout=30), "ModelFolderError",
                      r"tokenizer\.json'? (is not a regular file|points outside|cannot be "
                      "resolved)")


def test_oversized_files_are_refused_before_reading(bert):
    with (bert / "tokenizer.json").open("r+b") as f:
        f.truncate(65 << 20)  # sparse: 65 MiB of zeros, over the 64 MiB cap
    relist(bert, "tokenizer.json")
    refused(child("result = load()('hi')", bert), "ModelFolderError",
            r"tokenizer\.json \(tokenizer\) is 68157440 bytes, over the 67108864-byte limit")


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.update(labels=["x" * 1000] * 5000), "over the 4194304-byte limit"),
    (lambda m: m.update(quantization=_nested(50)), "nests deeper than 8 levels"),
    (lambda m: m.update(quantization=_nested(100_000)), "nests deeper than 8 levels"),
    (lambda m: m.clear(), "manifest field architecture, .*, task is missing"),
])
def test_oversized_and_deeply_nested_manifests(bert, change, message):
    data = read_manifest_json(bert)
    change(data)
    text = __import__("json").dumps(data)
    (bert / "edgelm.json").write_text(text.replace('"Q"', "[" * 100_000 + "]" * 100_000)
                                      if "Q" in text else text)
    refused(child("result = load()", bert), "ModelFolderError", message)


def _nested(depth: int):
    return "Q" if depth > 1000 else __import__("functools").reduce(
        lambda inner, _: [inner], range(depth), [])


def test_a_manifest_that_is_not_an_object_or_leaves_the_folder(bert, tmp_path):
    write_manifest_json(bert, [1, 2])
    refused(child("result = load()", bert), "ModelFolderError", "must be a JSON object")
    (bert / "edgelm.json").rename(tmp_path / "elsewhere.json")
    (bert / "edgelm.json").symlink_to(tmp_path / "elsewhere.json")
    refused(child("result = load()", bert), "ModelFolderError", "'edgelm.json' points outside")


# -- the onnxruntime this suite runs on -------------------------------------------------

def test_the_suite_runs_on_the_onnxruntime_it_was_asked_for():
    """scripts/lowest_ort.sh sets EDGELM_EXPECT_ORT to pyproject.toml's floor."""
    outcome = child("import onnxruntime; result = onnxruntime.__version__")
    expected = os.environ.get("EDGELM_EXPECT_ORT")
    if expected:
        assert expected == pyproject_floor()
        assert outcome.ok == repr(expected)
    else:
        from packaging.version import Version

        assert Version(eval(outcome.ok)) >= Version(pyproject_floor())



def test_a_tokenizer_regex_that_backtracks_is_stopped_and_one_line(bert):
    """tokenizer.json's regexes run in Oniguruma, whose retry limit stops catastrophic
    backtracking; its panic becomes a one-line error."""
    from tokenizers import Regex, Tokenizer, pre_tokenizers

    tok = Tokenizer.from_file(str(bert / "tokenizer.json"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("(a+)+$"), behavior="isolated")
    tok.save(str(bert / "tokenizer.json"))
    relist(bert, "tokenizer.json")
    refused(child("result = load()('a' * 5000 + 'b')", bert), "ModelFolderError",
                      r"the folder's tokenizer failed \(.*retry-limit-in-match over\)")

# -- what the runtime cannot bound by itself: a graph is code ------------------------------

def test_a_graph_that_allocates_too_much_is_one_line_under_a_memory_limit(bert):
    """A tiny graph may ask for 16 GB when run: edgelm cannot know, but under an address-
    space limit (README: how to bound it) the failed allocation is a one-line error."""
    from onnx import TensorProto, helper

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])
    huge = helper.make_tensor("huge", TensorProto.INT64, [1], [1 << 32])
    three = helper.make_tensor("three", TensorProto.FLOAT, [3], [1.0, 1.0, 1.0])
    nodes = [
        helper.make_node("Shape", ["input_ids"], ["shape"], end=1),  # [batch]
        helper.make_node("Concat", ["shape", "huge"], ["big_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["big_shape"], ["big"]),  # batch x 4G floats
        helper.make_node("ReduceSum", ["big"], ["sum"], keepdims=1),  # [batch, 1]
        helper.make_node("Mul", ["sum", "three"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "greedy", [ids], [logits], initializer=[huge, three])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every supported onnxruntime reads
    _swap_graph(bert, model.SerializeToString())
    edit_manifest(bert, lambda m: m.update(inputs=["input_ids"]))
    outcome = child("result = load()('hi')", bert)
    refused(outcome, "ConfigError", r"onnxruntime ran out of memory running .*model\.onnx "
            r"\(a node asked for 16\.0 GiB\)")
