"""The CPU-fallback guard as a Jinja filter: a thin shim over generators.facts.devices.check_device.

    {{ listing | llamafleet_device_check(expected, inventory_hostname) }}
    {{ registered.results | llamafleet_device_checks(inventory_hostname) }}

``listing`` is what ``llama-server --list-devices`` printed (stdout and stderr together), ``expected`` the device
the server is configured for (``Vulkan0``, ``CUDA0``, ``ROCm0``; none for a CPU build). Returns ``ok``, the
``message`` to show either way, and the ``devices`` listed. The second form takes the results of a command
looped over the manifest's servers (each ``item`` has ``name`` and ``expected_device``); skipped ones are left out.
"""

from __future__ import annotations

from generators.facts.devices import check_device


def llamafleet_device_check(listing: str, expected: str | None, host: str = "?") -> dict[str, object]:
    result = check_device(host, str(listing), expected or None)
    return {
        "ok": result.ok,
        "message": result.message,
        "devices": [
            {"name": d.name, "description": d.description, "total_mib": d.total_mib, "free_mib": d.free_mib}
            for d in result.devices
        ],
    }


def llamafleet_device_checks(results: list[dict], host: str = "?") -> list[dict[str, object]]:
    checks = []
    for result in results:
        if result.get("skipped"):
            continue
        server = result["item"]
        listing = f"{result.get('stdout', '')}\n{result.get('stderr', '')}"
        check = llamafleet_device_check(listing, server.get("expected_device"), host)
        checks.append({"server": server["name"], **check, "message": f"{server['name']}: {check['message']}"})
    return checks


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"llamafleet_device_check": llamafleet_device_check, "llamafleet_device_checks": llamafleet_device_checks}
