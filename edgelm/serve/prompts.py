"""Prompt text to token ids, as the pipeline encodes it, refusing what does not fit."""

from __future__ import annotations

from typing import Any

from edgelm.serve.errors import ApiError
from edgelm.tokenizer import cut_tail, encode


def encode_prompt(pipe: Any, text: str, *, max_tokens: int | None, capacity: int,
                  special_tokens: bool) -> tuple[list[int], int]:
    """The prompt's ids and the tokens it may generate (all that fit when not given).

    Ids are the pipeline's (TextGenerationPipeline._encode) for every prompt that fits:
    cut_tail never changes the ids of a text that fits. A longer prompt is a 400, not
    cut as the pipeline cuts it.
    """
    room = capacity - (max_tokens or 1)
    if room < 1:
        raise ApiError(400, f"max_tokens={max_tokens} leaves no room for a prompt in the "
                       f"{capacity} positions this model serves", param="max_tokens",
                       code="context_length_exceeded")
    cut_text, cut = cut_tail(text, room)
    ids = [] if cut else encode(pipe.tokenizer, [cut_text], special_tokens=special_tokens)[0].ids
    if cut or len(ids) > room:
        size = f"{len(ids)} tokens" if not cut else f"{len(text)} characters"
        raise ApiError(400, f"the prompt ({size}) and max_tokens={max_tokens or 1} do not fit "
                       f"in the {capacity} positions this model serves; shorten the prompt",
                       param="messages" if not special_tokens else "prompt",
                       code="context_length_exceeded")
    if not ids:
        raise ApiError(400, "the prompt encodes to no tokens; pass non-empty text",
                       param="prompt")
    return ids, max_tokens if max_tokens is not None else capacity - len(ids)


def completion_text(pipe: Any, prompt: list[int], tokens: list[int], stops: tuple[str, ...]
                    ) -> str:
    """What the pipeline returns for these tokens (return_full_text=False): the decoded
    continuation, ended before its first stop string."""
    text = pipe.continuation(prompt, tokens)
    return text[: min([i for s in stops if (i := text.find(s)) >= 0], default=len(text))]
