"""Task pipelines; importing this package registers them with `Pipeline`."""

from edgelm.pipelines.base import Pipeline
from edgelm.pipelines.encoders import (
    EmbeddingPipeline,
    TextClassificationPipeline,
    TokenClassificationPipeline,
)
from edgelm.pipelines.generation import TextGenerationPipeline
from edgelm.pipelines.question_answering import QuestionAnsweringPipeline
from edgelm.pipelines.text2text import Text2TextGenerationPipeline

__all__ = [
    "Pipeline",
    "EmbeddingPipeline",
    "TextClassificationPipeline",
    "TokenClassificationPipeline",
    "QuestionAnsweringPipeline",
    "TextGenerationPipeline",
    "Text2TextGenerationPipeline",
]
