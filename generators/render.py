"""Pure renders: a validated :class:`~generators.spec.Host` in, file contents out."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

import jinja2

from generators.flags import server_argv, server_flags
from generators.layout import Layout
from generators.spec import Host

MANAGED = "Managed by llamafleet: edits here are overwritten; change the inventory and re-run the playbook."

TEMPLATES = {
    "unit": "llama-server.service.j2",
    "env": "llama-server.env.j2",
    "build": "build-llamacpp.sh.j2",
}

_PLAIN = re.compile(r"^[A-Za-z0-9_./:=+,@-]+$")


def systemd_quote(arg: str) -> str:
    """Quote one ExecStart argument the way systemd parses it (specifiers and variables escaped)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("generators", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - renders unit files and shell, never HTML
    )
    env.filters["systemd_quote"] = systemd_quote
    env.globals["managed"] = MANAGED
    return env


def _render(kind: str, **context: object) -> str:
    return environment().get_template(TEMPLATES[kind]).render(**context)


@dataclass(frozen=True)
class RenderedFile:
    path: str  # relative to the render root; mirrors where the role installs it
    content: str
    mode: str = "0644"


def argv_lines(argv: list[str]) -> list[str]:
    """ExecStart continuation lines: the binary, then each option with its value, quoted for systemd."""
    lines = [systemd_quote(argv[0])]
    for arg in argv[1:]:
        if arg.startswith("-") or len(lines) == 1 or " " in lines[-1]:
            lines.append(systemd_quote(arg))
        else:
            lines[-1] += " " + systemd_quote(arg)
    return lines


def render_unit(host: Host, server_name: str, layout: Layout) -> str:
    server = next(s for s in host.servers if s.name == server_name)
    return _render(
        "unit",
        server=server,
        model=host.model(server.model),
        exec_lines=argv_lines(server_argv(host, server, layout)),
        env_file=f"%h/.config/llamafleet/{layout.env_name(server)}",
    )


def render_env(host: Host, server_name: str, layout: Layout) -> str:
    server = next(s for s in host.servers if s.name == server_name)
    return _render("env", server=server, env={})


def cmake_flags(host: Host) -> list[str]:
    cpp = host.llamacpp
    return [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=OFF",
        f"-DGGML_NATIVE={'ON' if cpp.native else 'OFF'}",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        f"-DLLAMA_BUILD_NUMBER={cpp.build}",
        "-DCMAKE_C_COMPILER_LAUNCHER=ccache",
        "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache",
    ]


def render_build_script(host: Host, layout: Layout) -> str:
    return _render("build", llamacpp=host.llamacpp, layout=layout, cmake_flags=cmake_flags(host))


def manifest(host: Host, layout: Layout) -> dict[str, object]:
    """What the roles need besides the files: names, paths and ports, as plain data."""
    return {
        "user": host.user,
        "llamacpp": {
            "build": host.llamacpp.build,
            "backend": host.llamacpp.backend,
            "version": host.llamacpp.version,
            "source": host.llamacpp.source.model_dump(exclude_none=True),
            "source_kind": host.llamacpp.source.kind,
            "source_dir": layout.source_dir,
            "prefix_root": layout.prefix_root,
            "prefix": layout.prefix,
            "current": layout.current,
            "build_dir": layout.build_dir,
            "ccache_dir": layout.ccache_dir,
            "cache_root": layout.cache_root,
            "targets": list(host.llamacpp.targets),
        },
        "models_dir": layout.models_dir,
        "models": [
            {"name": m.name, "path": layout.model_path(m), "source": m.model_dump(exclude_none=True, exclude={"name"})}
            for m in host.models
        ],
        "servers": [
            {
                "name": s.name,
                "unit": layout.unit_name(s),
                "env": layout.env_name(s),
                "host": s.host,
                "port": s.port,
                "alias": s.alias,
                "model_path": layout.model_path(host.model(s.model)),
                "api_key_file": s.api_key_file,
                "flags": server_flags(server_argv(host, s, layout)),
            }
            for s in host.servers
        ],
    }


def render_host(host: Host, layout: Layout | None = None) -> list[RenderedFile]:
    """Every file a host gets, in a stable order; paths mirror the install locations."""
    layout = layout or Layout(host)
    files = [RenderedFile("build/build-llamacpp.sh", render_build_script(host, layout), "0755")]
    for server in host.servers:
        files.append(RenderedFile(f"systemd/user/{layout.unit_name(server)}", render_unit(host, server.name, layout)))
        files.append(RenderedFile(f"llamafleet/{layout.env_name(server)}", render_env(host, server.name, layout), "0600"))
    files.append(RenderedFile("manifest.json", json.dumps(manifest(host, layout), indent=2, sort_keys=True) + "\n"))
    return files
