"""The spec layer: parse and validate a host's description (the ``llamafleet`` key of its host_vars).

:func:`parse_host` checks the shape of the description (types, patterns, references inside one block) and raises
:class:`~generators.errors.SpecError` listing every problem. Checks across fields that need the host's facts or
the plan's decisions run in :func:`generators.plan.plan_host`, which also runs :mod:`generators.spec.checks`.

- :mod:`~generators.spec.types`: the constrained value types and their patterns;
- :mod:`~generators.spec.schema`: the pydantic models;
- :mod:`~generators.spec.messages`: how validation errors read;
- :mod:`~generators.spec.checks`: cross-field checks that need only the description.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from generators.errors import Problem, SpecError
from generators.spec import messages
from generators.spec.schema import (
    Clients,
    CudaToolchain,
    Distro,
    GpuDecl,
    Host,
    Hub,
    LlamaCpp,
    Model,
    Ollama,
    Preset,
    Router,
    Server,
    Source,
    SseProxy,
)
from generators.spec.types import ROOT_KEY

__all__ = [
    "ROOT_KEY", "Clients", "CudaToolchain", "Distro", "GpuDecl", "Host", "Hub", "LlamaCpp", "Model", "Ollama",
    "Preset", "Router", "Server", "Source", "SseProxy", "parse_host",
]


def parse_host(host: str, hostvars: dict[str, Any]) -> Host:
    """Validate a host's variables against the schema; raise :class:`SpecError` listing every problem."""
    if ROOT_KEY not in hostvars:
        raise SpecError(host, [Problem(ROOT_KEY, "required: this host has no llamafleet description")])
    raw = hostvars[ROOT_KEY]
    if not isinstance(raw, dict):
        raise SpecError(host, [Problem(ROOT_KEY, f"must be a mapping, got {type(raw).__name__}")])
    try:
        return Host.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(host, messages.problems(exc)) from None
