"""Validate a host's llamafleet description and render its files on the controller.

A thin shim over :func:`generators.pipeline.render_hostvars`: the same code as `python -m generators render`.
With ``declared_only`` it checks what the description alone can show (in full when the GPUs are declared),
before any host is contacted. ``probe`` is the host_facts role's raw output (the host was asked first, read-only); the description is
merged with it (detected GPUs, distro, toolchain; disagreements fail here). It never touches the host, so every host is checked before any host changes; that includes the memory fit
of each server's launch (generators.plan.fit.check): one that cannot fit fails here, an unchecked one warns.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from generators.errors import SpecError
from generators.inventory import check_bounded, plain
from generators.pipeline import check_declared, hostvars_of, render_hostvars
from generators.tuned import read_tuned, tuned_path


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        host = (task_vars or {}).get("inventory_hostname", "?")
        spec = self._task.args.get("spec")
        try:
            check_bounded(host, spec)  # an alias bomb is refused before plain() expands it
            hostvars = hostvars_of(None if spec is None else plain(spec), self._task.args.get("build"))
            probe = self._task.args.get("probe")
            # the host's tuned override beside the inventory (bench-report --write-tuned), when there is one
            inventory_dir = (task_vars or {}).get("inventory_dir")
            tuned = read_tuned(host, tuned_path(inventory_dir, host)) if inventory_dir else None
            if self._task.args.get("declared_only"):
                warnings = check_declared(host, hostvars, tuned)
                if warnings:
                    result["warnings"] = [*result.get("warnings", []), *warnings]
                result.update(changed=False, checked_in_full=warnings is not None)
                return result
            rendered = render_hostvars(host, hostvars, probe=None if probe is None else plain(probe), tuned=tuned)
        except SpecError as exc:
            result.update(failed=True, msg=str(exc), problems=[p.line(host) for p in exc.problems])
            return result
        if rendered.warnings and not self._task.args.get("quiet"):
            result["warnings"] = [*result.get("warnings", []), *rendered.warnings]
        probe = rendered.facts.probe
        result.update(
            changed=False,
            # what the roles need from the probe: the groups owning /dev/dri/renderD* and /dev/kfd, login.defs
            host={
                "probed": probe is not None,
                "device_groups": [] if probe is None else [g for g in probe.device_groups if not g.startswith("gid ")],
                "uid_min": 1000 if probe is None or probe.uid_min is None else probe.uid_min,
            },
            rendered={
                "files": {f.path: {"content": f.content, "mode": f.mode} for f in rendered.files},
                "manifest": self._loader.load(rendered.files[-1].content),
            },
        )
        return result
