"""Mistral: Llama with sliding-window attention on every layer (config.sliding_window,
read by LlamaWriter into GroupQueryAttention's local window)."""

from edgelm.export.architectures.llama import LlamaWriter
from edgelm.export.architectures.registry import Family, register

FAMILY = register(Family(name="mistral", model_types=("mistral",), decoder=LlamaWriter))
