"""Merge llamafleet's part of an agent client's config into the user's own file, keeping everything else.

Pure functions, used by ``roles/agent_clients`` through a filter-plugin shim and tested without Ansible:

* mappings merge key by key, recursively; llamafleet's value wins on a key both have;
* lists named in ``list_keys`` merge element by element on an identity field (Continue's ``models`` by ``name``,
  pi's ``models`` by ``id``): a user's own entries stay, ours replace the ones with the same identity;
* ``keep_user`` names top-level keys where the user's existing value wins (Continue's ``name``/``version``);
* a ``None`` (JSON ``null``) in llamafleet's fragment removes that key from the user's file (Claude Code's
  ``ANTHROPIC_AUTH_TOKEN`` once a server has a key: it would win over the ``apiKeyHelper`` that reads it);
* an existing file that cannot be parsed is an error: llamafleet never overwrites what it cannot read. The error
  is one line and never quotes the file (its text can hold other providers' keys);
* :func:`changes` is what ``--check --diff`` shows instead of the files: the top-level keys that change, and
  llamafleet's own part, with every value under a key that looks secret replaced by ``<redacted>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml


class MergeError(ValueError):
    """The user's existing file cannot be read as the format it should have."""


def _merge_list(base: list[Any], ours: list[Any], ident: str) -> list[Any]:
    ours_by_id = {item[ident]: item for item in ours if isinstance(item, dict) and ident in item}
    out: list[Any] = []
    placed: set[Any] = set()
    for item in base:
        key = item.get(ident) if isinstance(item, dict) else None
        if key is not None and key in ours_by_id:
            out.append(ours_by_id[key])
            placed.add(key)
        else:
            out.append(item)
    out += [item for item in ours if not (isinstance(item, dict) and item.get(ident) in placed)]
    return out


def merge(base: Any, ours: Any, list_keys: Mapping[str, str] | None = None, _key: str | None = None) -> Any:
    """``base`` with ``ours`` merged in (new objects; neither argument is changed)."""
    list_keys = list_keys or {}
    if isinstance(base, dict) and isinstance(ours, dict):
        out = dict(base)
        for key, value in ours.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge(base[key], value, list_keys, key) if key in base else _without_nulls(value)
        return out
    if isinstance(base, list) and isinstance(ours, list) and _key in list_keys:
        return _merge_list(base, ours, list_keys[_key])
    return _without_nulls(ours)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _one_line(exc: Exception) -> str:
    """A parser's error as one line, without the snippet of the file YAML errors quote."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(problem)


def parse(text: str | None, fmt: str, where: str = "existing file") -> dict[str, Any]:
    """A config file's text as a mapping; empty or missing text is an empty mapping."""
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise MergeError(f"{where} is not valid {fmt}: {_one_line(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MergeError(f"{where} must hold a {fmt} object at the top, got {type(data).__name__}")
    return data


def dump(data: Mapping[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, default_flow_style=False)


def merge_text(
    existing: str | None,
    fragment: str,
    fmt: str,
    list_keys: Mapping[str, str] | None = None,
    keep_user: Sequence[str] = (),
    where: str = "existing file",
) -> str:
    """The merged file's text: the user's ``existing`` text with llamafleet's ``fragment`` merged in."""
    if fmt not in ("json", "yaml"):
        raise MergeError(f"unknown format {fmt!r} (json or yaml)")
    base = parse(existing, fmt, where)
    ours = parse(fragment, fmt, "llamafleet's fragment")
    ours = {k: v for k, v in ours.items() if not (k in keep_user and k in base)}
    return dump(merge(base, ours, list_keys), fmt)


SECRET_KEY = re.compile(r"key|token|secret|password", re.IGNORECASE)
REDACTED = "<redacted>"


def redact(value: Any) -> Any:
    """``value`` with everything under a key that looks secret (key, token, secret, password) replaced."""
    if isinstance(value, dict):
        return {k: REDACTED if SECRET_KEY.search(str(k)) and v is not None else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def changes(
    existing: str | None,
    fragment: str,
    fmt: str,
    list_keys: Mapping[str, str] | None = None,
    keep_user: Sequence[str] = (),
    where: str = "existing file",
) -> dict[str, Any]:
    """What merging ``fragment`` into ``existing`` changes, safe to print: the top-level keys added, changed and
    removed, and llamafleet's part of the result (the fragment's keys only, the user's own entries left out),
    redacted by :func:`redact`."""
    base = parse(existing, fmt, where)
    merged = parse(merge_text(existing, fragment, fmt, list_keys, keep_user, where), fmt, where)
    ours = parse(fragment, fmt, "llamafleet's fragment")
    return {
        "added": sorted(k for k in merged if k not in base),
        "changed": sorted(k for k in merged if k in base and merged[k] != base[k]),
        "removed": sorted(k for k in base if k not in merged),
        "llamafleet": redact(_ours_only(merged, ours)),
    }


def _ours_only(merged: Any, ours: Any) -> Any:
    """The part of ``merged`` that ``ours`` wrote: its keys, recursively (lists: the merged list's own entries)."""
    if isinstance(merged, dict) and isinstance(ours, dict):
        return {k: _ours_only(merged[k], v) for k, v in ours.items() if k in merged}
    if isinstance(merged, list) and isinstance(ours, list):
        return [item for item in merged if item in ours] if all(isinstance(i, dict) for i in ours) else merged
    return merged
