"""ModernBERT: rotary positions, alternating global and sliding-window attention, GeGLU.
onnxruntime's BERT fusions match none of it but the GELUs: attention stays unfused."""

from edgelm.export.architectures.registry import EncoderRecipe, Family, register

FAMILY = register(Family(
    name="modernbert", model_types=("modernbert",),
    encoder=EncoderRecipe(layer_pattern=r"layers\.(\d+)/", fused_attention=False)))
