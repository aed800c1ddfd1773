"""What a host's CUDA toolchain probe reports, typed: its GCCs, glibc, nvcc and NVIDIA driver versions.

The probe script (``python -m generators toolchain --print-probe``) prints JSON; :func:`from_probe` reads it.
Until the probe runs from the playbook, the versions come from ``llamacpp.cuda_toolchain`` in the inventory.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from generators.errors import Problem, SpecError


@dataclass(frozen=True)
class HostCompiler:
    """One GCC on the host: its version and its C++ driver (``g++-14``). ``installed_by`` says what brings a GCC
    the host does not have yet (``which the package installs``); None for one the host has."""

    version: Version
    cxx: str
    installed_by: str | None = None


@dataclass(frozen=True)
class HostToolchain:
    """What the probe found on one host. ``nvcc``/``driver`` are None when absent."""

    host: str
    gcc: HostCompiler
    glibc: Version
    nvcc: Version | None = None
    alt_gccs: tuple[HostCompiler, ...] = ()
    driver: Version | None = None


def parse_version(host: str, name: str, value: object) -> Version:
    try:
        return Version(str(value))
    except InvalidVersion:
        raise SpecError(host, [Problem(f"toolchain.{name}", f"not a version: {value!r}")]) from None


def parse_compiler(host: str, spec: str) -> HostCompiler:
    """``14.2`` or ``14.2:/usr/bin/g++-14`` (the default driver name is ``g++-<major>``)."""
    version, _, cxx = spec.partition(":")
    parsed = parse_version(host, "alt_gcc", version)
    return HostCompiler(parsed, cxx or f"g++-{parsed.major}")


def from_probe(host: str, probe: dict) -> HostToolchain:
    """The typed view of the probe script's JSON output."""

    def opt(name: str) -> Version | None:
        return None if probe.get(name) in (None, "") else parse_version(host, name, probe[name])

    return HostToolchain(
        host=host,
        gcc=HostCompiler(parse_version(host, "gcc", probe["gcc"]), probe.get("cxx") or "g++"),
        glibc=parse_version(host, "glibc", probe["glibc"]),
        nvcc=opt("nvcc"),
        alt_gccs=tuple(
            HostCompiler(parse_version(host, "alt_gcc", c["version"]), c["cxx"]) for c in probe.get("alt_gcc", [])
        ),
        driver=opt("driver"),
    )
