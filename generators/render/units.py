"""systemd units and their companions: a server's unit and environment file, the SSE-repair proxy's unit, and
Ollama's drop-in, each from its plan."""

from __future__ import annotations

from generators.errors import SpecError
from generators.plan.host import OllamaPlan
from generators.plan.router import RouterPlan
from generators.plan.proxy import ProxyUnit, problems, proxy_argv
from generators.plan.servers import ServerPlan
from generators.render.templating import Templates, argv_lines, render


def render_unit(plan: ServerPlan, router: RouterPlan | None = None) -> str:
    return render(
        Templates.server_unit,
        server=plan.server,
        model=plan.model,
        router=None if router is None else [m.id for m in router.models],
        exec_lines=argv_lines(plan.argv),
        env_file=plan.env_file,
    )


def render_preset(router: RouterPlan) -> str:
    """The router's ``--models-preset`` INI; every key, value and section name checked for llama.cpp's parser."""
    return render(Templates.router_preset, shared=list(router.shared), models=list(router.models),
                  startup=list(router.startup))


def render_env(plan: ServerPlan) -> str:
    return render(Templates.server_env, server=plan.server, env=dict(plan.environment))


def render_proxy_unit(unit: ProxyUnit) -> str:
    """The proxy's unit file text; raises :class:`SpecError` listing every problem before anything is rendered."""
    found = problems(unit)
    if found:
        raise SpecError(unit.host, found)
    lines = argv_lines(proxy_argv(unit))
    # argv_lines pairs an option with its value; "-m <package>" reads best on the binary's line
    exec_lines = [f"{lines[0]} {lines[1]}", *lines[2:]] if lines[1].startswith("-m ") else lines
    return render(Templates.sse_proxy_unit, unit=unit, exec_lines=exec_lines)


def render_ollama_override(plan: OllamaPlan) -> str:
    return render(Templates.ollama_override, pairs=list(plan.environment))
