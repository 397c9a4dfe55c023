"""MPNet (all-mpnet-base-v2's shape): relative position bias in every attention, which
onnxruntime's Attention cannot take, so attention stays unfused (its MatMuls are
quantized); positions start after the padding index, as RoBERTa's."""

from edgelm.export.architectures.registry import EncoderRecipe, Family, register

FAMILY = register(Family(
    name="mpnet", model_types=("mpnet",),
    encoder=EncoderRecipe(position_offset=2, fused_attention=False)))
