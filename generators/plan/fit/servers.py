"""The memory plan of each server of a host (``python -m generators fit``): servers share the host's memory in
order, each planned in what the ones before it left.

Model facts come from the offline catalog (``generators/data/model_facts.yaml``) by GGUF file name, or from a GGUF on
this machine (``local``: file name -> path). The GPU's memory comes from the plan's GPU for the server (its
``vram_gb``), host RAM from the host's facts; ``vram_mib`` / ``ram_mib`` override both (for an APU, ``vram_mib`` is
its GTT pool). Unknown host RAM is shown but not checked.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from generators.errors import Problem, SpecError
from generators.plan.fit import catalog
from generators.plan.fit.gguf_facts import ModelFacts, read_facts
from generators.plan.fit.planner import MIB, PROCESS_RESERVE_MIB, ConfigError, FitError, fit
from generators.plan.fit.requests import launch_request, memory_for, request_for
from generators.plan.host import HostPlan

CATALOG_ADD = "python -m generators catalog add"


def _facts(host: str, index: int, filename: str, local: dict[str, str]) -> ModelFacts:
    if filename in local:
        try:
            return read_facts(local[filename])
        except (OSError, ValueError, KeyError, IndexError, TypeError, OverflowError, MemoryError) as exc:
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            raise SpecError(host, [Problem("--gguf", f"{local[filename]}: not a readable GGUF header ({reason})")]) from None
    found = catalog.lookup(filename)
    if found is None:
        raise SpecError(host, [Problem(f"llamafleet.models[{index}]",
                                       f"no header facts for {filename}: add them with `{CATALOG_ADD} "
                                       f"--repo ORG/REPO --file {filename}` (online) or --gguf")])
    return found


def plan_servers(plan: HostPlan, vram_mib: int | None, ram_mib: int | None, margin_mib: int,
                 local: dict[str, str], launch: bool = False) -> list[dict[str, Any]]:
    """Plan every server in order, each in the memory the previous ones left. Pure apart from reading facts.

    ``launch``: plan the rendered command line (:func:`~generators.plan.fit.requests.launch_request`) rather than
    free choices.
    """
    host = plan.name
    names = [m.name for m in plan.spec.models]
    used = {"gpu": 0, "host": 0}
    results: list[dict[str, Any]] = []
    for server in plan.servers:
        index = names.index(server.model.name)
        model = plan.spec.models[index]
        facts = _facts(host, index, model.filename, local)
        memory, ram_known = memory_for(plan, server, vram_mib, ram_mib)
        left = replace(memory, gpu_mib=max(0, memory.gpu_mib - used["gpu"] // MIB),  # unknown RAM stays unknown
                       host_mib=max(0, memory.host_mib - used["host"] // MIB) if ram_known else memory.host_mib,
                       reserve_mib=PROCESS_RESERVE_MIB.get(memory.backend) if used["gpu"] else None)
        entry: dict[str, Any] = {"server": server.name, "model": model.filename, "ram_known": ram_known}
        try:
            wanted = launch_request(server, facts) if launch else request_for(server, facts)
            result = fit(facts, left.gpu_mib, left.host_mib, wanted, margin_mib, left.backend, left.unified, left.build,
                         left.reserve_mib)
        except FitError as exc:
            entry.update(fits=False, error=str(exc), closest=exc.closest.to_json(),
                         nearest=exc.nearest.to_json() if exc.nearest else None)
            results.append(entry)
            continue
        except ConfigError as exc:
            raise SpecError(host, [Problem(f"llamafleet.servers[{server.name}]", str(exc))]) from None
        for where in ("gpu", "host"):
            used[where] += sum(c.bytes for c in result.components if c.where == where)
        entry.update(plan=result, **result.to_json())
        results.append(entry)
    return results


def require_fit(plan: HostPlan, vram_mib: int | None = None, ram_mib: int | None = None,
                margin_mib: int = 256) -> list[dict[str, Any]]:
    """Plan the host's free choices and raise :class:`SpecError` naming each server that does not fit.

    A server's model that the catalog does not know is a problem too (the plan cannot be checked offline). Render
    does not call this: it checks the command line it writes, with its own policy, in
    :func:`generators.plan.fit.check.check_host_fits`.
    """
    results = plan_servers(plan, vram_mib, ram_mib, margin_mib, {})
    problems = []
    for i, r in enumerate(results):
        if r["fits"]:
            continue
        near = r["nearest"]
        hint = f"; nearest that fits: {' '.join(near['flags'])}" if near else "; nothing fits this host"
        short = max(-v for v in r["closest"]["headroom_mib"].values())
        problems.append(Problem(f"llamafleet.servers[{i}].ctx",
                                f"{plan.servers[i].name}: {r['model']} at this context does not fit "
                                f"({short:.0f} MiB short){hint}"))
    if problems:
        raise SpecError(plan.name, problems)
    return results
