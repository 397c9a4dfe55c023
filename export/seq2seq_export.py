"""The encoder-decoder's stages of the export: two graphs written fused at their
precision, validated against PyTorch with and without the cache."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx.external_data_helper import convert_model_to_external_data

from edgelm.export import precision as precisions
from edgelm.export.checkpoint import Checkpoint
from edgelm.export.decoder_export import WEIGHTS_FILE, eos_token_ids
from edgelm.export.folder import MODEL_FILE
from edgelm.export.optimize import contrib_op_counts
from edgelm.export.quantize_weights import LinearWriter, writer_for
from edgelm.export.seq2seq_graph import Seq2SeqShape, build_seq2seq
from edgelm.export.tokenizer_files import pad_token_id
from edgelm.export.validate_decoder import gated
from edgelm.generation.seq2seq import Seq2SeqRunner
from edgelm.manifest import DecoderInfo, Seq2SeqInfo, Validation
from edgelm.types import Precision, Target

log = logging.getLogger(__name__)

ENCODER_FILE = "encoder.onnx"
SOURCES = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.",
    "It is named after the engineer Gustave Eiffel, whose company designed and built it.",
    "Café, naïve, 12345.",
)
TARGET_TOKENS = 12  # PyTorch's greedy continuation, fed back with teacher forcing


class Seq2SeqExport:
    """encoder.onnx (source -> every layer's cross keys/values) and model.onnx (the
    decoder), written by the family's Seq2SeqWriter."""

    def __init__(self, checkpoint: Checkpoint, precision: Precision, target: Target,
                 staging: Path, *, block_size: int = 32, table_bits: int = 8) -> None:
        self.checkpoint, self.precision, self.staging = checkpoint, precision, staging
        self.writer: LinearWriter = writer_for(
            precision, block_size=block_size, table_bits=table_bits,
            dtype=precisions.activations(precision, target))
        self.graphs: tuple[onnx.ModelProto, onnx.ModelProto] | None = None
        self.shape: Seq2SeqShape | None = None
        self.info: DecoderInfo | None = None
        self.seq2seq: Seq2SeqInfo | None = None

    def stages(self) -> list[tuple[str, Callable[[], None]]]:
        name, precision = self.checkpoint.family.name, self.precision.value
        return [(f"building the {name} encoder and decoder graphs ({precision} weights, "
                 "MultiHeadAttention, GroupQueryAttention, cross-attention computed once)",
                 self._build),
                (f"saving {ENCODER_FILE} and {MODEL_FILE}", self._save)]

    def _build(self) -> None:
        family = self.checkpoint.family
        assert family.seq2seq is not None
        encoder, decoder, self.shape = build_seq2seq(family.seq2seq, self.checkpoint.model,
                                                     self.checkpoint.config, self.writer)
        self.graphs = encoder, decoder

    def _save(self) -> None:
        """The decoder's weights in model.onnx.data, the encoder's in encoder.onnx.data, but
        for the tensors both graphs hold (the shared embedding table): the encoder reads
        those from the decoder's file (opus-mt int8: 207 -> 88 MB)."""
        assert self.graphs is not None
        encoder, decoder = self.graphs
        twins = {t.name: t.raw_data for t in decoder.graph.initializer}
        onnx.save(decoder, str(self.staging / MODEL_FILE), save_as_external_data=True,
                  all_tensors_to_one_file=True, location=WEIGHTS_FILE, size_threshold=1024)
        stored = {t.name: list(t.external_data) for t in decoder.graph.initializer
                  if t.data_location == onnx.TensorProto.EXTERNAL}
        convert_model_to_external_data(encoder, all_tensors_to_one_file=True,
                                       location=f"{ENCODER_FILE}.data", size_threshold=1024)
        for tensor in encoder.graph.initializer:
            if tensor.name in stored and twins[tensor.name] == tensor.raw_data:
                tensor.ClearField("raw_data")
                del tensor.external_data[:]
                tensor.external_data.extend(stored[tensor.name])
        onnx.save(encoder, str(self.staging / ENCODER_FILE))

    def validate(self, tokenizer: Any) -> Validation:
        assert self.shape is not None
        config, folder, model = self.checkpoint.config, self.checkpoint.folder, \
            self.checkpoint.model
        generation = getattr(model, "generation_config", None)

        def forced(name: str) -> int | None:
            value = getattr(generation, name, None)
            return None if value is None else int(value)

        self.info = DecoderInfo(**asdict(self.shape.decoder),
                                eos_token_ids=eos_token_ids(folder, config))
        self.seq2seq = Seq2SeqInfo(
            encoder_file=ENCODER_FILE, decoder_start_token_id=self.shape.decoder_start_token_id,
            cross_heads=self.shape.cross_heads, cross_head_size=self.shape.cross_head_size,
            max_source_positions=self.shape.max_source_positions,
            forced_bos_token_id=forced("forced_bos_token_id"),
            forced_eos_token_id=forced("forced_eos_token_id"),
            suppress_tokens=suppressed(generation))
        sessions = [ort.InferenceSession(str(self.staging / name),
                                         providers=["CPUExecutionProvider"])
                    for name in (ENCODER_FILE, MODEL_FILE)]
        runner = Seq2SeqRunner(*sessions, self.info, self.seq2seq)
        pad = pad_token_id(tokenizer, config)
        sources = [tokenizer.encode(s).ids[: self.shape.max_source_positions] for s in SOURCES]
        return validate_seq2seq(runner, model, sources, pad, self.precision,
                                tolerance=self.checkpoint.family.tolerance)

    def manifest_fields(self, tokenizer: Any) -> dict[str, Any]:
        assert self.graphs is not None and self.shape is not None
        encoder, decoder = self.graphs
        fused = Counter(contrib_op_counts(encoder)) + Counter(contrib_op_counts(decoder))
        return dict(
            inputs=[i.name for i in decoder.graph.input],
            outputs=[o.name for o in decoder.graph.output],
            max_length=self.shape.max_source_positions,
            pad_token_id=pad_token_id(tokenizer, self.checkpoint.config),
            fused_ops=dict(fused), quantization=dict(self.writer.quantization),
            decoder=self.info, seq2seq=self.seq2seq,
        )


def suppressed(generation: Any) -> list[int]:
    """Token ids the checkpoint never generates: its suppress_tokens and its one-token
    bad_words_ids (longer banned sequences are not applied, and said so)."""
    tokens = [int(t) for t in getattr(generation, "suppress_tokens", None) or []]
    for words in getattr(generation, "bad_words_ids", None) or []:
        if len(words) == 1:
            tokens.append(int(words[0]))
        else:
            log.warning("bad_words_ids entry %s (several tokens) is not applied by edgelm",
                        words)
    return sorted(set(tokens))


def validate_seq2seq(runner: Seq2SeqRunner, model: torch.nn.Module, sources: list[list[int]],
                     pad: int, precision: Precision, *, tolerance: float) -> Validation:
    """PyTorch's greedy targets fed to both (teacher forcing): logits of every position at
    once (no cache) and step by step (cache), over a batch of sources of unequal lengths."""
    width = max(len(s) for s in sources)
    ids = torch.full((len(sources), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, s in enumerate(sources):
        ids[row, : len(s)], mask[row, : len(s)] = torch.tensor(s), 1
    with torch.no_grad():
        targets = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 num_beams=1, max_new_tokens=TARGET_TOKENS)
        expected = model(input_ids=ids, attention_mask=mask,
                         decoder_input_ids=targets).logits.float().numpy()
    rows = targets.tolist()
    decoder = runner.bind(runner.encode(sources, pad_id=pad))
    at_once, _ = decoder.prefill(rows, len(rows[0]), every_position=True)
    worst = float(np.abs(at_once - expected).max())
    last, state = decoder.prefill([r[:1] for r in rows], len(rows[0]))
    for t in range(1, len(rows[0])):
        worst = max(worst, float(np.abs(last - expected[:, t - 1]).max()))
        last = decoder.step(state, targets[:, t].numpy())
    worst = max(worst, float(np.abs(last - expected[:, -1]).max()))
    # Agreement over the tokens PyTorch chose freely: each row up to its eos, less a
    # token forced first or last (those are not the logits' argmax).
    banned = runner.seq2seq.suppress_tokens
    at_once[..., banned] = -np.inf  # as generate never picks them
    predicted, chosen = at_once.argmax(-1), targets.numpy()
    agree = total = 0
    seq2seq = runner.seq2seq
    eos = set(runner.info.eos_token_ids)
    for row in range(len(rows)):
        for t in range(1, len(rows[row])):
            forced = (t == 1 and seq2seq.forced_bos_token_id is not None) or \
                (t == TARGET_TOKENS and seq2seq.forced_eos_token_id is not None)
            if not forced:
                agree += int(predicted[row, t - 1] == chosen[row, t])
                total += 1
            if chosen[row, t] in eos:
                break
    return gated("encoder-decoder", precision, tolerance=tolerance,
                 scale=float(np.abs(expected).max()), worst=worst,
                 agreement=agree / max(total, 1),
                 cases=[f"batch={len(sources)},source={width},target={len(rows[0])},"
                        "cache and no cache", f"greedy agreement over {total} teacher-forced "
                        "tokens"])
