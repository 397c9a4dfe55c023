"""Generation options, checked once with errors that name the allowed range."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from edgelm.errors import ConfigError, check_integer

TEMPERATURE = (1e-4, 100.0)  # the allowed ranges of the options logits are divided by
REPETITION_PENALTY = (0.01, 100.0)


@dataclass(frozen=True, kw_only=True)
class GenerationConfig:
    """What transformers' `generate` calls the same names.

    `stop` strings end a sequence; the returned text stops before them.
    `seed` makes sampling reproducible (numpy's PCG64).
    """

    max_new_tokens: int = 64
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    num_beams: int = 1
    num_return_sequences: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False  # True, False or "never", as in transformers
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None
    return_full_text: bool = True
    # Tokens forced first / last (at max_new_tokens), as transformers' ForcedBOS/EOS
    # processors; encoder-decoder folders default them from the checkpoint (BART, Marian).
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | None = None
    # Token ids never generated (transformers' suppress_tokens; Marian's checkpoints ban
    # their pad token through bad_words_ids, which an export turns into this).
    suppress_tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "suppress_tokens", tuple(self.suppress_tokens))
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        check_integer("max_new_tokens", self.max_new_tokens, 1)
        check_integer("min_new_tokens", self.min_new_tokens, 0)
        check_integer("num_beams", self.num_beams, 1)
        check_integer("num_return_sequences", self.num_return_sequences, 1)
        check_integer("top_k", self.top_k, 0)
        # Bounded so that dividing float32 logits by them cannot overflow to inf or NaN.
        _number("temperature", self.temperature, f"in [{TEMPERATURE[0]}, {TEMPERATURE[1]}]",
                lambda v: TEMPERATURE[0] <= v <= TEMPERATURE[1])
        _number("top_p", self.top_p, "in (0, 1]", lambda v: 0 < v <= 1)
        _number("repetition_penalty", self.repetition_penalty,
                f"in [{REPETITION_PENALTY[0]}, {REPETITION_PENALTY[1]}]",
                lambda v: REPETITION_PENALTY[0] <= v <= REPETITION_PENALTY[1])
        _number("length_penalty", self.length_penalty, "finite", lambda v: abs(v) < float("inf"))
        if self.min_new_tokens > self.max_new_tokens:
            raise ConfigError(f"min_new_tokens={self.min_new_tokens} must be <= "
                              f"max_new_tokens={self.max_new_tokens}")
        if self.num_return_sequences > self.num_beams and not self.do_sample:
            raise ConfigError(f"num_return_sequences={self.num_return_sequences} must be <= "
                              f"num_beams={self.num_beams} (or set do_sample=True)")
        if self.early_stopping not in (True, False, "never"):
            raise ConfigError(f"early_stopping={self.early_stopping!r} must be True, False "
                              "or 'never'")
        if self.num_beams > 1 and self.do_sample:
            raise ConfigError("beam search with sampling is not supported; "
                              "use num_beams=1 with do_sample=True, or do_sample=False")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError(f"stop={self.stop!r} must be non-empty strings")
        for name in ("forced_bos_token_id", "forced_eos_token_id"):
            if getattr(self, name) is not None:
                check_integer(name, getattr(self, name), 0)
        for token in self.suppress_tokens:
            check_integer("suppress_tokens item", token, 0)
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise ConfigError(f"seed={self.seed!r} must be an integer >= 0")

    @classmethod
    def make(cls, base: GenerationConfig | None = None, **options: Any) -> GenerationConfig:
        """`base` with `options` applied; unknown option names are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown generation option(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        # Sampling options imply sampling, as users expect from the names.
        if "do_sample" not in options and any(
                k in options for k in ("temperature", "top_k", "top_p", "seed")):
            options["do_sample"] = options.get("temperature", 1.0) != 0
        if options.get("temperature") == 0:  # a common way of asking for greedy
            options["temperature"], options["do_sample"] = 1.0, False
        return replace(base or cls(), **options)


def _number(name: str, value: Any, allowed: str, ok: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise ConfigError(f"{name}={value!r} must be a number {allowed}")
