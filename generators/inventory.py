"""Reading a host's variables from an Ansible inventory, exactly as the playbook sees them.

Uses Ansible's own inventory and variable managers (group_vars, host_vars, inventory files),
so the CLI and the playbook can never disagree about what a host says. Templates in ``llamafleet`` are templated
as the playbook templates them (an undefined variable or a broken template is an error, as it is there).

No input ends in a traceback: every Ansible error (YAML syntax, a host_vars file that is not a mapping, undefined or
broken templates, a vault value that cannot be decrypted) is one line naming the host and the file (with its line
when Ansible knows it) or the field; a description whose aliases expand beyond :data:`MAX_EXPANDED` nodes (a YAML
alias bomb) is refused before anything walks it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from generators.errors import Problem, SpecError

ROOT_KEY = "llamafleet"
#: the most nodes (containers, scalars, and string characters / 64) a host description may expand to
MAX_EXPANDED = 200_000


def plain(value: Any) -> Any:
    """Ansible's tagged containers and strings as plain JSON data."""
    return json.loads(json.dumps(value))


def expanded_size(value: Any, limit: int = MAX_EXPANDED) -> int:
    """How many nodes ``value`` has once its shared (aliased) parts are expanded, counted without expanding them:
    each container is sized once (by identity) and the count stops at ``limit + 1``."""
    memo: dict[int, int] = {}

    def size(item: Any, depth: int) -> int:
        if depth > 200:
            return limit + 1
        if isinstance(item, str):
            return 1 + len(item) // 64
        if not isinstance(item, dict | list | tuple):
            return 1
        key = id(item)
        if key in memo:
            return memo[key]
        memo[key] = limit + 1  # a container that holds itself is too big
        total = 1
        children = [c for pair in item.items() for c in pair] if isinstance(item, dict) else list(item)
        for child in children:
            total += size(child, depth + 1)
            if total > limit:
                break
        memo[key] = min(total, limit + 1)
        return memo[key]

    return size(value, 0)


def check_bounded(host: str, value: Any) -> None:
    """SpecError when a description expands beyond :data:`MAX_EXPANDED` nodes (a YAML alias bomb)."""
    if expanded_size(value) > MAX_EXPANDED:
        raise SpecError(host, [Problem(ROOT_KEY, f"expands to more than {MAX_EXPANDED} values (YAML aliases "
                                                 "repeated inside each other?): refused unread")])


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_problem(exc: Exception, field: str = ROOT_KEY) -> Problem:
    """One problem line for an Ansible error: the file (and line) it came from when Ansible knows it."""
    where = _origin(exc)
    message = one_line(getattr(exc, "message", None) or exc)
    if "undecryptable" in message or "vault" in message.lower():
        message += (" (the CLI has no vault password: render through the playbook's preflight, which decrypts, or "
                    "keep vaulted values out of llamafleet)")
    if where is None:
        found = re.search(r"'(/[^']+)'", message)
        where = found.group(1) if found else None
    return Problem(field if where is None else where, message)


def _origin(exc: BaseException) -> str | None:
    try:
        from ansible._internal._datatag._tags import Origin
    except ImportError:  # an Ansible without data tags (before 2.19): the message names the file, if anything
        return None
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        obj = getattr(seen, "obj", None)
        origin = obj if isinstance(obj, Origin) else (Origin.get_tag(obj) if obj is not None else None)
        if origin is not None and getattr(origin, "path", None):
            return one_line(str(origin))
        mark = getattr(seen, "problem_mark", None)
        if mark is not None and str(getattr(mark, "name", "")).startswith("/"):
            return f"{mark.name}:{mark.line + 1}:{mark.column + 1}"
        seen = seen.__cause__ or seen.__context__
    return None


def host_vars(inventory: str | Path, host: str) -> dict[str, Any]:
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    if not Path(inventory).exists():
        raise SpecError(host, [Problem("--inventory", f"{inventory} does not exist")])
    loader = DataLoader()
    try:
        manager = InventoryManager(loader=loader, sources=[str(inventory)])
        found = manager.get_host(host)
        if found is None:
            known = ", ".join(sorted(h.name for h in manager.get_hosts())) or "none"
            raise SpecError(host, [Problem("--host", f"not in inventory {inventory} (hosts: {known})")])
        variables = VariableManager(loader=loader, inventory=manager).get_vars(host=found, include_hostvars=False)
    except AnsibleError as exc:
        raise SpecError(host, [error_problem(exc, "--inventory")]) from None
    if ROOT_KEY not in variables:
        return {}
    check_bounded(host, variables[ROOT_KEY])
    try:
        templated = Templar(loader=loader, variables=variables).template(variables[ROOT_KEY])
    except AnsibleError as exc:
        raise SpecError(host, [error_problem(exc)]) from None
    return plain({ROOT_KEY: templated})
