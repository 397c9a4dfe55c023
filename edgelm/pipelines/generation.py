"""TextGenerationPipeline: prompts in, generated text out, torch-free."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgelm.errors import ConfigError, ModelFolderError
from edgelm.generation.cache import RowGather
from edgelm.generation.chat import ChatTemplate, load_template
from edgelm.generation.config import GenerationConfig
from edgelm.generation.runner import DecoderRunner
from edgelm.generation.search import beam_search, capacity, sample_or_greedy
from edgelm.generation.streaming import StopStrings
from edgelm.limits import LIMITS
from edgelm.pipelines.base import Pipeline
from edgelm.session import memory_errors
from edgelm.tokenizer import check_text, check_texts, cut_tail, encode
from edgelm.types import Device, Task

log = logging.getLogger(__name__)


class TextGenerationPipeline(Pipeline):
    """`pipe("Once upon a time", max_new_tokens=32)` -> [{"generated_text": ...}].

    Options are transformers' `generate` names (see GenerationConfig): greedy by
    default; `num_beams` for beam search; `do_sample`/`temperature`/`top_k`/
    `top_p`/`seed` for sampling; `stop` strings; `return_full_text`.
    A list of prompts returns one list of results per prompt.
    """

    task = Task.TEXT_GENERATION

    def __init__(self, folder: str | Path, **kwargs: Any) -> None:
        super().__init__(folder, **kwargs)
        info = self.manifest.decoder
        if info is None:
            raise ModelFolderError(f"{self.folder}: the manifest has no decoder section; "
                                   "export the model again")
        self.info = info
        self.tokenizer = self._load_tokenizer()  # checks the graph against the manifest
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.runner = DecoderRunner(self.session, info)
        self.runner.gather = self._row_gather()
        self.eos_ids = list(info.eos_token_ids)
        self.pad_id = self.manifest.pad_token_id
        self.template = ChatTemplate(*load_template(self.files), self.folder)

    # -- public API --------------------------------------------------------
    def __call__(self, prompts: Any, /, **options: Any) -> Any:
        texts, single = check_texts(prompts)
        config = _config(options)
        results: list[list[dict[str, str]]] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            encoded = [self._encode(t, config) for t in chunk]
            for text, ids, outs in zip(chunk, encoded, self.generate_ids(encoded, config)):
                results.append([{"generated_text": self._text(text, ids, out, config)}
                                for out in outs])
        return results[0] if single else results

    def generate_ids(self, prompts: list[list[int]], config: GenerationConfig
                     ) -> list[list[list[int]]]:
        """Generated token ids (eos included) for each prompt, num_return_sequences each."""
        rows = len(prompts) * max(config.num_beams, config.num_return_sequences)
        self.runner.check_memory(rows, capacity(prompts, config))
        with memory_errors("generating"):
            if config.num_beams > 1:
                found = beam_search(self.runner, prompts, config, self.eos_ids,
                                    pad_id=self.pad_id)
                return [[h.tokens for h in hyps] for hyps in found]
            out = self._sample(prompts, config)
        n = config.num_return_sequences
        return [out[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _sample(self, prompts: list[list[int]], config: GenerationConfig) -> list[list[int]]:
        """Greedy or sampled tokens of each prompt's num_return_sequences rows."""
        rows = [p for p in prompts for _ in range(config.num_return_sequences)]
        out: list[list[int]] = [[] for _ in rows]
        stops = StopStrings(self.tokenizer, rows, config.stop) if config.stop else None
        for tokens, active in sample_or_greedy(self.runner, rows, config, self.eos_ids,
                                               pad_id=self.pad_id, stopped=stops):
            for row in np.flatnonzero(active):
                out[row].append(int(tokens[row]))
        return out

    def stream(self, prompt: str, /, **options: Any) -> Iterator[str]:
        """Yield the generated text piece by piece as tokens are decoded."""
        texts, single = check_texts(prompt)
        if not single:
            raise ConfigError("stream takes one prompt; call it once per prompt")
        config = _config(options)
        if config.num_beams > 1 or config.num_return_sequences > 1:
            raise ConfigError("stream decodes one sequence; use num_beams=1 and "
                              "num_return_sequences=1, or call the pipeline")
        yield from self._stream_ids(self._encode(texts[0], config), config)

    def chat(self, messages: list[dict[str, str]], /, *, stream: bool = False,
             **options: Any) -> Any:
        """The assistant's reply to `messages`, with the model's chat template applied.

        Every message's strings go through the same checks as a prompt; the template
        renders in a bounded sandbox (generation/sandbox.py).
        """
        config = _config(options)
        text = self.template.render(messages)
        ids = self._encode(text, config, special_tokens=False)
        if stream:
            return self._stream_ids(ids, config)
        return "".join(self._stream_ids(ids, config))

    # -- internals ---------------------------------------------------------
    def _row_gather(self) -> RowGather | None:
        """On CUDA an fp16 graph keeps its cache on the device; beam search moves rows there.

        A float32 graph's attention has no CUDA kernel and runs on the CPU, so its cache
        stays in host memory (and it is slow: the warning names the fix).
        """
        if self.device is not Device.CUDA:
            return None
        if self.runner.dtype != np.float16 or self.info.cache_reorder_file is None:
            log.warning("this decoder's float32 attention runs on the CPU under CUDA "
                        "(GroupQueryAttention's CUDA kernel is fp16): export it with "
                        "--target cuda")
            return None
        return RowGather(self.files.graph(self.info.cache_reorder_file)[0])

    def _stream_ids(self, ids: list[int], config: GenerationConfig) -> Iterator[str]:
        self.runner.check_memory(1, len(ids) + config.max_new_tokens)
        follow, sent = StopStrings(self.tokenizer, [ids], config.stop), 0
        with memory_errors("generating"):
            for _ in sample_or_greedy(self.runner, [ids], config, self.eos_ids,
                                      pad_id=self.pad_id, stopped=follow):
                end, stopped = follow.shown(0)  # less a tail that may begin a stop string
                if end > sent:
                    yield follow.texts[0][sent:end]
                    sent = end
                if stopped:
                    return
        text = follow.finish(0)
        end = follow.end(0)
        if end > sent:
            yield text[sent:end]

    def _encode(self, text: str, config: GenerationConfig, *, special_tokens: bool = True
                ) -> list[int]:
        room = self.info.max_positions - config.max_new_tokens
        if room < 1:
            raise ConfigError(f"max_new_tokens={config.max_new_tokens} leaves no room for a "
                              f"prompt in the model's {self.info.max_positions} positions")
        text, cut = cut_tail(text, room)  # what `room` tokens can hold, at most
        if cut:
            log.warning("the prompt was cut to its last %d characters before tokenizing "
                        "(%d tokens fit with max_new_tokens=%d)", len(text), room,
                        config.max_new_tokens)
        (encoding,) = encode(self.tokenizer, [text], special_tokens=special_tokens)
        ids = encoding.ids
        if not ids:
            raise ConfigError("the prompt encodes to no tokens; pass non-empty text")
        if len(ids) > room:
            log.warning("the prompt has %d tokens; only its last %d fit with max_new_tokens=%d",
                        len(ids), room, config.max_new_tokens)
            ids = ids[-room:]
        return ids

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def continuation(self, prompt_ids: list[int], generated: list[int]) -> str:
        """As transformers' pipeline: the decoded sequence after the prompt's own text."""
        return self._decode(prompt_ids + generated)[len(self._decode(prompt_ids)):]

    def _text(self, prompt: str, prompt_ids: list[int], generated: list[int],
              config: GenerationConfig) -> str:
        text = self.continuation(prompt_ids, generated)
        text = text[: _stop_at(text, config.stop)]
        return prompt + text if config.return_full_text else text


def _stop_at(text: str, stops: tuple[str, ...]) -> int:
    """Where `text` ends: before its first stop string (str.find: linear), else its end."""
    return min([i for s in stops if (i := text.find(s)) >= 0], default=len(text))


def _config(options: dict[str, Any]) -> GenerationConfig:
    """GenerationConfig.make, and the stop strings checked as texts and bounded."""
    config = GenerationConfig.make(**options)
    for i, stop in enumerate(config.stop):
        check_text(stop, f"stop string {i}")
    total = sum(len(s) for s in config.stop)
    if len(config.stop) > LIMITS.stops or total > LIMITS.stop_chars:
        raise ConfigError(f"stop has {len(config.stop)} strings of {total} characters in all; "
                          f"at most {LIMITS.stops} strings of {LIMITS.stop_chars} characters")
    return config
