"""BERT: the encoder onnxruntime's optimizer knows best."""

from edgelm.export.architectures.registry import EncoderRecipe, Family, register

FAMILY = register(Family(name="bert", model_types=("bert",), encoder=EncoderRecipe()))
