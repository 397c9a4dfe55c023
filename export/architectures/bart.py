"""BART: post-norm encoder-decoder, learned positions offset by 2, tied embeddings."""

from edgelm.export.architectures.registry import Family, register
from edgelm.export.seq2seq_graph import Seq2SeqWriter


class BartWriter(Seq2SeqWriter):
    position_offset = 2  # BartLearnedPositionalEmbedding's first two rows are unused


FAMILY = register(Family(name="bart", model_types=("bart",), seq2seq=BartWriter))
