"""Plan a host's benchmark sweep on the controller: a thin shim over :func:`generators.bench.plan_sweep`.

The same description, host probe and tuned file as the preflight render; the host's cores (threads swept on the
CPU backend), the time budget and the measured bandwidth come from the play. Returns the table to show and the
llama-bench runs the host module makes. Changes nothing.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from generators.bench import plan_sweep, sweep_json
from generators.errors import SpecError
from generators.inventory import check_bounded, plain
from generators.pipeline import hostvars_of
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
        try:
            check_bounded(host, spec)
            hostvars = hostvars_of(None if spec is None else plain(spec), args.get("build"))
            inventory_dir = task_vars.get("inventory_dir")
            tuned = read_tuned(host, tuned_path(inventory_dir, host)) if inventory_dir else None
            probe = args.get("probe")
            _, sweep = plan_sweep(host, hostvars, None if probe is None else plain(probe), tuned,
                                  cores=int(args["cores"]) if args.get("cores") else None,
                                  budget_s=int(args.get("budget_s") or 900),
                                  depth_cap=int(args.get("depth_cap") or 4096),
                                  measured_gbs=float(args["bandwidth_gbs"]) if args.get("bandwidth_gbs") else None)
        except SpecError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        except (TypeError, ValueError) as exc:
            result.update(failed=True, msg=f"host {host}: bench: {' '.join(str(exc).split())}")
            return result
        result.update(changed=False, sweep=sweep_json(sweep))
        return result
