"""The proxy's plan: which server it fronts, where it listens, where llama-server moves, its command.

On by default for every llama.cpp host with a chat server (``sse_proxy: false`` turns it off; see
``spec.schema.Host._proxy_default``): what it was measured to do is make requests wait out a llama-server restart
(0 failed requests through it, against failures direct: bench/restart_window.py) and end a broken stream with an
error event; its stream repair never had anything to repair in b11434's tool-call streams
(tests/programs/proxy/test_proxy_split_survey.py) and stays as a guard for upstreams that do cut characters.

The proxy (the ``llamafleet_sseproxy`` package the sse_proxy role installs under ``install_dir``) takes the port the
agents use and forwards to llama-server, moved behind it on loopback. :mod:`generators.render.units` writes the
unit from a :class:`ProxyUnit`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from generators.errors import Problem
from generators.plan.layout import SSE_PROXY_RENDER_PATH, SSE_PROXY_UNIT, Layout
from generators.spec import Host, Server
from generators.spec.types import http_url, local_address

UNIT_NAME = SSE_PROXY_UNIT
RENDER_PATH = SSE_PROXY_RENDER_PATH
PACKAGE = "llamafleet_sseproxy"  # the module python3 -m runs, found under install_dir (PYTHONPATH)
INSTALL_DIR = Layout.sse_proxy_install_dir
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")
_UNIT = re.compile(r"^[A-Za-z0-9:_.@-]+\.service$")
_LOOPBACK_NAMES = {"localhost"}


@dataclass(frozen=True)
class ProxyUnit:
    """Settings of one host's proxy; ``host`` is the inventory name, used in error messages."""

    host: str
    listen_port: int = 8080  # the port the agents use
    upstream_url: str = "http://127.0.0.1:8081"  # llama-server, on loopback
    listen_host: str = "127.0.0.1"
    keepalive: str = "pass"  # SSE ":" comment events: "pass" or "drop"
    split_open_brace: bool = False
    wait_timeout: float = 120.0  # seconds a request waits for llama-server (re)starting
    python: str = "/usr/bin/python3"
    install_dir: str = INSTALL_DIR
    upstream_unit: str | None = None  # llama-server's unit, for start-up ordering only
    api_key_file: str | None = None  # the fronted server's key file: the proxy checks the key before the body


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def problems(unit: ProxyUnit) -> list[Problem]:
    """Every problem with the settings, each naming its field."""
    found: list[Problem] = []
    if not 1 <= unit.listen_port <= 65535:
        found.append(Problem("sse_proxy.listen_port", f"must be a port 1..65535, got {unit.listen_port}"))
    try:
        ipaddress.ip_address(unit.listen_host)
    except ValueError:
        found.append(Problem("sse_proxy.listen_host", f"must be an IP address, got {unit.listen_host!r}"))
    url = urlsplit(unit.upstream_url)
    try:
        upstream_port = url.port
    except ValueError:
        upstream_port = None
    if url.scheme != "http" or not url.hostname or upstream_port is None or url.path not in ("", "/"):
        found.append(Problem("sse_proxy.upstream_url", f"must be http://HOST:PORT, got {unit.upstream_url!r}"))
    elif not _is_loopback(url.hostname):
        found.append(
            Problem(
                "sse_proxy.upstream_url", f"llama-server must sit behind the proxy on loopback, got {url.hostname!r}"
            )
        )
    elif upstream_port == unit.listen_port and (
        _is_loopback(unit.listen_host) or unit.listen_host in ("0.0.0.0", "::")
    ):
        found.append(Problem("sse_proxy.upstream_url", f"port {upstream_port} is the proxy's own listen port"))
    if unit.keepalive not in ("pass", "drop"):
        found.append(Problem("sse_proxy.keepalive", f"must be 'pass' or 'drop', got {unit.keepalive!r}"))
    if not unit.wait_timeout > 0:
        found.append(
            Problem("sse_proxy.wait_timeout", f"must be a positive number of seconds, got {unit.wait_timeout}")
        )
    for name in ("python", "install_dir"):
        value = getattr(unit, name)
        if not _SAFE_PATH.fullmatch(value) or "/../" in value + "/":
            found.append(Problem(f"sse_proxy.{name}", f"must be an absolute path without '..', got {value!r}"))
    key = unit.api_key_file
    if key is not None and (not _SAFE_PATH.fullmatch(key) or "/../" in key + "/"):
        found.append(Problem("sse_proxy.api_key_file", f"must be an absolute path without '..', got {key!r}"))
    if unit.upstream_unit is not None and not _UNIT.fullmatch(unit.upstream_unit):
        found.append(Problem("sse_proxy.upstream_unit", f"must be a .service unit name, got {unit.upstream_unit!r}"))
    return found


def proxy_argv(unit: ProxyUnit) -> list[str]:
    """The command line the unit runs (``--listen`` takes ``[v6]:port`` for IPv6)."""
    listen = f"[{unit.listen_host}]" if ":" in unit.listen_host else unit.listen_host
    argv = [unit.python, "-m", PACKAGE, "--listen", f"{listen}:{unit.listen_port}"]
    argv += ["--upstream", unit.upstream_url.rstrip("/"), "--keepalive", unit.keepalive]
    argv += ["--wait-timeout", f"{unit.wait_timeout:g}"]
    if unit.split_open_brace:
        argv.append("--split-open-brace")
    if unit.api_key_file is not None:
        argv += ["--api-key-file", unit.api_key_file]
    return argv


# --- a host's proxy, from its description -------------------------------------------------------------------


def fronted_server(host: Host) -> Server | None:
    """The server the proxy fronts: ``sse_proxy.server``, else the first chat server (the kind agents use; every
    host with servers has one, spec/checks.py). None without a proxy, or when the name matches no server."""
    if host.sse_proxy is None or not host.servers:
        return None
    if host.sse_proxy.server is None:
        return next((s for s in host.active_servers if s.role == "chat"), None)
    return next((s for s in host.active_servers if s.name == host.sse_proxy.server), None)


def upstream_port(host: Host, server: Server) -> int:
    """llama-server's own port behind the proxy: ``upstream_port``, else the server's port + 1000."""
    assert host.sse_proxy is not None
    return host.sse_proxy.upstream_port or server.port + 1000


def server_bind(host: Host, server: Server) -> tuple[str, int]:
    """Where llama-server itself listens: 127.0.0.1 behind the proxy when fronted, else its own host:port."""
    fronted = fronted_server(host)
    if fronted is None or fronted.name != server.name:
        return server.host, server.port
    return "127.0.0.1", upstream_port(host, server)


def host_proxy_unit(host: Host, layout: Layout, name: str = "host") -> ProxyUnit | None:
    """The proxy of a host whose description has ``sse_proxy``: on the fronted server's address, forwarding to
    that llama-server on loopback. None without a proxy."""
    fronted = fronted_server(host)
    if host.sse_proxy is None or fronted is None:
        return None
    bind_host, bind_port = server_bind(host, fronted)
    return ProxyUnit(
        host=name,
        listen_port=fronted.port,
        upstream_url=http_url(bind_host, bind_port),
        listen_host=fronted.host,
        keepalive=host.sse_proxy.keepalive,
        split_open_brace=host.sse_proxy.split_open_brace,
        wait_timeout=host.sse_proxy.wait_timeout,
        install_dir=layout.sse_proxy_install_dir,
        upstream_unit=layout.unit_name(fronted),
        api_key_file=fronted.api_key_file,
    )


def health_url(unit: ProxyUnit) -> str:
    """The proxy's /proxy/health as asked on the host itself (a wildcard listen address is asked on loopback)."""
    return http_url(local_address(unit.listen_host), unit.listen_port, "/proxy/health")
