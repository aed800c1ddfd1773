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

from generators.spec.types import url_host

MANAGED = "Managed by llamafleet: edits here are overwritten; change the inventory and re-run the playbook."

_PLAIN = re.compile(r"^[A-Za-z0-9_./:=+,@-]+$")


class Templates(str, enum.Enum):
    """Every template of the renders, by what it renders."""

    server_unit = "llama-server.service.j2"
    server_env = "llama-server.env.j2"
    ollama_override = "ollama-override.conf.j2"
    ollama_modelfile = "ollama-modelfile.j2"
    sse_proxy_unit = "sse-proxy.service.j2"
    build_base = "build-base.sh.j2"  # extended by the per-backend build scripts
    build_cpu = "build-cpu.sh.j2"
    build_cuda = "build-cuda.sh.j2"
    build_cuda_noexcept = "build-cuda-noexcept.sh.j2"  # included by the two below
    build_cuda_private_headers = "build-cuda-private-headers.sh.j2"  # included by build-cuda: NVIDIA's layout
    build_cuda_private_include = "build-cuda-private-include.sh.j2"  # included by build-cuda: a split layout
    build_cuda_bundle = "build-cuda-bundle.sh.j2"
    build_vulkan = "build-vulkan.sh.j2"
    build_hip = "build-hip.sh.j2"
    build_probe_toolchain = "build-probe-toolchain.sh.j2"
    router_preset = "router-preset.ini.j2"


class Unrenderable(ValueError):
    """A value no escaping can carry to its destination (a line break in a unit, a NUL in a script)."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUL = re.compile(r"\x00")


def _refuse(pattern: re.Pattern[str], value: str, where: str) -> str:
    if pattern.search(value):
        raise Unrenderable(f"{value!r}: a control character or line break cannot go into {where}")
    return value


# --- systemd ------------------------------------------------------------------------------------------------
# Four destinations, one function each: an ExecStart word, a unit setting's plain value, an Environment=
# assignment, and a value in an EnvironmentFile. Line breaks and control characters are refused everywhere (a
# newline starts a new directive); ``%`` is doubled wherever systemd expands specifiers.


def systemd_quote(arg: str, command: bool = False) -> str:
    """One ExecStart word: specifiers (``%``) and, in arguments, variables (``$``) doubled; quoted when not plain.
    ``command=True`` for the first word, the executable: systemd expands specifiers there but not variables, so
    a ``$`` stays as it is (tests/render/test_escaping.py reads both back through systemd-analyze)."""
    _refuse(_CONTROL, arg, "a systemd command line")
    arg = arg.replace("%", "%%")
    if not command:
        arg = arg.replace("$", "$$")
    if _PLAIN.fullmatch(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_value(value: str, specifiers: bool = False) -> str:
    """A unit setting's raw value (``Description=``, ``After=``, ``EnvironmentFile=``): ``%`` doubled; line
    breaks, control characters and backslashes (a trailing one joins the next line) refused. ``specifiers=True``
    keeps ``%`` for a value the plan writes with deliberate specifiers (``%h/.config/...``)."""
    _refuse(_CONTROL, str(value), "a systemd unit")
    value = str(value)
    if "\\" in value:
        raise Unrenderable(f"{value!r}: a backslash cannot go into a systemd setting")
    return value if specifiers else value.replace("%", "%%")


def systemd_env(assignment: str, quote: bool = True) -> str:
    """One ``Environment=`` assignment ``KEY=value``: ``%`` doubled, double-quoted with ``\\`` and ``"`` escaped
    (``quote=False`` leaves a plain assignment bare)."""
    _refuse(_CONTROL, assignment, "a systemd Environment= setting")
    assignment = assignment.replace("%", "%%")
    if not quote and _PLAIN.fullmatch(assignment):
        return assignment
    return '"' + assignment.replace("\\", "\\\\").replace('"', '\\"') + '"'


def env_file_value(value: str) -> str:
    """A value in an ``EnvironmentFile=`` (no specifiers there): bare when plain, else double-quoted with
    ``\\ " $ `` ` escaped."""
    _refuse(_CONTROL, value, "an environment file")
    if _PLAIN.fullmatch(value):
        return value
    return '"' + re.sub(r'([\\"$`])', r"\\\1", value) + '"'


# --- llama.cpp's preset INI (common/preset.cpp) ----------------------------------------------------------------
# Its parser has no quoting and no escapes: a value runs to the end of the line or to the first ';' or '#' (a
# comment), spaces around it are dropped, a section name runs to the first ']'. So nothing is escaped: a value that
# the parser would read differently is refused.

_INI_KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.-]*")
_INI_SECTION = re.compile(r"[A-Za-z0-9._-]{1,64}")  # no ':' either: llama.cpp rewrites a section's ':tag'
_INI_VALUE = re.compile(r'[!"$-:<-~](?:[ !"$-:<-~]*[!"$-:<-~])?')  # printable ASCII but ';' and '#'


def ini_key(key: str) -> str:
    """A preset key (an option's long name without its dashes)."""
    if not _INI_KEY.fullmatch(str(key)):
        raise Unrenderable(f"{key!r} cannot be a key of llama.cpp's preset INI")
    return str(key)


def ini_section(name: str) -> str:
    """A preset section's name (the model id clients send)."""
    if not _INI_SECTION.fullmatch(str(name)):
        raise Unrenderable(f"{name!r} cannot name a section of llama.cpp's preset INI (letters, digits, . _ -)")
    return str(name)


def ini_value(value: str) -> str:
    """A preset value, read back exactly: no ';' or '#' (a comment starts there), no line break or control
    character, no space at either end, printable ASCII, not empty."""
    if not _INI_VALUE.fullmatch(str(value)):
        raise Unrenderable(f"{value!r} cannot be a value of llama.cpp's preset INI (no ';', '#', line breaks, "
                           "control characters or outer spaces)")
    return str(value)


# --- bash ---------------------------------------------------------------------------------------------------


def shell_quote(arg: str) -> str:
    """One bash word (bare when it needs no quoting, else single-quoted)."""
    return shlex.quote(_refuse(_NUL, str(arg), "a shell script"))


def shell_text(text: str) -> str:
    """Text inside a double-quoted bash string: ``\\ " $ `` ` escaped."""
    return re.sub(r'([\\"$`])', r"\\\1", _refuse(_NUL, str(text), "a shell script"))


def shell_comment(text: str) -> str:
    """Text on one ``#`` comment line: a line break would end the comment, so it is refused."""
    return _refuse(_CONTROL, str(text), "a shell comment")


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
    env.filters["systemd_value"] = systemd_value
    env.filters["systemd_env"] = systemd_env
    env.filters["env_file_value"] = env_file_value
    env.filters["ini_key"] = ini_key
    env.filters["ini_section"] = ini_section
    env.filters["ini_value"] = ini_value
    env.filters["shell_quote"] = shell_quote
    env.filters["shell_text"] = shell_text
    env.filters["shell_comment"] = shell_comment
    env.filters["url_host"] = url_host
    env.globals["managed"] = MANAGED
    return env


def render(template: Templates, **context: object) -> str:
    return environment().get_template(template.value).render(**context)


def argv_lines(argv: list[str] | tuple[str, ...]) -> list[str]:
    """ExecStart continuation lines: the binary, then each option with its value, quoted for systemd."""
    lines = [systemd_quote(argv[0], command=True)]
    for arg in argv[1:]:
        if arg.startswith("-") or len(lines) == 1 or " " in lines[-1]:
            lines.append(systemd_quote(arg))
        else:
            lines[-1] += " " + systemd_quote(arg)
    return lines
