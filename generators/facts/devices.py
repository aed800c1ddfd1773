"""What a llama.cpp build reports about the devices it sees: ``llama-server --list-devices``, parsed and checked.

The guard against a silent CPU fallback (seed 004's first binary ran on the CPU): switching ``current`` to a new
build is the llamacpp role's job, after :func:`check_device` has seen the expected device in that build's listing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADER = "Available devices:"
# common/arg.cpp common_print_available_devices(): "  %s: %s (%zu MiB, %zu MiB free)"
_DEVICE_LINE = re.compile(
    r"^ {2}(?P<name>[A-Za-z][A-Za-z0-9_]*[0-9]+): (?P<desc>.*) \((?P<total>[0-9]+) MiB, "
    r"(?P<free>[0-9]+) MiB free\)$"
)


@dataclass(frozen=True)
class Device:
    """One non-CPU device as ``llama-server --list-devices`` prints it."""

    name: str
    description: str
    total_mib: int
    free_mib: int


@dataclass(frozen=True)
class DeviceCheck:
    ok: bool
    message: str
    devices: tuple[Device, ...]


def parse_device_list(output: str) -> tuple[Device, ...]:
    """The devices in ``llama-server --list-devices`` output (stdout, or stdout and stderr together)."""
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == _HEADER)
    except StopIteration:
        raise ValueError(f"not a device listing: no {_HEADER!r} line") from None
    devices = []
    for line in lines[start + 1 :]:
        if line.strip() == "(none)":
            break
        match = _DEVICE_LINE.match(line)
        if match is None:
            if line.startswith("  "):
                continue  # log lines interleaved from stderr
            break
        devices.append(Device(match["name"], match["desc"], int(match["total"]), int(match["free"])))
    return tuple(devices)


def check_device(host: str, output: str, expected: str | None, binary: str = "llama-server") -> DeviceCheck:
    """Whether the new build sees the device the host's servers are configured for; a message either way."""
    try:
        devices = parse_device_list(output)
    except ValueError as err:
        return DeviceCheck(False, f"host {host}: {binary} --list-devices: {err}", ())
    found = ", ".join(f"{d.name} ({d.description})" for d in devices) or "none"
    if expected is None:
        return DeviceCheck(True, f"host {host}: CPU build; devices listed: {found}", devices)
    if any(d.name == expected for d in devices):
        device = next(d for d in devices if d.name == expected)
        return DeviceCheck(True, f"host {host}: {expected} is {device.description} ({device.total_mib} MiB)", devices)
    backend = expected.rstrip("0123456789")
    hint = (
        "the build has no GPU backend compiled in, or its runtime/driver did not load"
        if not any(d.name.startswith(backend) for d in devices)
        else "the device index is wrong for this host"
    )
    return DeviceCheck(
        False,
        f"host {host}: {binary} --list-devices does not list {expected} (listed: {found}): {hint}; "
        "it would silently run on the CPU, so the previous build keeps serving",
        devices,
    )
