"""The fit check render runs: a server whose launch cannot fit its host fails at render time, not at 3 a.m.

Both render entry points (``python -m generators render`` and the preflight action plugin) call
:func:`check_host_fits` (through :func:`generators.pipeline.render_hostvars`) before anything is written or
changed. It plans each server *as rendered*: what the unit's
command line sets (ctx, cache types, batch sizes, ``--n-gpu-layers``, flash attention, ``--no-kv-offload``, the
slots) is pinned in the plan, as llama.cpp's own ``--fit`` never touches a value given on the command line; only
``gpu_layers: auto`` is left to the planner, as llama.cpp fits it. Servers share the host's memory in order, as in
``python -m generators fit``.

Policy:

- facts known and the launch does not fit the GPU's memory (the catalog's VRAM, an APU's GTT pool) or the host RAM
  the description states: :class:`SpecError` naming ``llamafleet.servers[i].ctx``, the shortfall and the nearest
  configuration that would fit;
- facts unknown offline (model not in the catalog, no GGUF at its path on the controller): a warning naming host,
  model and the catalog command, never a failure;
- nothing to check against (no GPU and host RAM not described, e.g. the demo host): skipped without a word.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from generators.errors import Problem, SpecError
from generators.plan.fit import catalog
from generators.plan.fit.gguf_facts import ModelFacts, read_facts
from generators.plan.fit.planner import MIB, PROCESS_RESERVE_MIB, UNKNOWN_MIB, ConfigError, FitError, Plan, fit
from generators.plan.fit.requests import launch_request, memory_for
from generators.plan.fit.servers import CATALOG_ADD
from generators.plan.host import HostPlan
from generators.spec import Model

ROOT = "llamafleet"
MARGIN_MIB = 256


@dataclass(frozen=True)
class Outcome:
    """One server's check: its plan when it fits, the error when it does not, a warning when it was not checked."""

    server: str
    index: int
    plan: Plan | None = None
    error: FitError | None = None
    warning: str | None = None


def model_facts(model: Model) -> ModelFacts | None:
    """Facts of a host's model: its GGUF when the controller has the file at the model's path, else the catalog."""
    path = model.path
    if path and Path(path).is_file():
        return replace(read_facts(path), name=model.filename)  # a corrupt header raises (HEADER_ERRORS)
    return catalog.lookup(model.filename)


#: what reading a malformed GGUF header raises (gguf's reader: bad magic, truncated arrays, absurd lengths)
HEADER_ERRORS = (OSError, ValueError, KeyError, IndexError, TypeError, OverflowError, UnicodeDecodeError,
                 MemoryError, AttributeError)


def _model_facts_or_error(plan: HostPlan, model: Model) -> ModelFacts | None:
    """:func:`model_facts`, with a GGUF on the controller whose header cannot be read as one error naming it."""
    try:
        return model_facts(model)
    except HEADER_ERRORS as exc:
        index = next(i for i, m in enumerate(plan.spec.models) if m.name == model.name)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise SpecError(plan.name, [Problem(f"{ROOT}.models[{index}].path",
                                            f"{model.path}: not a readable GGUF header ({reason})")]) from None


def _unknown(host: str, index: int, filename: str) -> str:
    return (f"host {host}: llamafleet.servers[{index}].model: no header facts for {filename} offline, so its memory "
            f"fit is not checked: add them with `{CATALOG_ADD} --repo ORG/REPO --file "
            f"{filename}` (online) or `--path FILE.gguf`")


def check_servers(plan: HostPlan, margin_mib: int = MARGIN_MIB) -> list[Outcome]:
    """Plan every server of a llama.cpp host as rendered, each in the memory the ones before it left."""
    host = plan.name
    if plan.engine != "llamacpp" or plan.llamacpp is None:
        return []
    used = {"gpu": 0, "host": 0}
    out: list[Outcome] = []
    for server in plan.servers:
        if plan.router is not None and server.name == plan.router.server:
            continue  # a router's models are planned one by one (generators.plan.fit.router sizes it)
        index = server.index
        memory, ram_known = memory_for(plan, server, None, None)
        if memory.gpu_mib <= 0 and plan.backend != "cpu":
            out.append(Outcome(server.name, index, warning=(
                f"host {host}: llamafleet.servers[{index}]: the {plan.backend} GPU's memory is not described "
                f"(vram_gb), so its memory fit is not checked")))
            continue
        if memory.gpu_mib <= 0 and not ram_known:
            continue  # nothing to check against: no GPU, RAM not described
        model = server.model
        facts = _model_facts_or_error(plan, model)
        if facts is None:
            out.append(Outcome(server.name, index, warning=_unknown(host, index, model.filename)))
            continue
        left = replace(memory, gpu_mib=max(0, memory.gpu_mib - used["gpu"] // MIB),
                       host_mib=memory.host_mib if not ram_known else max(0, memory.host_mib - used["host"] // MIB),
                       reserve_mib=PROCESS_RESERVE_MIB.get(memory.backend) if used["gpu"] else None)
        try:
            result = fit(facts, left.gpu_mib, left.host_mib, launch_request(server, facts), margin_mib,
                         left.backend, left.unified, left.build, left.reserve_mib)
        except FitError as exc:
            out.append(Outcome(server.name, index, error=exc))
            continue
        except ConfigError as exc:
            raise SpecError(host, [Problem(f"{ROOT}.servers[{index}]", str(exc))]) from None
        for where in ("gpu", "host"):
            used[where] += sum(c.bytes for c in result.components if c.where == where)
        out.append(Outcome(server.name, index, plan=result))
    return out


def _problem(outcome: Outcome) -> Problem:
    assert outcome.error is not None
    closest, nearest = outcome.error.closest, outcome.error.nearest
    where = ", ".join(f"{p}: {-closest.headroom(p) / MIB:.0f} MiB short of {closest.available(p) / MIB:.0f} MiB"
                      for p in closest.places() if closest.headroom(p) < 0 and closest.available(p) < UNKNOWN_MIB * MIB)
    wanted = " ".join(closest.config.flags())
    hint = (f"nearest configuration that fits: {' '.join(nearest.config.flags())}" if nearest is not None
            else "no configuration fits this host, even with every value free")
    return Problem(f"{ROOT}.servers[{outcome.index}].ctx",
                   f"server {outcome.server}: {closest.config.ctx} tokens of context do not fit ({where}, keeping a "
                   f"{closest.margin_mib} MiB margin) with {wanted}; {hint} "
                   f"(`python -m generators fit --launch` shows the table)")


def check_host_fits(plan: HostPlan, margin_mib: int = MARGIN_MIB) -> list[str]:
    """Raise :class:`SpecError` for servers whose launch does not fit, or a model GGUF on the controller whose
    header cannot be read (checked even where there is no memory to fit in); return warnings for unchecked ones."""
    if plan.engine == "llamacpp":
        for model in plan.spec.models:
            if model.path and Path(model.path).is_file():
                _model_facts_or_error(plan, model)
    outcomes = check_servers(plan, margin_mib)
    problems = [_problem(o) for o in outcomes if o.error is not None]
    if problems:
        raise SpecError(plan.name, problems)
    return [o.warning for o in outcomes if o.warning is not None]


__all__ = ["Outcome", "check_host_fits", "check_servers", "model_facts"]
