"""Chat templates (Jinja, as transformers renders them) without transformers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgelm.errors import ConfigError, ModelFolderError


def load_template(folder: Path) -> tuple[str | None, dict[str, Any]]:
    """The folder's chat template and the special tokens it may reference."""
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    template_path = folder / "chat_template.jinja"
    template = template_path.read_text(encoding="utf-8") if template_path.is_file() \
        else config.get("chat_template")
    specials = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token")}
    return template, specials


def _token_text(value: Any) -> str:
    if isinstance(value, dict):  # AddedToken serialized
        return str(value.get("content", ""))
    return "" if value is None else str(value)


def render(template: str | None, messages: Any, specials: dict[str, Any], folder: Path) -> str:
    if template is None:
        raise ModelFolderError(f"{folder} has no chat template; call the pipeline with a prompt")
    _check_messages(messages)
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ConfigError(f"the chat template refused the messages: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
    try:
        return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                                **specials)
    except jinja2.TemplateError as e:
        raise ModelFolderError(f"the chat template in {folder} cannot be rendered ({e})") from e


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise ConfigError("messages must be a non-empty list of {'role': ..., 'content': ...}")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) \
                or not isinstance(m.get("content"), str):
            raise ConfigError(f"each message needs a 'role' and a 'content' string, got {m!r}")
