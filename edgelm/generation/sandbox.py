"""A Jinja sandbox that also bounds what a chat template costs.

A chat template is code from the folder. Jinja's ImmutableSandboxedEnvironment (what
transformers renders templates with) keeps it from Python's internals and from
changing its inputs; it does not bound time or memory. This one does:

- time: a trace function checks a deadline on each line of the compiled template and
  on each Python call made while it runs (LIMITS.template_seconds, more for long chats);
- size: every operation that makes a new value (operators, `~`, slices, calls, filters,
  the output of macros and blocks) is checked before it runs (its inputs, and any
  width, count or exponent it is given) and after; no value may exceed the output
  limit, and all of them together may produce LIMITS.template_work times it;
- output: rendering stops once the text passes the output limit.

A limit reached raises TemplateLimit, a BaseException so that no `except Exception`
inside Jinja can swallow it; chat.py turns it into a one-line ModelFolderError.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import Concat, Getitem, Slice
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg

from edgelm.limits import LIMITS

INT_BITS = 1 << 16  # integers a template computes: up to ~20,000 digits
DEPTH = 32  # containers nested deeper count as too large
# Methods and filters that take a width, count or size: these numbers are bounded too.
SIZED = frozenset({"center", "ljust", "rjust", "zfill", "indent", "expandtabs", "batch",
                   "slice", "format", "format_map", "tojson", "to_bytes"})
# Filters whose output can grow with the product of their inputs, which templates do not use.
DROPPED_FILTERS = ("urlize", "wordwrap", "xmlattr")


class TemplateLimit(BaseException):
    """A chat template went past one of its limits."""


@dataclass
class Budget:
    limit: int  # characters in any one value, and in the output
    work: int  # characters all operations may still produce
    seconds: float  # the time allowed, which ends at
    deadline: float = 0.0  # time.monotonic(); set from `seconds` when 0

    def __post_init__(self) -> None:
        self.deadline = self.deadline or time.monotonic() + self.seconds

    def charge(self, value: Any) -> Any:
        size = measure(value, self.limit)
        if size > self.limit:
            raise TemplateLimit(f"made a value of more than {self.limit} characters")
        self.work -= size
        if self.work < 0:
            raise TemplateLimit("made more intermediate text than its limit "
                                f"({LIMITS.template_work} x {self.limit} characters)")
        return value

    def allow(self, size: int, what: str) -> None:
        if size > self.limit:
            raise TemplateLimit(f"asked for {what} of more than {self.limit} characters")


_budget: ContextVar[Budget | None] = ContextVar("edgelm_template_budget", default=None)


def current() -> Budget:
    """The running render's budget (a default one for Jinja's compile-time folding)."""
    budget = _budget.get()
    if budget is None:
        budget = Budget(limit=LIMITS.template_chars, work=LIMITS.template_work
                        * LIMITS.template_chars, seconds=LIMITS.template_seconds)
    return budget


def measure(value: Any, limit: int) -> int:
    """Characters in `value`, containers walked (a shared item counts each time it
    appears), stopping as soon as the count passes `limit`."""
    total, stack = 0, [(value, 0)]
    while stack and total <= limit:
        item, depth = stack.pop()
        if isinstance(item, (str, bytes, bytearray)):
            total += len(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 3 + 1  # ~ its decimal digits
        elif isinstance(item, (list, tuple, set, frozenset, dict)):
            if depth >= DEPTH:
                return limit + 1
            total += len(item)
            children = [x for kv in item.items() for x in kv] if isinstance(item, dict) \
                else item
            stack.extend((child, depth + 1) for child in children)
        else:
            total += 1
    return total


def _numbers(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[int]:
    return [abs(a) for a in (*args, *kwargs.values())
            if isinstance(a, int) and not isinstance(a, bool)]


def _format_size(fmt: str, args: Any, limit: int) -> int:
    """An upper bound on the length of `fmt` formatted with `args` ('%' or str.format)."""
    values = list(args.values()) if isinstance(args, dict) else \
        list(args) if isinstance(args, (tuple, list)) else [args]
    digits = re.findall(r"\d+", fmt)
    if any(len(d) > 9 for d in digits):
        return limit + 1
    fields = fmt.count("{") + fmt.count("%")
    largest = max((measure(v, limit) for v in values), default=0)
    return len(fmt) + sum(map(int, digits)) + fields * largest + sum(_numbers(tuple(values), {}))


def _replace_size(s: str, old: str, new: str, count: Any = -1) -> int:
    hits = len(s) + 1 if not old else s.count(old)
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * max(0, len(new) - len(old))


def check_growth(name: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 budget: Budget) -> None:
    """Refuse, before it runs, an operation `name` on `target` that would make too much.

    `name` is a str method or a filter: the ones whose output can be far larger than
    their inputs are bounded here; any other's output is bounded by its inputs.
    """
    limit = budget.limit
    if name in SIZED:
        for number in _numbers(args, kwargs):
            budget.allow(number, f"{name}() with a width or count")
    if name == "replace" and isinstance(target, str) and len(args) >= 2 \
            and all(isinstance(a, str) for a in args[:2]):
        budget.allow(_replace_size(target, *args[:3]), "replace()")
    elif name in ("format", "format_map") and isinstance(target, str):
        budget.allow(_format_size(target, args[0] if name == "format_map" and args
                                  else kwargs or args, limit), f"{name}()")
    elif name == "join":  # str.join(items), or the filter: items|join(sep)
        sep, items = (target, args[0] if args else None) if isinstance(target, str) \
            else (args[0] if args and isinstance(args[0], str) else "", target)
        if isinstance(items, (list, tuple)):
            budget.allow(measure(items, limit) + len(sep) * len(items), "join()")
    elif name == "indent" and isinstance(target, str):
        width = args[0] if args else kwargs.get("width", 4)
        unit = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        budget.allow((target.count("\n") + 1) * unit + len(target), "indent()")
    elif name == "expandtabs" and isinstance(target, str):
        width = args[0] if args else kwargs.get("tabsize", 8)
        budget.allow(target.count("\t") * (width if isinstance(width, int) else 8)
                     + len(target), "expandtabs()")
    elif name == "translate":
        raise TemplateLimit("called str.translate, which chat templates do not need")


def _checked_call(name: str, func: Callable[..., Any], target: Any, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> Any:
    budget = current()
    check_growth(name, target, args, kwargs, budget)
    return budget.charge(func())


def _wrap_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if _PassArg.from_obj(func) is not None else 0

    @functools.wraps(func)  # keeps jinja's pass_context/pass_eval_context marks
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        target, rest = (args[skip], args[skip + 1:]) if len(args) > skip else (None, ())
        if name == "sum" and not isinstance(kwargs.get("start", rest[1] if len(rest) > 1
                                                       else 0), (int, float)):
            raise TemplateLimit("summed non-numbers (list concatenation is quadratic)")
        if name == "format":  # value % args
            current().allow(_format_size(str(target), kwargs or rest, current().limit),
                            "format")
        return _checked_call(name, lambda: func(*args, **kwargs), target, rest, kwargs)

    return wrapper


def _tojson(value: Any, **options: Any) -> str:
    return json.dumps(value, ensure_ascii=False, **options)


def checked_join(parts: Any) -> str:
    """Jinja's concat (the output of macros, blocks and filter blocks), bounded."""
    budget = current()
    items = parts if isinstance(parts, list) else list(parts)
    budget.allow(sum(len(p) if isinstance(p, str) else measure(p, budget.limit)
                     for p in items), "text")
    return budget.charge("".join(items))


class _Generator(CodeGenerator):
    """Routes `a ~ b` and slices, which Jinja compiles to plain Python, through the budget."""

    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Getitem(self, node: Getitem, frame: Frame) -> None:
        if not isinstance(node.arg, Slice):
            super().visit_Getitem(node, frame)
            return
        self.write("environment.checked_slice(")
        self.visit(node.node, frame)
        for part in (node.arg.start, node.arg.stop, node.arg.step):
            self.write(", ")
            if part is None:
                self.write("None")
            else:
                self.visit(part, frame)
        self.write(")")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment whose operations are checked against the budget."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    code_generator_class = _Generator
    concat = staticmethod(checked_join)  # type: ignore[assignment]

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.pop("lipsum", None)  # generates text in a Python loop
        self.filters["tojson"] = _tojson  # as transformers defines it (no HTML escaping)
        self.filters = {name: _wrap_filter(name, f) for name, f in self.filters.items()
                        if name not in DROPPED_FILTERS}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right))
        if operator == "*" and ints:
            budget.allow((left.bit_length() + right.bit_length()) // 3, "a product")
        elif operator == "*":
            count = next((v for v in (left, right) if isinstance(v, int)), 1)
            other = right if count is left else left
            budget.allow(measure(other, budget.limit) * max(0, count), "a repetition")
        elif operator == "**" and ints and right > 0 and abs(left) > 1:
            if right > INT_BITS or left.bit_length() * right > INT_BITS:
                raise TemplateLimit(f"computed a power of more than {INT_BITS} bits")
        elif operator == "%" and isinstance(left, str):
            budget.allow(_format_size(left, right, budget.limit), "a % format")
        elif operator == "+" and not ints:
            budget.allow(measure(left, budget.limit) + measure(right, budget.limit), "a sum")
        return budget.charge(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        target = getattr(__obj, "__self__", None)
        wrapped = getattr(__obj, "__wrapped__", None)  # Jinja's sandboxed str.format
        if wrapped is not None and isinstance(getattr(wrapped, "__self__", None), str):
            target = wrapped.__self__
        name = getattr(__obj, "__name__", "")
        return _checked_call(name, lambda: ImmutableSandboxedEnvironment.call(
            __self, __context, __obj, *args, **kwargs), target, args, kwargs)

    @staticmethod
    def checked_concat(parts: tuple[Any, ...]) -> str:
        budget = current()
        budget.allow(sum(measure(p, budget.limit) for p in parts), "a ~ concatenation")
        return budget.charge("".join(map(str, parts)))

    def checked_slice(self, obj: Any, start: Any, stop: Any, step: Any) -> Any:
        return current().charge(obj[start:stop:step])


@contextlib.contextmanager
def bounded(budget: Budget) -> Iterator[None]:
    """Run the block with `budget` current and its deadline enforced by a trace function."""
    def on_line(frame: Any, event: str, arg: Any) -> Any:
        if time.monotonic() > budget.deadline:
            raise TemplateLimit(f"ran longer than {budget.seconds:.3g} s")
        return on_line

    def on_call(frame: Any, event: str, arg: Any) -> Any:
        on_line(frame, event, arg)
        return on_line if frame.f_code.co_filename == "<template>" else None

    token, previous = _budget.set(budget), sys.gettrace()
    sys.settrace(on_call)
    try:
        yield
    finally:
        sys.settrace(previous)
        _budget.reset(token)


def render_bounded(template: Any, budget: Budget, **context: Any) -> str:
    """The template's output, stopped at the budget's output limit."""
    out, size = [], 0
    with bounded(budget):
        for piece in template.generate(**context):
            size += len(piece)
            if size > budget.limit:
                raise TemplateLimit(f"wrote more than {budget.limit} characters")
            out.append(piece)
    return "".join(out)
