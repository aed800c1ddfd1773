"""The render layer: pure text from a host's plan (:class:`~generators.plan.HostPlan`), no I/O.

:func:`render_host` returns every file a host gets except the manifest (:mod:`generators.manifest` adds it), in a
stable order; paths mirror where the roles install them. One Jinja environment and every template name live in
:mod:`~generators.render.templating`.
"""

from __future__ import annotations

from dataclasses import dataclass

from generators import data
from generators.plan.host import HostPlan
from generators.render.builds import render_build
from generators.render.clients import render_client
from generators.render.units import (
    render_env,
    render_ollama_modelfile,
    render_ollama_override,
    render_preset,
    render_proxy_unit,
    render_unit,
)


@dataclass(frozen=True)
class RenderedFile:
    path: str  # relative to the render root; mirrors where the role installs it
    content: str
    mode: str = "0644"


def render_host(plan: HostPlan) -> list[RenderedFile]:
    """Every file a host gets but the manifest, in a stable order."""
    files: list[RenderedFile] = []
    if plan.engine == "llamacpp":
        if plan.llamacpp is not None:
            for build in plan.llamacpp.builds:
                script = render_build(build.target, plan.llamacpp.paths)
                files.append(RenderedFile(build.render_path, script, "0755"))
        for server in plan.servers:
            router = plan.router if plan.router is not None and plan.router.server == server.name else None
            files.append(RenderedFile(server.unit_render_path, render_unit(server, router)))
            if router is not None:
                files.append(RenderedFile(router.render_path, render_preset(router)))
            files.append(RenderedFile(server.env_render_path, render_env(server), "0600"))
        for name, path in plan.chat_templates:
            files.append(RenderedFile(path, data.chat_template_text(name)))
    elif plan.ollama is not None:
        files.append(RenderedFile(plan.ollama.render_path, render_ollama_override(plan.ollama)))
        files += [RenderedFile(m.render_path, render_ollama_modelfile(m)) for m in plan.ollama.models
                  if m.render_path is not None]
    if plan.proxy is not None:
        files.append(RenderedFile(plan.proxy.render_path, render_proxy_unit(plan.proxy.unit)))
    if plan.clients is not None:
        files += [RenderedFile(f.render_path, render_client(plan.clients, f.name), "0600") for f in plan.clients.files]
    return files
