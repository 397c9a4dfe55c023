"""The tokenizer, as the runtime reads it: one tokenizer.json (plus its config files).

Read with the `tokenizers` library, not transformers' AutoTokenizer: a
tokenizer saved by transformers 5 (`TokenizersBackend`) cannot be loaded by
the transformers 4.x that other tools pin.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from edgelm.errors import ExportError

TOKENIZER_JSON = "tokenizer.json"
SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
PAD_CANDIDATES = ("[PAD]", "<pad>", "<|pad|>", "<|endoftext|>")
HUGE = 10**6  # tokenizer_config's "no limit" placeholder is ~1e30


def write_tokenizer(source: Path, target: Path) -> Tokenizer:
    """Copy (or, for checkpoints with only vocab files, build) tokenizer.json into target."""
    if (source / TOKENIZER_JSON).is_file():
        shutil.copyfile(source / TOKENIZER_JSON, target / TOKENIZER_JSON)
    else:
        _convert_slow_tokenizer(source, target / TOKENIZER_JSON)
    for name in SIDE_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
    return Tokenizer.from_file(str(target / TOKENIZER_JSON))


def _convert_slow_tokenizer(source: Path, path: Path) -> None:
    from transformers import AutoTokenizer

    try:
        fast = AutoTokenizer.from_pretrained(source, use_fast=True, trust_remote_code=False)
        fast.backend_tokenizer.save(str(path))
    except Exception as e:
        raise ExportError(
            f"{source} has no tokenizer.json and its tokenizer files could not be converted "
            f"({e}); add tokenizer.json to the checkpoint"
        ) from e


def gives_token_types(source: Path) -> bool:
    """Whether the checkpoint's transformers tokenizer returns token_type_ids.

    transformers' pipelines feed the model only what its tokenizer returns: a BERT whose
    tokenizer leaves token_type_ids out runs with zeros, even for text pairs.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except Exception:  # noqa: BLE001 - no transformers tokenizer: the model's default
        return True
    return "token_type_ids" in tokenizer.model_input_names


def tokenizer_config(source: Path) -> dict[str, Any]:
    path = source / "tokenizer_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def pad_token_id(tokenizer: Tokenizer, config: Any) -> int:
    """The checkpoint's pad id, else a conventional pad token, else 0."""
    if getattr(config, "pad_token_id", None) is not None:
        return int(config.pad_token_id)
    for token in PAD_CANDIDATES:
        if (found := tokenizer.token_to_id(token)) is not None:
            return int(found)
    return 0


def max_length(source: Path, model_limit: int) -> int:
    """sentence-transformers' max_seq_length, else the tokenizer's model_max_length when
    set sensibly; never past the model's limit."""
    sbert = source / "sentence_bert_config.json"
    declared = json.loads(sbert.read_text(encoding="utf-8")).get("max_seq_length") \
        if sbert.is_file() else None
    declared = declared or tokenizer_config(source).get("model_max_length")
    if isinstance(declared, (int, float)) and 0 < declared < HUGE:
        return min(int(declared), model_limit)
    return model_limit
