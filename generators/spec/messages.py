"""How validation errors read: pydantic's errors as one line per field, in the field paths users write."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from generators.errors import Problem
from generators.spec.types import ALIAS_RE, ENV_NAME_RE, ENV_VALUE_RE, MODEL_NAME_RE, NAME_RE, ROOT_KEY, USER_RE

PATTERN_HELP = {
    NAME_RE: "lowercase letters, digits, - and _ (up to 32, starting with a letter or digit)",
    MODEL_NAME_RE: "lowercase letters, digits, ., - and _ (up to 48)",
    USER_RE: "a login name: lowercase letters, digits, - and _",
    ALIAS_RE: "letters, digits and . _ : - (up to 64)",
    ENV_NAME_RE: "an environment variable name: upper-case letters, digits and _",
    ENV_VALUE_RE: "letters, digits and . _ , : / = + @ - (no spaces or quotes)",
}


def location(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as the field path users write (union branch names and key markers dropped)."""
    out = ROOT_KEY
    for part in loc:
        if isinstance(part, str) and (
            part in {"str", "int", "float", "bool", "[key]"}
            or part.startswith(("literal[", "constrained-", "function-"))
        ):
            continue
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def message(error: dict[str, Any]) -> str:
    """One pydantic error as a sentence (patterns explained, pydantic's prefixes dropped)."""
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required"
    if error["type"] == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        return f"{error['input']!r} must be {PATTERN_HELP.get(pattern, 'of the form ' + pattern)}"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def problems(exc: ValidationError) -> list[Problem]:
    """One problem per field: a union's alternatives each fail, only the first message is kept."""
    seen: dict[str, Problem] = {}
    for error in exc.errors():
        where = location(tuple(error["loc"]))
        seen.setdefault(where, Problem(where, message(error)))
    return list(seen.values())
