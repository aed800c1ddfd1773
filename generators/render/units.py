"""systemd units and their companions: a server's unit and environment file, the SSE-repair proxy's unit, and
Ollama's drop-in, each from its plan."""

from __future__ import annotations

from generators.errors import SpecError
from generators.plan.host import OllamaPlan
from generators.plan.ollama import OllamaModel
from generators.plan.router import RouterPlan
from generators.plan.proxy import ProxyUnit, problems, proxy_argv
from generators.plan.servers import HEALTH_WAIT_S, ServerPlan
from generators.render.templating import Templates, argv_lines, render


# ExecStartPre of a chat server that starts after the FIM server (seed 002): poll each URL until it answers 200,
# at most argv[2] seconds (then exit 1; the unit's "-" prefix lets the chat server load anyway). Python's stdlib
# only: every host has python3 (Ansible needs it); exec() because a unit line cannot hold the loop's line breaks.
HEALTH_WAIT = (
    "import sys,time,urllib.request as r\n"
    "u,d=sys.argv[1],time.monotonic()+float(sys.argv[2])\n"
    "while time.monotonic()<d:\n"
    " try:\n"
    "  if r.urlopen(u,timeout=5).status==200:sys.exit(0)\n"
    " except OSError:pass\n"
    " time.sleep(1)\n"
    "sys.exit('llamafleet: '+u+' not healthy after '+sys.argv[2]+' s: starting anyway')"
)
PYTHON = "/usr/bin/python3"


def health_wait_argv(url: str, seconds: int = HEALTH_WAIT_S) -> list[str]:
    """The argv that waits for one server's /health (one ExecStartPre=)."""
    return [PYTHON, "-c", f"exec({HEALTH_WAIT!r})", url, str(seconds)]


def render_unit(plan: ServerPlan, router: RouterPlan | None = None) -> str:
    return render(
        Templates.server_unit,
        server=plan.server,
        model=plan.model,
        router=None if router is None else [m.id for m in router.models],
        exec_lines=argv_lines(plan.argv),
        env_file=plan.env_file,
        after=plan.after,
        wait_lines=[" ".join(argv_lines(health_wait_argv(u))) for u in plan.wait_health],
        start_timeout=HEALTH_WAIT_S * max(1, len(plan.wait_health)) + 90,
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


def render_ollama_modelfile(model: OllamaModel) -> str:
    """A derived model's Modelfile: the pulled tag with its own num_ctx (names match OLLAMA_MODEL_RE: plain)."""
    return render(Templates.ollama_modelfile, model=model)
