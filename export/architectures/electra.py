"""ELECTRA: BERT with an embedding projection; fused as BERT."""

from edgelm.export.architectures.registry import EncoderRecipe, Family, register

FAMILY = register(Family(name="electra", model_types=("electra",), encoder=EncoderRecipe()))
