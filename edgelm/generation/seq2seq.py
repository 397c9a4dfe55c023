"""Drives an encoder-decoder: the encoder graph once per batch of sources, then the
decoder graph through DecoderRunner, with the encoder's cross-attention keys and
values (and the source mask) as per-row inputs that never change."""

from __future__ import annotations

import copy

import numpy as np
import onnxruntime as ort

from edgelm.errors import ConfigError, ModelFolderError
from edgelm.generation.runner import DecoderRunner
from edgelm.manifest import DecoderInfo, Seq2SeqInfo
from edgelm.session import running

MASK = "encoder_attention_mask"


def cross_names(layers: int) -> list[str]:
    return [f"cross.{layer}.{kind}" for layer in range(layers) for kind in ("key", "value")]


class Seq2SeqRunner:
    def __init__(self, encoder: ort.InferenceSession, decoder: ort.InferenceSession,
                 info: DecoderInfo, seq2seq: Seq2SeqInfo) -> None:
        self.encoder, self.info, self.seq2seq = encoder, info, seq2seq
        self.decoder = DecoderRunner(decoder, info)
        self.names = cross_names(info.num_layers)

    def encode(self, sources: list[list[int]], *, pad_id: int) -> dict[str, np.ndarray]:
        """Right-padded sources through the encoder: the decoder's per-row inputs."""
        if any(not s for s in sources):
            raise ConfigError("a source text encodes to no tokens; pass non-empty text")
        width = max(len(s) for s in sources)
        if width > self.seq2seq.max_source_positions:
            raise ConfigError(f"a source has {width} tokens; the model takes at most "
                              f"{self.seq2seq.max_source_positions}")
        ids = np.full((len(sources), width), pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, s in enumerate(sources):
            ids[row, : len(s)], mask[row, : len(s)] = s, 1
        with running("the encoder graph"):
            outputs = self.encoder.run(self.names, {"input_ids": ids, "attention_mask": mask})
        expected = (len(sources), self.seq2seq.cross_heads, width, self.seq2seq.cross_head_size)
        if any(o.shape != expected for o in outputs):
            raise ModelFolderError(f"the encoder's outputs are {[list(o.shape) for o in outputs]}"
                                   f", not {list(expected)}; export the model again")
        memory = dict(zip(self.names, outputs))
        memory[MASK] = mask.astype(np.int32)
        return memory

    def bind(self, memory: dict[str, np.ndarray]) -> DecoderRunner:
        """A decoder runner (sharing the session) whose prefills decode these sources."""
        bound = copy.copy(self.decoder)
        bound.memory = memory
        return bound

    def start(self, rows: int) -> list[list[int]]:
        """The decoder's prompts: its start token, one per row."""
        return [[self.seq2seq.decoder_start_token_id] for _ in range(rows)]
