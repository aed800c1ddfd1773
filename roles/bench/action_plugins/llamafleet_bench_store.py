"""Keep a host's bench results on the controller: a thin shim over :mod:`generators.bench`.

Turns the host module's output into records (one per host × build × backend × model × flags, keyed by GPU, driver,
build and quantization) and appends them to ``<inventory_dir>/bench/<host>.jsonl`` (never rewritten); returns the
Markdown table of this run. Check mode writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from ansible.plugins.action import ActionBase

from generators.bench import append_records, markdown, records_from_results, records_path, task_plan
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
        try:
            plan = task_plan(host, spec, args.get("probe"), inventory_dir, args.get("build"))
            records = records_from_results(plan, plain(args.get("output") or {}))
        except SpecError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        path = records_path(Path(inventory_dir), host)
        if self._task.check_mode:
            result.update(changed=False, path=str(path), appended=0, table="")
            return result
        n = append_records(path, records)
        result.update(changed=n > 0, path=str(path), appended=n, table=markdown(host, records).splitlines())
        return result
