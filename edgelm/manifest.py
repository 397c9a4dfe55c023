"""The manifest `edgelm.json`: the only contract between export and runtime.

It is versioned: the runtime reads any format up to FORMAT_VERSION and refuses a newer
one. A manifest comes with a folder from anywhere, so it is read as untrusted data:
its size and nesting are capped before it is parsed, and every field is checked for
its type and range as the dataclasses are built (a bad one is a ModelFolderError
naming the field). Paths must stay inside the folder; edgelm/folder.py opens them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgelm.errors import ModelFolderError
from edgelm.files import confine, normalize, read_capped, sha256_regular
from edgelm.limits import LIMITS
from edgelm.types import Precision, ScoreFunction, Target, Task

FORMAT_VERSION = 1
MANIFEST_NAME = "edgelm.json"
SHA256 = re.compile(r"[0-9a-f]{64}")
BIG = 1 << 31  # token ids, lengths and sizes stay below it (int32 in the graphs)


class _Fields:
    """Checks one section's fields, collecting every problem, then raises them at once."""

    def __init__(self, obj: Any, section: str = "") -> None:
        self.obj, self.prefix = obj, f"{section}." if section else ""
        self.problems: list[str] = []

    def bad(self, name: str, value: Any, allowed: str) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        self.problems.append(f"{self.prefix}{name}={shown} must be {allowed}")

    def integer(self, name: str, low: int, high: int, *, optional: bool = False) -> None:
        value = getattr(self.obj, name)
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.bad(name, value, f"an integer in [{low}, {high}]")

    def number(self, name: str, *, optional: bool = False) -> None:
        value = getattr(self.obj, name)
        if not ((value is None and optional) or
                (isinstance(value, (int, float)) and not isinstance(value, bool))):
            self.bad(name, value, "a number" + (" or null" if optional else ""))

    def text(self, name: str, *, optional: bool = False, limit: int = 256) -> None:
        value = getattr(self.obj, name)
        if not ((value is None and optional) or (isinstance(value, str) and len(value) <= limit)):
            self.bad(name, value, f"a string of at most {limit} characters")

    def flag(self, name: str) -> None:
        if not isinstance(getattr(self.obj, name), bool):
            self.bad(name, getattr(self.obj, name), "true or false")

    def choice(self, name: str, kind: type[Any], *, optional: bool = False) -> None:
        value = getattr(self.obj, name)
        if optional and value is None:
            return
        try:
            object.__setattr__(self.obj, name, kind(value))
        except (ValueError, TypeError):
            self.bad(name, value, f"one of {', '.join(c.value for c in kind)}")

    def items(self, name: str, check: Any, allowed: str, *, limit: int = 0) -> list[Any]:
        """A list field whose items all pass `check`; stored as a list."""
        value = getattr(self.obj, name)
        limit = limit or LIMITS.manifest_entries
        if not isinstance(value, (list, tuple)) or len(value) > limit \
                or not all(check(v) for v in value):
            self.bad(name, value, f"a list of at most {limit} {allowed}")
            return []
        object.__setattr__(self.obj, name, list(value))
        return list(value)

    def mapping(self, name: str, check: Any, allowed: str) -> dict[str, Any]:
        value = getattr(self.obj, name)
        if not isinstance(value, dict) or len(value) > LIMITS.manifest_entries \
                or not all(isinstance(k, str) and check(v) for k, v in value.items()):
            self.bad(name, value, f"an object of {allowed}")
            return {}
        object.__setattr__(self.obj, name, dict(value))
        return dict(value)

    def path(self, name: str, *, optional: bool = False) -> None:
        value = getattr(self.obj, name)
        if value is None and optional:
            return
        try:
            object.__setattr__(self.obj, name, normalize(value))
        except ModelFolderError as e:
            self.problems.append(f"{self.prefix}{name}: {e}")

    def done(self) -> None:
        if self.problems:
            raise ModelFolderError("manifest field " + "; ".join(self.problems))


def _short_str(value: Any, limit: int = 1000) -> bool:
    return isinstance(value, str) and len(value) <= limit


def _token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < BIG


@dataclass(frozen=True, kw_only=True)
class Validation:
    """How the exported graph compares with PyTorch on generated inputs."""

    max_abs_diff: float
    top1_agreement: float | None  # None for embeddings (no classes to agree on)
    tolerance: float | None  # None: quantized, reported but not enforced
    cases: list[str]  # e.g. "batch=2,len=16"
    cosine_min: float | None = None

    def __post_init__(self) -> None:
        check = _Fields(self, "validation")
        check.number("max_abs_diff")
        for name in ("top1_agreement", "tolerance", "cosine_min"):
            check.number(name, optional=True)
        check.items("cases", _short_str, "strings", limit=1000)
        check.done()


@dataclass(frozen=True, kw_only=True)
class DecoderInfo:
    """How to drive a text-generation graph (see export/decoder_graph.py)."""

    num_layers: int
    num_heads: int
    kv_heads: int
    head_size: int  # as stored in the cache
    hidden_size: int
    vocab_size: int
    max_positions: int
    position_ids: bool  # the graph takes position_ids (learned positions)
    eos_token_ids: list[int] = field(default_factory=list)
    bos_token_id: int | None = None
    cache_reorder_file: str | None = None  # gathers cache rows on the GPU (beam search)

    def __post_init__(self) -> None:
        check = _Fields(self, "decoder")
        check.integer("num_layers", 1, 4096)
        check.integer("num_heads", 1, 4096)
        check.integer("kv_heads", 1, 4096)
        check.integer("head_size", 1, 4096)
        check.integer("hidden_size", 1, 1 << 20)
        check.integer("vocab_size", 1, BIG - 1)
        check.integer("max_positions", 1, BIG - 1)
        check.flag("position_ids")
        eos = check.items("eos_token_ids", _token_id, "token ids", limit=1024)
        check.integer("bos_token_id", 0, BIG - 1, optional=True)
        check.path("cache_reorder_file", optional=True)
        if not check.problems:
            if self.num_heads % self.kv_heads:
                check.bad("kv_heads", self.kv_heads, f"a divisor of num_heads={self.num_heads}")
            for name, ids in (("eos_token_ids", eos), ("bos_token_id", [self.bos_token_id])):
                if any(i is not None and i >= self.vocab_size for i in ids):
                    check.bad(name, getattr(self, name), f"below vocab_size={self.vocab_size}")
        check.done()


@dataclass(frozen=True, kw_only=True)
class Seq2SeqInfo:
    """An encoder-decoder's encoder graph and how decoding starts (export/seq2seq_graph.py).

    The decoder graph is the manifest's model_file, described by its decoder section.
    """

    encoder_file: str
    decoder_start_token_id: int
    cross_heads: int
    cross_head_size: int  # of cross.N.key/value, [batch, cross_heads, source, size]
    max_source_positions: int
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | None = None
    suppress_tokens: list[int] = field(default_factory=list)  # never generated

    def __post_init__(self) -> None:
        check = _Fields(self, "seq2seq")
        check.path("encoder_file")
        check.integer("decoder_start_token_id", 0, BIG - 1)
        check.integer("cross_heads", 1, 4096)
        check.integer("cross_head_size", 1, 4096)
        check.integer("max_source_positions", 1, BIG - 1)
        check.integer("forced_bos_token_id", 0, BIG - 1, optional=True)
        check.integer("forced_eos_token_id", 0, BIG - 1, optional=True)
        check.items("suppress_tokens", _token_id, "token ids", limit=1024)
        check.done()


@dataclass(frozen=True, kw_only=True)
class MobileInfo:
    """--target mobile: the ORT-format model and the operators it needs."""

    ort_file: str
    operators_file: str  # onnxruntime build.py --include_ops_by_config takes it
    operators: list[str]  # "domain;op"

    def __post_init__(self) -> None:
        check = _Fields(self, "mobile")
        check.path("ort_file")
        check.path("operators_file")
        check.items("operators", _short_str, "strings", limit=10_000)
        check.done()


@dataclass(frozen=True, kw_only=True)
class Manifest:
    task: Task
    architecture: str
    precision: Precision
    inputs: list[str]
    outputs: list[str]
    max_length: int
    pad_token_id: int
    edgelm_version: str
    format_version: int = FORMAT_VERSION
    target: Target = Target.CPU
    model_file: str = "model.onnx"
    labels: list[str] = field(default_factory=list)
    # text-classification: what turns logits into scores (None: transformers' default,
    # sigmoid for one label, else softmax)
    score_function: ScoreFunction | None = None
    pooling: str | None = None
    fused_ops: dict[str, int] = field(default_factory=dict)
    validation: Validation | None = None
    quantization: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    source_sha256: str = ""
    decoder: DecoderInfo | None = None
    seq2seq: Seq2SeqInfo | None = None
    mobile: MobileInfo | None = None

    def __post_init__(self) -> None:
        check = _Fields(self)
        for name, kind in (("task", Task), ("precision", Precision), ("target", Target)):
            check.choice(name, kind)
        check.choice("score_function", ScoreFunction, optional=True)
        check.text("architecture")
        check.text("edgelm_version")
        check.text("pooling", optional=True)
        check.integer("format_version", 0, FORMAT_VERSION)
        check.integer("max_length", 1, BIG - 1)
        check.integer("pad_token_id", 1 - BIG, BIG - 1)  # negative: counted from the end
        for name in ("inputs", "outputs"):
            names = check.items(name, lambda v: _short_str(v, 256), "names", limit=4096)
            if len(set(names)) != len(names):
                check.bad(name, names, "unique names")
        if not self.outputs and not check.problems:
            check.bad("outputs", self.outputs, "a non-empty list")
        check.items("labels", _short_str, "strings")
        check.mapping("fused_ops", _token_id, "counts")
        check.mapping("quantization", lambda v: True, "values")
        check.path("model_file")
        self._check_files(check)
        if self.source_sha256 and not (isinstance(self.source_sha256, str)
                                       and SHA256.fullmatch(self.source_sha256)):
            check.bad("source_sha256", self.source_sha256, "64 lowercase hex digits")
        for name, section in SECTIONS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, section):
                check.bad(name, value, f"an object ({section.__name__}) or null")
        check.done()

    def _check_files(self, check: _Fields) -> None:
        listed = check.mapping("files", lambda v: isinstance(v, str) and SHA256.fullmatch(v),
                               "relative paths to sha256 digests (64 lowercase hex digits)")
        if len(listed) > LIMITS.listed_files:
            check.bad("files", f"{len(listed)} entries", f"at most {LIMITS.listed_files} entries")
            return
        normalized = {}
        for name, digest in listed.items():
            try:
                normalized[normalize(name)] = digest
            except ModelFolderError as e:
                check.problems.append(f"files: {e}")
        object.__setattr__(self, "files", normalized)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """The manifest in `data`; unknown keys (from a newer minor version) are ignored."""
        if not isinstance(data, dict):
            raise ModelFolderError(f"the manifest must be a JSON object, not {type(data).__name__}")
        data = _known(cls, data, "")
        for name, kind in SECTIONS:
            if isinstance(data.get(name), dict):
                data[name] = kind(**_known(kind, data[name], f"{name}."))
        return cls(**data)


SECTIONS = (("validation", Validation), ("decoder", DecoderInfo), ("seq2seq", Seq2SeqInfo),
            ("mobile", MobileInfo))


def _known(cls: type[Any], data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """`data`'s keys that are fields of `cls`, refusing a missing required one."""
    names = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls)
                if f.default is MISSING and f.default_factory is MISSING}
    missing = sorted(n for n in required if n not in data)
    if missing:
        raise ModelFolderError(f"manifest field {', '.join(prefix + m for m in missing)} "
                               "is missing")
    return {k: v for k, v in data.items() if k in names}


def json_depth(value: Any) -> int:
    """The nesting depth of parsed JSON (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict)
                                                   else item))
    return deepest


def parse_json(data: bytes, label: str, *, depth: int = LIMITS.manifest_depth) -> Any:
    """JSON from the folder (already capped in size): UTF-8, at most `depth` levels deep."""
    try:
        value = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ModelFolderError(f"{label} nests deeper than {depth} levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelFolderError(f"{label} is not valid JSON ({str(e)[:200]})") from None
    if json_depth(value) > depth:
        raise ModelFolderError(f"{label} nests deeper than {depth} levels")
    return value


def inside(folder: Path, relative: str) -> Path:
    """The path of `relative` in `folder`, refusing anything that escapes it."""
    return confine(Path(folder).resolve(), relative)


def read_manifest(folder: str | Path, *, verify: bool = True) -> Manifest:
    """Read and check `folder/edgelm.json`; with verify, check every listed file's sha256."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is not a folder; pass the folder `edgelm export` wrote")
    path = folder / MANIFEST_NAME
    if not path.exists() and not path.is_symlink():
        raise ModelFolderError(f"{folder} has no {MANIFEST_NAME}; export it with `edgelm export`")
    root = folder.resolve()
    data = parse_json(read_capped(confine(root, MANIFEST_NAME), cap=LIMITS.manifest_bytes,
                                  label=str(path)), str(path))
    version = data.get("format_version", 0) if isinstance(data, dict) else 0
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ModelFolderError(
            f"{path} has format version {version}, newer than this edgelm reads "
            f"({FORMAT_VERSION}); upgrade edgelm: pip install -U edgelm"
        )
    try:
        manifest = Manifest.from_dict(data)
    except ModelFolderError as e:
        raise ModelFolderError(f"{path}: {e}; export the model again") from None
    except (TypeError, ValueError) as e:  # a field of the wrong shape for its dataclass
        raise ModelFolderError(f"{path} is incomplete or corrupt ({str(e)[:200]}); "
                               "export the model again") from None
    if verify:
        verify_files(folder, manifest)
    return manifest


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Raise ModelFolderError naming every missing, irregular or altered listed file."""
    root, problems = Path(folder).resolve(), []
    for relative, expected in manifest.files.items():
        label = f"{relative}"
        try:
            actual = sha256_regular(confine(root, relative), cap=LIMITS.weights_bytes,
                                    label=label)
        except ModelFolderError as e:
            problems.append(str(e))
            continue
        if actual != expected:
            problems.append(f"{relative} does not match its sha256 (altered or truncated)")
    if problems:
        raise ModelFolderError(f"{folder}: " + "; ".join(problems) + "; export the model again")


def update_digest(digest: Any, path: Path) -> None:
    """Feed a file to a hashlib digest in 1 MiB chunks (the exporter's own files)."""
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    update_digest(digest, path)
    return digest.hexdigest()
