"""Every architecture family edgelm exports: one module each, one registry.

Importing this package registers them all; it imports neither torch nor
transformers, so a checkpoint is identified (or refused) from its config.json at once.
"""

from edgelm.export.architectures import (  # noqa: F401  (each registers its family)
    albert,
    bart,
    bert,
    deberta,
    distilbert,
    electra,
    gemma,
    gemma2,
    gemma3,
    gpt2,
    gpt_neo,
    gpt_neox,
    llama,
    marian,
    mistral,
    modernbert,
    mpnet,
    opt,
    phi3,
    qwen2,
    qwen3,
    roberta,
    t5,
)
from edgelm.export.architectures.registry import (
    DECODER_TASKS,
    ENCODER_TASKS,
    FAMILIES,
    SEQ2SEQ_TASKS,
    EncoderRecipe,
    Family,
    Identified,
    check_task,
    family_for,
    identify,
    named_task,
)

__all__ = ["DECODER_TASKS", "ENCODER_TASKS", "FAMILIES", "SEQ2SEQ_TASKS", "EncoderRecipe", "Family",
           "Identified", "check_task", "family_for", "identify", "named_task"]
