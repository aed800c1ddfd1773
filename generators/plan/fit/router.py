"""``--models-max`` of a router (``serve: router``) from the memory planner: how many of its models fit together.

Each model is planned as its own llama-server would run it (its rendered flags, :func:`launch_request`) in the
whole memory of its GPU and host: a model that cannot fit even alone is an error, as for a unit. The router's
children are separate processes, so their buffers add up (each child holds its own runtime reserve and host
reserve). The router may evict and load in any order, so ``--models-max`` is the largest ``k`` for which the ``k``
biggest models fit together, on the GPU and in host RAM each (one margin per place): then any ``k`` of them fit.

``router.models_max`` may pin a smaller number; a larger one than fits is an error. Without memory to check against
(no GPU memory described on a GPU backend, or a CPU host whose RAM is unknown) every model may stay loaded: the
pinned value or the number of models. A model the planner has no facts for (offline, not in the catalog, no GGUF
on the controller) leaves the router at one model at a time (or the pinned value), with a warning.
"""

from __future__ import annotations

from dataclasses import replace

from generators.errors import Problem, SpecError
from generators.plan.fit.check import MARGIN_MIB, model_facts
from generators.plan.fit.planner import MIB, ConfigError, FitError, Plan, Where, fit
from generators.plan.fit.requests import launch_request, memory_for
from generators.plan.host import HostPlan
from generators.plan.router import RouterPlan, with_models_max

ROOT = "llamafleet"


def capacity(plans: list[Plan], margin_mib: int = MARGIN_MIB) -> int:
    """The largest ``k`` whose ``k`` biggest models fit together in every place (0 when not even one does)."""
    if not plans:
        return 0
    places: tuple[Where, ...] = plans[0].places()
    best = len(plans)
    for place in places:
        budget = plans[0].available(place) - margin_mib * MIB
        used = sorted((p.used(place) for p in plans), reverse=True)
        total, k = 0, 0
        for size in used:
            if total + size > budget:
                break
            total, k = total + size, k + 1
        best = min(best, k)
    return best


def model_plans(plan: HostPlan, router: RouterPlan, margin_mib: int = MARGIN_MIB) -> tuple[list[Plan], list[str]]:
    """Each model's memory plan alone in the host's memory; warnings for models without facts offline. Raises
    :class:`SpecError` naming each model that does not fit even alone."""
    plans: list[Plan] = []
    warnings: list[str] = []
    problems: list[Problem] = []
    for model in router.models:
        server = model.plan
        where = f"{ROOT}.servers[{server.index}]" + (f".presets.{model.preset}" if model.preset else "")
        memory, _ = memory_for(plan, server, None, None)
        try:
            facts = model_facts(server.model)
        except (OSError, ValueError, KeyError, IndexError, TypeError, OverflowError, MemoryError) as exc:
            raise SpecError(plan.name, [Problem(f"{where}.model", f"{server.model_path}: not a readable GGUF header "
                                                                  f"({type(exc).__name__})")]) from None
        if facts is None:
            warnings.append(f"host {plan.name}: {where}.model: no header facts for {server.model.filename} offline, "
                            f"so the router's --models-max is not sized by the memory planner")
            continue
        try:
            plans.append(fit(facts, memory.gpu_mib, memory.host_mib, launch_request(server, facts), margin_mib,
                             memory.backend, memory.unified))
        except FitError as exc:
            short = exc.closest.shortfall() / MIB
            problems.append(Problem(f"{where}.ctx", f"router model {model.id}: {exc.closest.config.ctx} tokens of "
                                                    f"context do not fit even alone ({short:.0f} MiB short)"))
        except ConfigError as exc:
            problems.append(Problem(where, str(exc)))
    if problems:
        raise SpecError(plan.name, problems)
    return plans, warnings


def size_router(plan: HostPlan, margin_mib: int = MARGIN_MIB) -> HostPlan:
    """The plan with its router's ``--models-max`` decided (a plan without a router, or sized, as it is)."""
    router = plan.router
    if router is None or router.sized:
        return plan
    unit = plan.server(router.server)
    memory, ram_known = memory_for(plan, unit, None, None)
    if memory.gpu_mib <= 0 and (plan.backend != "cpu" or not ram_known):
        models_max, warnings = router.pinned or len(router.models), ()  # nothing to check against
    else:
        plans, found = model_plans(plan, router, margin_mib)
        warnings = tuple(found)
        if found:
            models_max = router.pinned or 1
        else:
            fits = capacity(plans, margin_mib)
            if router.pinned is not None and router.pinned > fits:
                raise SpecError(plan.name, [Problem(f"{ROOT}.router.models_max",
                                                    f"{router.pinned} models do not fit together here: at most "
                                                    f"{fits} (the memory planner's sum of the biggest)")])
            models_max = router.pinned or fits
    unit, router = with_models_max(unit, router, models_max, warnings)
    return replace(plan, servers=tuple(unit if s.name == unit.name else s for s in plan.servers), router=router)


__all__ = ["capacity", "model_plans", "size_router"]
