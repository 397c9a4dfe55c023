"""Text2TextGenerationPipeline: summarization and translation with encoder-decoders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgelm.errors import ConfigError, ModelFolderError
from edgelm.generation.config import GenerationConfig
from edgelm.generation.search import beam_search, sample_or_greedy
from edgelm.generation.seq2seq import MASK, Seq2SeqRunner
from edgelm.generation.streaming import TextStream
from edgelm.pipelines.base import Pipeline
from edgelm.pipelines.generation import _config
from edgelm.session import create_session, memory_errors
from edgelm.tokenizer import check_texts, encode
from edgelm.types import Task


class Text2TextGenerationPipeline(Pipeline):
    """`pipe("translate English to German: Hello")` -> [{"generated_text": ...}].

    T5, BART and Marian folders. Options are transformers' `generate` names, as for
    text generation (greedy by default, `num_beams`, sampling with `seed`); the
    checkpoint's forced first/last tokens apply unless given. A list of texts
    returns one list of results per text. Sources longer than the model takes are
    truncated (special tokens kept), as transformers' pipeline does with truncation.
    """

    task = Task.TEXT2TEXT_GENERATION

    def __init__(self, folder: str | Path, **kwargs: Any) -> None:
        super().__init__(folder, **kwargs)
        info, seq2seq = self.manifest.decoder, self.manifest.seq2seq
        if info is None or seq2seq is None:
            raise ModelFolderError(f"{self.folder}: the manifest lacks its decoder or seq2seq "
                                   "section; export the model again")
        self.tokenizer = self._load_tokenizer()
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=seq2seq.max_source_positions)
        encoder_path, facts = self.files.graph(seq2seq.encoder_file)
        encoder = create_session(encoder_path, device=self.device, threads=self._threads,
                                 **self._packed_load(encoder_path, facts))
        self.runner = Seq2SeqRunner(encoder, self.session, info, seq2seq)
        self.eos_ids = list(info.eos_token_ids)
        self.pad_id = self.manifest.pad_token_id
        self.defaults = {"forced_bos_token_id": seq2seq.forced_bos_token_id,
                         "forced_eos_token_id": seq2seq.forced_eos_token_id,
                         "suppress_tokens": tuple(seq2seq.suppress_tokens)}

    def __call__(self, texts: Any, /, **options: Any) -> Any:
        items, single = check_texts(texts)
        config = self.config(options)
        results: list[list[dict[str, str]]] = []
        for start in range(0, len(items), self.batch_size):
            sources = [e.ids for e in encode(self.tokenizer, items[start:start + self.batch_size])]
            for outs in self.generate_ids(sources, config):
                results.append([{"generated_text": self.tokenizer.decode(
                    ids, skip_special_tokens=True)} for ids in outs])
        return results[0] if single else results

    def stream(self, text: str, /, **options: Any) -> Iterator[str]:
        """Yield the output text piece by piece as tokens are decoded (greedy or sampled)."""
        items, single = check_texts(text)
        config = self.config(options)
        if not single or config.num_beams > 1 or config.num_return_sequences > 1:
            raise ConfigError("stream decodes one sequence of one text; pass one text, "
                              "num_beams=1 and num_return_sequences=1")
        (source,) = encode(self.tokenizer, items)
        decoder = self.runner.bind(self.runner.encode([source.ids], pad_id=self.pad_id))
        pieces = TextStream(self.tokenizer, [])
        for tokens, _ in sample_or_greedy(decoder, self.runner.start(1), config,
                                          self.eos_ids, pad_id=self.pad_id):
            if piece := pieces.push(int(tokens[0])):
                yield piece
        if rest := pieces.flush():
            yield rest

    def config(self, options: dict[str, Any]) -> GenerationConfig:
        config = _config({**self.defaults, **options})  # the checkpoint's, unless given
        if config.stop:
            raise ConfigError("stop strings are for text generation; drop stop")
        return config

    def generate_ids(self, sources: list[list[int]], config: GenerationConfig
                     ) -> list[list[list[int]]]:
        """Generated ids (eos included) per source, num_return_sequences each."""
        n, beams = config.num_return_sequences, config.num_beams > 1
        rows = len(sources) * max(config.num_beams, n)
        self.runner.decoder.check_memory(rows, 1 + config.max_new_tokens)
        with memory_errors("generating"):
            memory = self.runner.encode(sources, pad_id=self.pad_id)
            if beams:
                decoder = self.runner.bind(memory)
                found = beam_search(decoder, self.runner.start(len(sources)), config,
                                    self.eos_ids, pad_id=self.pad_id)
                return [[h.tokens for h in hyps] for hyps in found]
            repeated = {k: np.repeat(v, n, axis=0) for k, v in memory.items()} if n > 1 \
                else memory
            decoder = self.runner.bind(repeated)
            out: list[list[int]] = [[] for _ in range(len(repeated[MASK]))]
            for tokens, active in sample_or_greedy(decoder, self.runner.start(len(out)), config,
                                                   self.eos_ids, pad_id=self.pad_id):
                for row in np.flatnonzero(active):
                    out[row].append(int(tokens[row]))
        return [out[i * n:(i + 1) * n] for i in range(len(sources))]
