"""Task pipelines; importing this package registers them with `Pipeline`."""

from edgelm.pipelines.base import Pipeline
from edgelm.pipelines.encoders import (
    EmbeddingPipeline,
    TextClassificationPipeline,
    TokenClassificationPipeline,
)
from edgelm.pipelines.generation import TextGenerationPipeline

__all__ = [
    "Pipeline",
    "EmbeddingPipeline",
    "TextClassificationPipeline",
    "TokenClassificationPipeline",
    "TextGenerationPipeline",
]
