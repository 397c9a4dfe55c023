"""Chat templates (Jinja, as transformers renders them) without transformers.

The template comes from the folder (chat_template.jinja, else tokenizer_config.json's
"chat_template"), read through ModelFolder like every file, and renders in
sandbox.BoundedSandbox: time, output and work are bounded, and whatever goes wrong
(a syntax error, `{{ 1/0 }}`, a limit) is a one-line error.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any, Iterator

from edgelm.errors import ConfigError, ModelFolderError, first_line
from edgelm.folder import Kind, ModelFolder
from edgelm.limits import LIMITS
from edgelm.manifest import parse_json
from edgelm.tokenizer import check_text

CONFIG_FILE = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"
MESSAGE_DEPTH = 8  # nesting of a message's extra fields (tool calls)


def load_template(folder: ModelFolder) -> tuple[str | None, dict[str, Any]]:
    """The folder's chat template and the special tokens it may reference."""
    text = folder.optional_text(CONFIG_FILE, Kind.CONFIG)
    config = parse_json(text.encode("utf-8"), str(folder.folder / CONFIG_FILE), depth=32) \
        if text is not None else {}
    if not isinstance(config, dict):
        raise ModelFolderError(f"{folder.folder / CONFIG_FILE} is not a JSON object; "
                               "export the model again")
    template = folder.optional_text(TEMPLATE_FILE, Kind.TEMPLATE)
    if template is None:
        template = _config_template(config.get("chat_template"), folder.folder)
    if template is not None and len(template) > LIMITS.template_bytes:
        raise ModelFolderError(f"{folder.folder}: the chat template has {len(template)} "
                               f"characters, over the {LIMITS.template_bytes} limit")
    specials = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token")}
    return template, specials


def _config_template(value: Any, folder: Path) -> str | None:
    """tokenizer_config's chat_template: a string, or a list of named ones ("default")."""
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    if value is not None and not isinstance(value, str):
        raise ModelFolderError(f"{folder / CONFIG_FILE}: chat_template must be a string")
    return value


def _token_text(value: Any) -> str:
    if isinstance(value, dict):  # AddedToken serialized
        value = value.get("content", "")
    return value[:1000] if isinstance(value, str) else ""


class ChatTemplate:
    """A folder's template, compiled once (on first use) in the bounded sandbox."""

    def __init__(self, source: str | None, specials: dict[str, Any], folder: Path) -> None:
        self.source, self.specials, self.folder = source, specials, folder
        self._compiled: Any = None
        self._lock = threading.Lock()

    def render(self, messages: Any) -> str:
        """The prompt for `messages`, ending with the assistant's turn."""
        if self.source is None:
            raise ModelFolderError(f"{self.folder} has no chat template; call the pipeline "
                                   "with a prompt")
        check_messages(messages)
        # jinja2 is imported here, at the first chat, not with edgelm: ~19 ms of a cold start
        from edgelm.generation import sandbox

        # Output, work and time grow with the messages: a long chat may render long.
        inputs = sandbox.measure(messages, 1 << 62) + \
            sum(len(v) for v in self.specials.values())
        limit = LIMITS.template_chars + 4 * inputs
        seconds = LIMITS.template_seconds * (1 + inputs / LIMITS.template_chars)
        budget = sandbox.Budget(limit=limit, work=LIMITS.template_work * limit,
                                seconds=seconds)
        with _template_errors(self.folder):
            template = self._compile(budget)
            return sandbox.render_bounded(template, budget, messages=messages,
                                          add_generation_prompt=True, **self.specials)

    def _compile(self, budget: Any) -> Any:
        from edgelm.generation import sandbox

        with self._lock:
            if self._compiled is None:
                env = sandbox.BoundedSandbox(trim_blocks=True, lstrip_blocks=True,
                                             extensions=["jinja2.ext.loopcontrols"])
                env.globals["raise_exception"] = _raise_exception
                with sandbox.bounded(budget):
                    self._compiled = env.from_string(self.source or "")
            return self._compiled



@contextlib.contextmanager
def _template_errors(folder: Path) -> Iterator[None]:
    """Whatever a template raises, as one line: ConfigError when it refuses the messages
    (raise_exception), ModelFolderError for the rest."""
    import jinja2

    from edgelm.generation.sandbox import TemplateLimit

    where = f"the chat template in {folder}"
    try:
        yield
    except ConfigError:
        raise
    except TemplateLimit as e:
        raise ModelFolderError(f"{where} {e} and was stopped; fix the template or export "
                               "the model again") from None
    except jinja2.TemplateSyntaxError as e:
        raise ModelFolderError(f"{where} does not compile (line {e.lineno}: "
                               f"{first_line(e, 200)}); fix the template or export the model "
                               "again") from e
    except Exception as e:  # the template's own errors: 1/0, undefined, recursion...
        raise ModelFolderError(f"{where} failed ({type(e).__name__}: {first_line(e, 200)}); "
                               "fix the template or export the model again") from e


def _raise_exception(message: Any) -> None:
    text = str(message).strip()
    raise ConfigError(f"the chat template refused the messages: "
                      f"{text.splitlines()[0][:300] if text else '(no reason given)'}")


def check_messages(messages: Any) -> None:
    """A non-empty list of {'role': str, 'content': str, ...}, every string valid UTF-8."""
    if not isinstance(messages, list) or not messages:
        raise ConfigError("messages must be a non-empty list of {'role': ..., 'content': ...}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) \
                or not isinstance(m.get("content"), str):
            shown = repr(m)
            raise ConfigError(f"message {i} needs a 'role' and a 'content' string, got "
                              f"{shown[:80] + '...' if len(shown) > 80 else shown}")
        _check_value(m, f"message {i}", 0)


def _check_value(value: Any, where: str, depth: int) -> None:
    """JSON-like data only (what a template may read), every string valid UTF-8."""
    if depth > MESSAGE_DEPTH:
        raise ConfigError(f"{where} nests deeper than {MESSAGE_DEPTH} levels")
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, f"a key of {where}")
            _check_value(item, f"{where}'s {key!r}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]", depth + 1)
    elif value is not None and not isinstance(value, (bool, int, float)):
        raise ConfigError(f"{where} holds a {type(value).__name__}; messages hold only "
                          "strings, numbers, booleans, None, lists and dicts")
