"""Validate a host's llamafleet description and render its files on the controller.

A thin shim over the generators package: the same code as `python -m generators render`.
It never touches the host, so every host is checked before any host changes; that includes the memory fit
of each server's launch (generators.fit.check): one that cannot fit fails here, an unchecked one warns.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from generators.errors import SpecError
from generators.fit.check import check_host_fits
from generators.inventory import plain
from generators.render import render_host
from generators.spec import ROOT_KEY, parse_host


def with_build(spec: dict, build: object) -> dict:
    """The description with another llama.cpp build (an upgrade); a git ref naming the old build follows."""
    cpp = dict(spec.get("llamacpp") or {})
    old = cpp.get("build")
    new = int(build) if str(build).isdigit() else build  # a non-number is reported by validation
    source = dict(cpp.get("source") or {})
    git = source.get("git")
    if isinstance(git, dict) and old is not None and git.get("ref") == f"b{old}":
        source["git"] = {**git, "ref": f"b{new}"}
    return {**spec, "llamacpp": {**cpp, "build": new, "source": source}}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        host = (task_vars or {}).get("inventory_hostname", "?")
        spec = self._task.args.get("spec")
        hostvars = {} if spec is None else {ROOT_KEY: plain(spec)}
        build = self._task.args.get("build")
        if build not in (None, "") and isinstance(hostvars.get(ROOT_KEY), dict):
            hostvars[ROOT_KEY] = with_build(hostvars[ROOT_KEY], build)
        try:
            parsed = parse_host(host, hostvars)
            warnings = check_host_fits(parsed, host)  # a launch that cannot fit the host's memory fails here
        except SpecError as exc:
            result.update(failed=True, msg=str(exc), problems=[p.line(host) for p in exc.problems])
            return result
        if warnings:
            result["warnings"] = [*result.get("warnings", []), *warnings]
        files = render_host(parsed)
        manifest = next(f for f in files if f.path == "manifest.json")
        result.update(
            changed=False,
            rendered={
                "files": {f.path: {"content": f.content, "mode": f.mode} for f in files},
                "manifest": self._loader.load(manifest.content),
            },
        )
        return result
