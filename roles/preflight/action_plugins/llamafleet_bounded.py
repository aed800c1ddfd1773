"""Refuse a host description that is a YAML alias bomb, before anything templates it.

Ansible loads host_vars with PyYAML, which builds aliases by reference (a bomb loads in milliseconds); what
expands it is the first template that reads the variable: a task argument ``"{{ llamafleet }}"``, or the role
argument-spec check of ``include_role`` (both copy the value out in full, 9^10 nodes for a ten-level bomb). This
action takes no arguments and reads ``llamafleet`` from the task's variables as loaded, untemplated, so
:func:`generators.inventory.check_bounded` counts it by identity without expanding it. playbooks/site.yml and
playbooks/upgrade.yml run it (``tasks_from: bounded``, an entry point without an argument spec) first.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from generators.errors import SpecError
from generators.inventory import check_bounded


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        host = task_vars.get("inventory_hostname", "?")
        try:
            check_bounded(host, task_vars.get("llamafleet"))
        except SpecError as exc:
            result.update(failed=True, msg=str(exc), problems=[p.line(host) for p in exc.problems])
            return result
        result.update(changed=False)
        return result
