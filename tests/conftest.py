from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Loads keep no packed copies in the user's cache; tests/test_packed_cache.py turns it on
# in a folder of its own.
os.environ.setdefault("EDGELM_PACKED_CACHE", "0")

from tests.fixtures import (  # noqa: E402
    DECODERS,
    ENCODERS,
    SEQ2SEQ,
    build_decoder,
    build_encoder,
    build_seq2seq,
)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny encoder checkpoint, built once per run."""
    root = tmp_path_factory.mktemp("checkpoints")
    built = {name: build_encoder(name, root / name) for name in ENCODERS}
    built.update({name: build_decoder(name, root / name) for name in DECODERS})
    built.update({name: build_seq2seq(name, root / name) for name in SEQ2SEQ})
    return built


@pytest.fixture(scope="session")
def exported(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """exported(name, precision) -> folder, each export made once per run."""
    from edgelm.export import ExportOptions, export_model

    root = tmp_path_factory.mktemp("exports")
    cache: dict[tuple[str, str, str], Path] = {}

    def get(name: str, precision: str | None = "fp32", target: str = "cpu") -> Path:
        """precision None: the target's default."""
        key = name, str(precision), target
        if key not in cache:
            out = root / f"{name}-{key[1]}-{target}"
            export_model(checkpoints[name], out, ExportOptions(precision=precision,
                                                               target=target))
            cache[key] = out
        return cache[key]

    return get


@pytest.fixture(scope="session")
def minilm_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real all-MiniLM-L6-v2 (packaged weights), exported fp32 once per run."""
    from edgelm.export import ExportOptions, export_model
    from edgelm.export.zoo import minilm_dir

    out = tmp_path_factory.mktemp("minilm") / "fp32"
    export_model(minilm_dir(), out, ExportOptions(precision="fp32"))
    return out


@pytest.fixture(scope="session")
def reference(checkpoints: dict[str, Path]):
    """reference(name) -> (transformers model, tokenizer) of a tiny decoder or
    encoder-decoder, loaded once."""
    import transformers

    cache: dict[str, tuple] = {}

    def get(name: str) -> tuple:
        if name not in cache:
            folder = checkpoints[name]
            auto = transformers.AutoModelForSeq2SeqLM if name in SEQ2SEQ else \
                transformers.AutoModelForCausalLM
            cache[name] = (auto.from_pretrained(folder).eval(),
                           transformers.AutoTokenizer.from_pretrained(folder))
        return cache[name]

    return get
