"""DeBERTa-v2 / v3: disentangled attention (content-to-position and position-to-content
terms from relative-position buckets). onnxruntime has no fusion for it: attention stays
unfused, its MatMuls quantized; the feed-forward GELUs are fused."""

from edgelm.export.architectures.registry import EncoderRecipe, Family, register

FAMILY = register(Family(
    name="deberta-v2", model_types=("deberta-v2",),
    encoder=EncoderRecipe(fused_attention=False)))
