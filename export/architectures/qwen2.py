"""Qwen2 / Qwen2.5: Llama with biases on q, k and v, sliding-window layers when configured
(both read by LlamaWriter)."""

from edgelm.export.architectures.llama import LlamaWriter
from edgelm.export.architectures.registry import Family, register

FAMILY = register(Family(name="qwen2", model_types=("qwen2",), decoder=LlamaWriter))
