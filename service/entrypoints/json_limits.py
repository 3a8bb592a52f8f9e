"""Bounded JSON: every input record is parsed once, then checked against explicit limits.

A record that breaks a limit can never be a valid message, so it is dead-lettered
(``LimitExceeded``) before any model validation runs. The limits (docs/decisions.md, "Input
limits") sit well above what any contract allows, so they never refuse a message the contracts
would accept; they exist so that no record — however deep, long or numerous its parts — costs
more than bounded time and memory, and none can raise ``RecursionError``.

Parsing uses pydantic-core's ``from_json`` (jiter, the parser behind ``validate_json``): it has
no recursion in Python, refuses NaN/Infinity literals and integers of more than 4,300 digits,
and stops at a nesting of 200 on its own. The walk below is iterative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic_core import from_json

#: Deepest nesting of objects and arrays (the contracts need about 4).
MAX_DEPTH = 32
#: Longest string, keys included, in characters (the longest contract field is 200,000: an e-mail body).
MAX_STRING_CHARS = 262_144
#: Most elements in one array, and members in one object (no contract list allows more than 100).
MAX_ITEMS = 1_000
#: Integers must fit in a signed 64-bit integer (PostgreSQL's bigint).
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)


class LimitExceeded(ValueError):
    """The JSON breaks one of the limits above; the message says which, never the value."""


class Undecodable(ValueError):
    """Not JSON at all (or not UTF-8)."""


@dataclass(frozen=True, slots=True)
class JsonLimits:
    max_depth: int = MAX_DEPTH
    max_string_chars: int = MAX_STRING_CHARS
    max_items: int = MAX_ITEMS
    min_int: int = MIN_INT
    max_int: int = MAX_INT


DEFAULT_LIMITS = JsonLimits()
_JITER_LIMITS = ("recursion limit", "number out of range")


def parse_bounded(value: bytes, limits: JsonLimits = DEFAULT_LIMITS) -> Any:
    """The JSON value of ``value``; raises :class:`Undecodable` or :class:`LimitExceeded`."""
    try:
        parsed = from_json(value, allow_inf_nan=False)
    except ValueError as error:
        text = str(error)
        if any(marker in text for marker in _JITER_LIMITS):
            raise LimitExceeded(text.split(" at line")[0]) from None
        raise Undecodable("not JSON") from None
    check_limits(parsed, limits)
    return parsed


def check_limits(value: Any, limits: JsonLimits = DEFAULT_LIMITS) -> None:
    """Walk ``value`` (iteratively) and raise :class:`LimitExceeded` at the first limit it breaks."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if len(node) > limits.max_string_chars:
                raise LimitExceeded(f"a string is longer than {limits.max_string_chars} characters")
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, int):
            if not limits.min_int <= node <= limits.max_int:
                raise LimitExceeded("an integer does not fit in 64 bits")
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise LimitExceeded("a number is too large to represent")
        elif isinstance(node, (dict, list)):
            if depth >= limits.max_depth:
                raise LimitExceeded(f"JSON is nested deeper than {limits.max_depth} levels")
            if len(node) > limits.max_items:
                kind = "an object has more than" if isinstance(node, dict) else "an array has more than"
                raise LimitExceeded(f"{kind} {limits.max_items} items")
            if isinstance(node, dict):
                for key, item in node.items():
                    if len(key) > limits.max_string_chars:
                        raise LimitExceeded(f"a key is longer than {limits.max_string_chars} characters")
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in node)
