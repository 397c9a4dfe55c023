"""DistilBERT: BERT without token types or pooler; fused as BERT."""

from edgelm.export.architectures.registry import EncoderRecipe, Family, register

FAMILY = register(Family(name="distilbert", model_types=("distilbert",),
                         encoder=EncoderRecipe()))
