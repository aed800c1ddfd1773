"""Keep a host's bench results on the controller: a thin shim over :mod:`generators.bench`.

Turns the host module's output into records (one per host × build × backend × model × flags, keyed by GPU, driver,
build and quantization) and appends them to ``<inventory_dir>/bench/<host>.jsonl`` (never rewritten); returns the
Markdown table of this run. Check mode writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from ansible.plugins.action import ActionBase

from generators.bench import append_records, markdown, records_from_results, records_path
from generators.errors import SpecError
from generators.inventory import check_bounded, plain
from generators.pipeline import hostvars_of, plan_hostvars
from generators.tuned import read_tuned, tuned_path


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
            check_bounded(host, spec)
            tuned = read_tuned(host, tuned_path(inventory_dir, host))
            probe = args.get("probe")
            plan = plan_hostvars(host, hostvars_of(None if spec is None else plain(spec)),
                                 None if probe is None else plain(probe), tuned)
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
