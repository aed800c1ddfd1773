"""Reading a host's variables from an Ansible inventory, exactly as the playbook sees them.

Uses Ansible's own inventory and variable managers (group_vars, host_vars, inventory files),
so the CLI and the playbook can never disagree about what a host says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from generators.errors import Problem, SpecError


def plain(value: Any) -> Any:
    """Ansible's tagged containers and strings as plain JSON data."""
    return json.loads(json.dumps(value))


def host_vars(inventory: str | Path, host: str) -> dict[str, Any]:
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    if not Path(inventory).exists():
        raise SpecError(host, [Problem("--inventory", f"{inventory} does not exist")])
    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(inventory)])
    found = manager.get_host(host)
    if found is None:
        known = ", ".join(sorted(h.name for h in manager.get_hosts())) or "none"
        raise SpecError(host, [Problem("--host", f"not in inventory {inventory} (hosts: {known})")])
    variables = VariableManager(loader=loader, inventory=manager).get_vars(host=found, include_hostvars=False)
    if "llamafleet" in variables:
        templar = Templar(loader=loader, variables=variables)
        variables = {**variables, "llamafleet": templar.template(variables["llamafleet"])}
    return plain({k: v for k, v in variables.items() if k == "llamafleet"})
