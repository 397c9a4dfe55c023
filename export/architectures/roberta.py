"""RoBERTa, XLM-RoBERTa, CamemBERT: BERT with positions after the padding index."""

from edgelm.export.architectures.registry import EncoderRecipe, Family, register

FAMILY = register(Family(name="roberta", model_types=("roberta", "xlm-roberta", "camembert"),
                         encoder=EncoderRecipe(position_offset=2)))
