"""Fleet status as Jinja filters: thin shims over :mod:`generators.status`.

    {{ ansible_play_hosts_all | llamafleet_fleet_status(hostvars, ansible_play_hosts) }}  -> the records
    {{ records | llamafleet_status_table }}                                                -> the table text

A host's record comes from its ``fleet_status_raw`` (the module's reading) and its ``preflight_rendered``
manifest; a host whose ``fleet_status_unreachable`` is set is ``unreachable``; one that dropped out of the play
(a task failed on it) is ``failed``.
"""

from __future__ import annotations

from typing import Any

from generators.status import host_status, table


def llamafleet_fleet_status(hosts: list[str], hostvars: Any, live: list[str]) -> list[dict[str, Any]]:
    records = []
    for host in hosts:
        hv = hostvars[host]
        manifest = (hv.get("preflight_rendered") or {}).get("manifest")
        reach = None
        if hv.get("fleet_status_unreachable"):
            reach = f"unreachable: {hv['fleet_status_unreachable']}"
        elif host not in live or "fleet_status_raw" not in hv:
            reach = "failed: a task failed on this host before it could be read (see above)"
        records.append(host_status(host, hv.get("fleet_status_raw"), manifest, reach))
    return records


def llamafleet_status_table(records: list[dict[str, Any]]) -> str:
    return table(records)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"llamafleet_fleet_status": llamafleet_fleet_status, "llamafleet_status_table": llamafleet_status_table}
