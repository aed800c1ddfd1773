"""The one Jinja environment of the renders, every template's name, and the quoting filters.

Templates live in ``generators/render/templates``; :class:`Templates` names each one (a test keeps the enum and
the folder equal). Every rendered file starts with :data:`MANAGED` (the ``managed`` global).
"""

from __future__ import annotations

import enum
import functools
import re
import shlex

import jinja2

MANAGED = "Managed by llamafleet: edits here are overwritten; change the inventory and re-run the playbook."

_PLAIN = re.compile(r"^[A-Za-z0-9_./:=+,@-]+$")


class Templates(str, enum.Enum):
    """Every template of the renders, by what it renders."""

    server_unit = "llama-server.service.j2"
    server_env = "llama-server.env.j2"
    ollama_override = "ollama-override.conf.j2"
    sse_proxy_unit = "sse-proxy.service.j2"
    build_base = "build-base.sh.j2"  # extended by the per-backend build scripts
    build_cpu = "build-cpu.sh.j2"
    build_cuda = "build-cuda.sh.j2"
    build_cuda_private_headers = "build-cuda-private-headers.sh.j2"  # included by build-cuda
    build_cuda_bundle = "build-cuda-bundle.sh.j2"
    build_vulkan = "build-vulkan.sh.j2"
    build_hip = "build-hip.sh.j2"
    build_probe_toolchain = "build-probe-toolchain.sh.j2"


def systemd_quote(arg: str) -> str:
    """Quote one ExecStart argument the way systemd parses it (specifiers and variables escaped)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.fullmatch(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def shell_quote(arg: str) -> str:
    """Quote one word for bash."""
    return shlex.quote(arg)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("generators.render", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["systemd_quote"] = systemd_quote
    env.filters["shell_quote"] = shell_quote
    env.globals["managed"] = MANAGED
    return env


def render(template: Templates, **context: object) -> str:
    return environment().get_template(template.value).render(**context)


def argv_lines(argv: list[str] | tuple[str, ...]) -> list[str]:
    """ExecStart continuation lines: the binary, then each option with its value, quoted for systemd."""
    lines = [systemd_quote(argv[0])]
    for arg in argv[1:]:
        if arg.startswith("-") or len(lines) == 1 or " " in lines[-1]:
            lines.append(systemd_quote(arg))
        else:
            lines[-1] += " " + systemd_quote(arg)
    return lines
