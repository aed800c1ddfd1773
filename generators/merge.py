"""Merge llamafleet's part of an agent client's config into the user's own file, keeping everything else.

Pure functions, used by ``roles/agent_clients`` through a filter-plugin shim and tested without Ansible:

* mappings merge key by key, recursively; llamafleet's value wins on a key both have;
* lists named in ``list_keys`` merge element by element on an identity field (Continue's ``models`` by ``name``,
  pi's ``models`` by ``id``): a user's own entries stay, ours replace the ones with the same identity;
* ``keep_user`` names top-level keys where the user's existing value wins (Continue's ``name``/``version``);
* an existing file that cannot be parsed is an error: llamafleet never overwrites what it cannot read.
"""

from __future__ import annotations

import json
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
            out[key] = merge(base[key], value, list_keys, key) if key in base else value
        return out
    if isinstance(base, list) and isinstance(ours, list) and _key in list_keys:
        return _merge_list(base, ours, list_keys[_key])
    return ours


def parse(text: str | None, fmt: str, where: str = "existing file") -> dict[str, Any]:
    """A config file's text as a mapping; empty or missing text is an empty mapping."""
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise MergeError(f"{where} is not valid {fmt}: {exc}") from None
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
