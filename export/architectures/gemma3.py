"""Gemma 3 (text): Gemma 2's layer with Qwen3's per-head q/k norm (in Gemma's
(1 + weight) form), no soft-capping by default, and two rotary tables: sliding-window
layers rotate with the local base, global layers with the global one (and its
scaling)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelm.export.architectures.gemma2 import Gemma2Writer
from edgelm.export.architectures.qwen3 import Qwen3Writer
from edgelm.export.architectures.registry import Family, register

GLOBAL, LOCAL = "full_attention", "sliding_attention"


class Gemma3Writer(Gemma2Writer, Qwen3Writer):
    """Gemma 2's block, norms and caps; Qwen3's q/k head norm (qkv_inputs)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._local_tables = False

    def rotary_tables(self) -> tuple[np.ndarray, np.ndarray]:
        return self.rotary_from(self.m.rotary_emb, f"{GLOBAL}_")

    def rotary_inputs(self, layer: int) -> list[str]:
        if self.config.layer_types[layer] != LOCAL:
            return super().rotary_inputs(layer)
        if not self._local_tables:  # written once, by the first local layer
            cos, sin = self.rotary_from(self.m.rotary_emb, f"{LOCAL}_")
            self.g.constant("cos_cache.local", cos)
            self.g.constant("sin_cache.local", sin)
            self._local_tables = True
        return ["cos_cache.local", "sin_cache.local"]


FAMILY = register(Family(name="gemma3", model_types=("gemma3_text",), decoder=Gemma3Writer))
