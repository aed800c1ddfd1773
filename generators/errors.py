"""Errors that name the host and the field, all problems at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem with one field of a host description."""

    field: str
    message: str

    def line(self, host: str) -> str:
        return f"host {host}: {self.field}: {self.message}"


class SpecError(Exception):
    """A host description is invalid; carries every problem found, not only the first."""

    def __init__(self, host: str, problems: list[Problem]):
        self.host = host
        self.problems = problems
        super().__init__("\n".join(p.line(host) for p in problems))
