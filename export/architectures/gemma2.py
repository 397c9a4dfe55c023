"""Gemma 2: Gemma with four norms per layer (after attention and around the MLP),
attention scores and logits soft-capped (GroupQueryAttention's `softcap`; a tanh on
the logits), queries scaled by query_pre_attn_scalar, and sliding-window layers
alternating with global ones (config.layer_types)."""

from __future__ import annotations

from edgelm.export.architectures.gemma import GemmaWriter
from edgelm.export.architectures.registry import Family, register


class Gemma2Writer(GemmaWriter):
    def activation_name(self) -> str:
        return str(getattr(self.config, "hidden_activation", None) or self.config.hidden_act)

    def attention_scale(self) -> float:
        return float(self.config.query_pre_attn_scalar) ** -0.5

    def attention_softcap(self) -> float | None:
        return self._cap("attn_logit_softcapping")

    def logit_softcap(self) -> float | None:
        return self._cap("final_logit_softcapping")

    def _cap(self, name: str) -> float | None:
        cap = getattr(self.config, name, None)
        return None if cap is None else float(cap)

    def block(self, x: str, residual: str, layer: int) -> tuple[str, str]:
        """norm(attention) joins the residual, then norm(mlp(norm(residual)))."""
        layers = self.m.layers[layer]
        attn, _ = self.attention(x, layer)
        attn = self.norm(attn, None, layers.post_attention_layernorm)[0]
        x, residual = self.norm(attn, residual, layers.pre_feedforward_layernorm)
        out, _ = self.mlp(x, layer)
        out = self.norm(out, None, layers.post_feedforward_layernorm)[0]
        return self.norm(out, residual, self.next_norm(layer))


FAMILY = register(Family(name="gemma2", model_types=("gemma2",), decoder=Gemma2Writer))
