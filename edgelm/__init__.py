"""edgelm: fine-tuned Hugging Face checkpoints, run fast and small, torch-free."""

from edgelm.errors import (
    ConfigError,
    EdgeLMError,
    ExportError,
    MissingDependencyError,
    ModelFolderError,
    ProviderUnavailableError,
    UnsupportedModelError,
    ValidationError,
)
from edgelm.generation import GenerationConfig
from edgelm.pipelines import (
    EmbeddingPipeline,
    Pipeline,
    QuestionAnsweringPipeline,
    Text2TextGenerationPipeline,
    TextClassificationPipeline,
    TextGenerationPipeline,
    TokenClassificationPipeline,
)
from edgelm.types import Device, Precision, Task

__version__ = "0.1.0"

__all__ = [
    "Pipeline",
    "EmbeddingPipeline",
    "TextClassificationPipeline",
    "TokenClassificationPipeline",
    "QuestionAnsweringPipeline",
    "TextGenerationPipeline",
    "Text2TextGenerationPipeline",
    "GenerationConfig",
    "Task",
    "Precision",
    "Device",
    "EdgeLMError",
    "ConfigError",
    "ExportError",
    "MissingDependencyError",
    "ModelFolderError",
    "ProviderUnavailableError",
    "UnsupportedModelError",
    "ValidationError",
    "__version__",
]
