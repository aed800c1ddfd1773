"""Tuned overrides: the flags a benchmark chose for a host, in a reviewed file beside the inventory.

``<inventory_dir>/tuned/<host>.yml`` is written only by ``python -m generators bench-report --write-tuned`` (never a
silent edit of host_vars) and read by every render of the host when it exists (the CLI's ``render`` and the
preflight action plugin, through :func:`generators.pipeline.render_hostvars`'s ``tuned``). Its shape::

    host: rtx4090
    servers:
      main: {ubatch: 1024, batch: 2048, flash_attn: "on", cache_type_k: q8_0, cache_type_v: q8_0, threads: 8}

Each server's fields replace the description's (and its chosen preset's, whose fields would otherwise win), then
the description is validated and planned as usual, the memory fit included: a tuned flag the planner refuses fails
the render like a hand-written one. Every problem is one line naming the host, the tuned file and the field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generators.errors import Problem, SpecError
from generators.spec import ROOT_KEY
from generators.spec.types import CacheType, Name

TUNED_DIR = "tuned"
FIELDS = ("batch", "ubatch", "flash_attn", "cache_type_k", "cache_type_v", "threads")


class TunedServer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    batch: Annotated[int, Field(ge=32, le=65536)] | None = None
    ubatch: Annotated[int, Field(ge=32, le=65536)] | None = None
    flash_attn: Literal["on", "off", "auto"] | None = None
    cache_type_k: CacheType | None = None
    cache_type_v: CacheType | None = None
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None


class TunedFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    host: Name
    servers: dict[Name, TunedServer] = Field(default_factory=dict)


@dataclass(frozen=True)
class Tuned:
    """A parsed tuned file and where it came from (for the error lines)."""

    path: str
    file: TunedFile

    def field(self, *parts: str) -> str:
        return f"{self.path}: " + ".".join(parts)


def tuned_path(inventory: str | Path, host: str) -> Path:
    """``<inventory_dir>/tuned/<host>.yml``: beside the inventory file (or inside the inventory directory)."""
    root = Path(inventory)
    return (root if root.is_dir() else root.parent) / TUNED_DIR / f"{host}.yml"


def parse_tuned(host: str, path: str, data: Any) -> Tuned:
    """Validate a tuned file's content (raises :class:`SpecError`, one line per problem naming file and field)."""
    if not isinstance(data, dict):
        raise SpecError(host, [Problem(f"{path}", f"a tuned file must be a mapping, got {type(data).__name__}")])
    try:
        parsed = TunedFile.model_validate(data)
    except ValidationError as exc:
        problems: dict[str, Problem] = {}
        for error in exc.errors():
            loc = ".".join(str(p) for p in error["loc"] if not str(p).startswith(("literal[", "constrained-")))
            msg = "unknown key" if error["type"] == "extra_forbidden" else str(error["msg"])
            problems.setdefault(loc, Problem(f"{path}: {loc}", msg))
        raise SpecError(host, list(problems.values())) from None
    if parsed.host != host:
        raise SpecError(host, [Problem(f"{path}: host", f"{parsed.host!r} is another host's tuned file")])
    return Tuned(path=path, file=parsed)


def read_tuned(host: str, path: str | Path) -> Tuned | None:
    """The host's tuned file, parsed, or None when there is none."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SpecError(host, [Problem(str(p), " ".join(f"{type(exc).__name__}: {exc}".split()))]) from None
    return parse_tuned(host, str(p), data)


def apply_tuned(host: str, hostvars: dict[str, Any], tuned: Tuned | None) -> dict[str, Any]:
    """The host variables with the tuned fields written into each named server (and its chosen preset)."""
    if tuned is None:
        return hostvars
    spec = hostvars.get(ROOT_KEY)
    servers = spec.get("servers") if isinstance(spec, dict) else None
    if not isinstance(servers, list):
        if tuned.file.servers:
            raise SpecError(host, [Problem(tuned.field("servers"), "the host description has no servers to tune")])
        return hostvars
    out = copy.deepcopy(hostvars)
    listed = out[ROOT_KEY]["servers"]
    names = [s.get("name", "main") if isinstance(s, dict) else None for s in listed]
    problems = []
    for name, fields in tuned.file.servers.items():
        if name not in names:
            problems.append(Problem(tuned.field("servers", name),
                                    f"no server {name!r} on this host (servers: {', '.join(map(str, names))})"))
            continue
        entry = listed[names.index(name)]
        update = fields.model_dump(exclude_none=True)
        entry.update(update)
        preset = entry.get("preset")
        if isinstance(preset, str) and isinstance(entry.get("presets"), dict) and isinstance(
                entry["presets"].get(preset), dict):
            entry["presets"][preset].update(update)
    if problems:
        raise SpecError(host, problems)
    return out


def blame(tuned: Tuned | None, hostvars: dict[str, Any], exc: SpecError) -> SpecError:
    """A render's problems with the fields a tuned file set named as the tuned file's (the user edits that)."""
    if tuned is None:
        return exc
    servers = (hostvars.get(ROOT_KEY) or {}).get("servers") or []
    names = [s.get("name", "main") if isinstance(s, dict) else None for s in servers]
    out = []
    for p in exc.problems:
        note = p
        for name, fields in tuned.file.servers.items():
            if name not in names:
                continue
            prefix = f"{ROOT_KEY}.servers[{names.index(name)}]"
            if p.field.startswith(prefix):
                set_here = [f for f in FIELDS if getattr(fields, f) is not None]
                note = Problem(p.field, f"{p.message} (with {tuned.path} applied: servers.{name} sets "
                                        f"{', '.join(set_here)})")
        out.append(note)
    return SpecError(exc.host, out)


def dump_tuned(host: str, servers: dict[str, dict[str, Any]], why: dict[str, str]) -> str:
    """The tuned file's text: a header saying where it came from, each server's reason as a comment."""
    lines = [f"# llamafleet tuned override for {host}: written by `python -m generators bench-report --write-tuned`.",
             "# Review it: every render of the host applies it (python -m generators render, site.yml; --check --diff",
             "# shows the unit flags it changes). Delete it to go back to the host_vars.",
             f"host: {host}", "servers:"]
    for name, fields in servers.items():
        if name in why:
            lines.append(f"  # {why[name]}")
        body = yaml.safe_dump({name: fields}, default_flow_style=False, sort_keys=True).splitlines()
        lines += ["  " + line for line in body]
    text = "\n".join(lines) + "\n"
    parse_tuned(host, "(written)", yaml.safe_load(text))  # what is written must read back
    return text
