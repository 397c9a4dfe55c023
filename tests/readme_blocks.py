"""The README's tested examples, found by marker comments, and a tolerant output comparison.

In README.md a tested example is a fenced code block right after `<!-- example: NAME -->`;
the output it should print is the fenced block right after `<!-- output: NAME -->`. The
markers are HTML comments, so they do not show on a rendered page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MARKED_BLOCK = re.compile(
    r"^<!-- (example|output): ([\w-]+) -->\n```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"<!-- (?:example|output):")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True, kw_only=True)
class Example:
    name: str
    language: str
    code: str
    output: str | None  # None: the example is run, but its output is not compared


def examples(readme: str) -> dict[str, Example]:
    """Every marked example of the README by name, with its expected output if marked."""
    blocks = MARKED_BLOCK.findall(readme)
    if len(blocks) != len(MARKER.findall(readme)):
        raise ValueError("a README marker is not followed by a fenced block on the next line")
    code: dict[str, tuple[str, str]] = {}
    outputs: dict[str, str] = {}
    for kind, name, language, body in blocks:
        if name in (code if kind == "example" else outputs):
            raise ValueError(f"README marks two {kind} blocks named {name!r}")
        if kind == "example":
            code[name] = (language, body)
        else:
            outputs[name] = body
    orphans = sorted(set(outputs) - set(code))
    if orphans:
        raise ValueError(f"README has output blocks without an example: {orphans}")
    return {name: Example(name=name, language=language, code=body, output=outputs.get(name))
            for name, (language, body) in code.items()}


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def differences(expected: str, actual: str, *, tolerance: float) -> list[str]:
    """What differs between expected and actual output; [] when they match.

    The text around the numbers must be identical (line by line, trailing spaces aside).
    Integers must be equal; decimals may differ by up to `tolerance` (absolute).
    """
    want, got = _lines(expected), _lines(actual)
    if len(want) != len(got):
        return [f"{len(got)} lines printed, {len(want)} expected:\n{actual}"]
    problems = []
    for number, (a, b) in enumerate(zip(want, got), 1):
        if NUMBER.sub("#", a) != NUMBER.sub("#", b):
            problems.append(f"line {number}: text differs: expected {a!r}, got {b!r}")
            continue
        for x, y in zip(NUMBER.findall(a), NUMBER.findall(b)):
            is_decimal = any(c in x + y for c in ".eE")
            if (abs(float(x) - float(y)) > tolerance) if is_decimal else int(x) != int(y):
                problems.append(f"line {number}: expected {x}, got {y}"
                                f"{f' (tolerance {tolerance})' if is_decimal else ''}")
    return problems
