"""Request bodies, checked field by field into typed requests (OpenAI's names and ranges).

Unknown fields are refused, so a typo fails loudly; a few OpenAI fields that edgelm
does not implement are accepted only at their defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edgelm.errors import ConfigError
from edgelm.serve.errors import bad_request
from edgelm.tokenizer import check_text

MAX_INPUTS = 2048  # texts in one embeddings / classify request (OpenAI's embeddings limit)
MAX_STOPS = 16
MAX_PROMPTS = 16
# OpenAI fields edgelm does not implement, accepted at these values only.
DEFAULTS_ONLY: dict[str, tuple[Any, ...]] = {
    "frequency_penalty": (0, 0.0, None), "presence_penalty": (0, 0.0, None),
    "logprobs": (False, None), "top_logprobs": (None, 0), "logit_bias": (None, {}),
    "echo": (False, None), "best_of": (None, 1), "suffix": (None,), "tools": (None, []),
    "tool_choice": (None, "none"), "parallel_tool_calls": (None, True, False),
    "response_format": (None, {"type": "text"}), "dimensions": (None,),
}
IGNORED = {"user", "metadata", "store", "service_tier", "truncate"}


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise bad_request(f"the body is not valid JSON ({str(e)[:100]})") from None
    if not isinstance(value, dict):
        raise bad_request(f"the body must be a JSON object, not {type(value).__name__}")
    return value


class Fields:
    """Reads a body's fields once each; `done` refuses the ones nobody read."""

    def __init__(self, body: dict[str, Any], known: set[str]) -> None:
        self.body, self.known = body, known

    def get(self, name: str, kinds: tuple[type, ...], default: Any = None, *,
            required: bool = False) -> Any:
        if name not in self.body or self.body[name] is None:
            if required:
                raise bad_request(f"{name} is required", param=name)
            return default
        value = self.body[name]
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            allowed = " or ".join(k.__name__ for k in kinds)
            raise bad_request(f"{name} must be {allowed}, not {type(value).__name__}",
                              param=name)
        return value

    def number(self, name: str, default: float, low: float, high: float, *,
               open_low: bool = False) -> float:
        value = self.get(name, (int, float), default)
        if not (low < value if open_low else low <= value) or value > high:
            bounds = f"{'(' if open_low else '['}{low}, {high}]"
            raise bad_request(f"{name}={value!r} must be a number in {bounds}", param=name)
        return float(value)

    def integer(self, name: str, default: int | None, low: int, high: int) -> int | None:
        value = self.get(name, (int,), default)
        if value is not None and not low <= value <= high:
            raise bad_request(f"{name}={value!r} must be an integer from {low} to {high}",
                              param=name, code="invalid_value")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.body) - self.known - IGNORED - set(DEFAULTS_ONLY))
        if unknown:
            raise bad_request(f"unknown field(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(self.known))}", param=unknown[0])
        for name, allowed in DEFAULTS_ONLY.items():
            if name in self.body and self.body[name] not in allowed:
                raise bad_request(f"{name}={self.body[name]!r} is not supported by edgelm; "
                                  "leave it out", param=name)


def texts(value: Any, name: str, *, limit: int) -> tuple[list[str], bool]:
    """A string or a non-empty list of strings (checked as the pipeline checks texts)."""
    single = isinstance(value, str)
    items = [value] if single else value
    if not isinstance(items, list) or not items or len(items) > limit:
        raise bad_request(f"{name} must be a string or a list of 1 to {limit} strings",
                          param=name)
    try:
        return [check_text(t, f"{name}[{i}]") for i, t in enumerate(items)], single
    except ConfigError as e:
        raise bad_request(str(e), param=name) from None


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """The generation options of chat and completions requests."""

    max_tokens: int | None
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    n: int
    stream: bool
    include_usage: bool

    def options(self, max_tokens: int) -> dict[str, Any]:
        """GenerationConfig.make's options: temperature 0 is greedy, else sampling."""
        return dict(max_new_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p,
                    seed=self.seed, stop=self.stop, num_return_sequences=self.n)


def sampling(f: Fields, *, default_max: int | None, max_n: int) -> Sampling:
    max_tokens = f.integer("max_completion_tokens", None, 1, 1 << 20)
    if max_tokens is None:
        max_tokens = f.integer("max_tokens", default_max, 1, 1 << 20)
    stop = f.get("stop", (str, list), ())
    stop_list, _ = texts(stop, "stop", limit=MAX_STOPS) if stop != () else ([], False)
    if any(not s for s in stop_list):
        raise bad_request("stop strings must not be empty", param="stop")
    temperature = f.number("temperature", 1.0, 0.0, 2.0)
    n = f.integer("n", 1, 1, max_n)
    assert n is not None
    if n > 1 and temperature == 0:
        raise bad_request(f"n={n} needs sampling (temperature > 0): greedy choices would be "
                          "the same", param="n")
    options = f.get("stream_options", (dict,), {})
    return Sampling(
        max_tokens=max_tokens, temperature=temperature,
        top_p=f.number("top_p", 1.0, 0.0, 1.0, open_low=True),
        seed=f.integer("seed", None, 0, 2**63 - 1), stop=tuple(stop_list), n=n,
        stream=f.get("stream", (bool,), False),
        include_usage=bool(options.get("include_usage", False)))


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    model: str
    messages: list[dict[str, str]]
    sampling: Sampling


@dataclass(frozen=True, kw_only=True)
class CompletionRequest:
    model: str
    prompts: list[str]
    sampling: Sampling


@dataclass(frozen=True, kw_only=True)
class EmbeddingRequest:
    model: str
    inputs: list[str]
    base64: bool


@dataclass(frozen=True, kw_only=True)
class ClassifyRequest:
    model: str | None
    inputs: list[str]
    single: bool


ROLES = ("system", "developer", "user", "assistant", "tool")
SAMPLING = {"max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "n",
            "stream", "stream_options"}


def chat_request(body: dict[str, Any], *, max_n: int) -> ChatRequest:
    f = Fields(body, {"model", "messages"} | SAMPLING)
    model = f.get("model", (str,), required=True)
    raw = f.get("messages", (list,), required=True)
    if not raw:
        raise bad_request("messages must hold at least one message", param="messages")
    messages = [_message(m, i) for i, m in enumerate(raw)]
    request = ChatRequest(model=model, messages=messages,
                          sampling=sampling(f, default_max=None, max_n=max_n))
    f.done()
    return request


def _message(value: Any, i: int) -> dict[str, str]:
    where = f"messages[{i}]"
    if not isinstance(value, dict):
        raise bad_request(f"{where} must be an object with role and content", param=where)
    extra = sorted(set(value) - {"role", "content", "name"})
    if extra:
        raise bad_request(f"{where} has unsupported field(s) {', '.join(extra)}", param=where)
    role, content = value.get("role"), value.get("content")
    if role not in ROLES:
        raise bad_request(f"{where}.role={role!r} must be one of {', '.join(ROLES)}",
                          param=f"{where}.role")
    if isinstance(content, list):  # content parts: text only
        if not all(isinstance(p, dict) and p.get("type") == "text"
                   and isinstance(p.get("text"), str) for p in content):
            raise bad_request(f"{where}.content parts must be {{'type': 'text', 'text': ...}}",
                              param=f"{where}.content")
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise bad_request(f"{where}.content must be a string", param=f"{where}.content")
    message = {"role": role, "content": content}
    if isinstance(value.get("name"), str):
        message["name"] = value["name"]
    return message


def completion_request(body: dict[str, Any], *, max_n: int) -> CompletionRequest:
    f = Fields(body, {"model", "prompt"} | SAMPLING)
    model = f.get("model", (str,), required=True)
    prompts, _ = texts(f.get("prompt", (str, list), required=True), "prompt",
                       limit=MAX_PROMPTS)
    request = CompletionRequest(model=model, prompts=prompts,
                                sampling=sampling(f, default_max=16, max_n=max_n))
    f.done()
    return request


def embedding_request(body: dict[str, Any]) -> EmbeddingRequest:
    f = Fields(body, {"model", "input", "encoding_format"})
    model = f.get("model", (str,), required=True)
    inputs, _ = texts(f.get("input", (str, list), required=True), "input", limit=MAX_INPUTS)
    encoding = f.get("encoding_format", (str,), "float")
    if encoding not in ("float", "base64"):
        raise bad_request(f"encoding_format={encoding!r} must be 'float' or 'base64'",
                          param="encoding_format")
    f.done()
    return EmbeddingRequest(model=model, inputs=inputs, base64=encoding == "base64")


def classify_request(body: dict[str, Any]) -> ClassifyRequest:
    f = Fields(body, {"model", "inputs", "raw_scores"})
    model = f.get("model", (str,), None)
    inputs, single = texts(f.get("inputs", (str, list), required=True), "inputs",
                           limit=MAX_INPUTS)
    if f.get("raw_scores", (bool,), False):
        raise bad_request("raw_scores=true is not supported; scores are softmax",
                          param="raw_scores")
    f.done()
    return ClassifyRequest(model=model, inputs=inputs, single=single)
