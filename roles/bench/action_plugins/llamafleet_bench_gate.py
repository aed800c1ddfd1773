"""The upgrade gate (playbooks/upgrade.yml -e rollout_bench=true): a thin shim over :mod:`generators.bench`.

``step: plan``: the gate's runs, each server's stored deployed record of the running build (``previous``) again on
the new build (fails, one line, when a server has no record). ``step: judge``: the new build's records appended to
``<inventory_dir>/bench/<host>.jsonl``, then failed when prefill or generation regresses beyond ``threshold``
(default 0.10) against the stored record, which the rollout's rescue turns into a rollback.
"""

from __future__ import annotations

from pathlib import Path

from ansible.plugins.action import ActionBase

from generators.bench import (GATE_THRESHOLD, append_records, gate, gate_runs, read_records, records_from_results,
                              records_path, task_plan)
from generators.errors import SpecError
from generators.inventory import plain


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        host = task_vars.get("inventory_hostname", "?")
        args = self._task.args
        spec = args.get("spec")
        inventory_dir = args.get("records_dir") or task_vars.get("inventory_dir") or "."
        previous = str(args.get("previous") or "")
        try:
            plan = task_plan(host, spec, args.get("probe"), inventory_dir, args.get("build"))
            path = records_path(Path(inventory_dir), host)
            stored = read_records(host, path)
            if args.get("step") == "plan":
                result.update(changed=False, runs=gate_runs(host, stored, previous, plan))
                return result
            new = records_from_results(plan, plain(args.get("output") or {}))
        except SpecError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        threshold = float(args.get("threshold") or GATE_THRESHOLD)
        ok, lines = gate(stored, new, previous, threshold)
        if not self._task.check_mode:
            append_records(path, new)
        result.update(changed=False, lines=lines, passed=ok)
        if not ok:
            result.update(failed=True, msg=f"host {host}: the bench gate refuses the new build (more than "
                                           f"{100 * threshold:.0f} % slower than {previous}): " + "; ".join(lines))
        return result
