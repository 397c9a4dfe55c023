"""Marian (opus-mt translation): BART's layout with fixed sinusoidal positions, no
embedding norm, and swish feed-forwards in the published checkpoints."""

from typing import Any

from edgelm.export.architectures.registry import Family, register
from edgelm.export.seq2seq_graph import Seq2SeqWriter


class MarianWriter(Seq2SeqWriter):
    def embedding_norm(self, side: str) -> Any:
        return None


FAMILY = register(Family(name="marian", model_types=("marian",), seq2seq=MarianWriter))
