"""ALBERT: one set of layer weights shared by every layer, a factorized embedding.

onnxruntime's optimizer fuses the attention of one traced layer only (the shared
weights confuse its matcher), so the family does not claim a fused attention.
"""

from edgelm.export.architectures.registry import EncoderRecipe, Family, register

FAMILY = register(Family(
    name="albert", model_types=("albert",),
    encoder=EncoderRecipe(layer_pattern=r"albert_layer_groups\.(\d+)/",
                          fused_attention=False)))
