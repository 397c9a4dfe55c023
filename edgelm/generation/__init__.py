"""Text generation over one ONNX decoder graph: cache, search, streaming."""

from edgelm.generation.config import GenerationConfig
from edgelm.generation.runner import DecoderRunner

__all__ = ["GenerationConfig", "DecoderRunner"]
