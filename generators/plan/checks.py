"""Every check across fields, in one order, so that a host's problems are all reported at once.

Checks that need only the description come from :mod:`generators.spec.checks`; the rest need the host's facts
(its GPUs, its distro's packages) or a decision of the plan (the builds, the proxy's port, a flag's spelling).
"""

from __future__ import annotations

from generators import data
from generators.errors import Problem
from generators.facts import HostFacts
from generators.plan.backends import BuildTarget
from generators.plan.builds import build_targets
from generators.plan.flags import load_mode_flags
from generators.plan.proxy import fronted_server, upstream_port
from generators.plan.router import router_problems
from generators.spec import Host, Server, checks
from generators.spec.types import ROOT_KEY


def backend_problems(host: Host, facts: HostFacts) -> tuple[list[Problem], list[BuildTarget]]:
    """The backends against the hardware and the distro; then, if those hold, the builds themselves."""
    if host.llamacpp is None:
        return [], []
    where = f"{ROOT_KEY}.llamacpp"
    problems = checks.build_number_problems(host)
    available = facts.available_backends
    for key, backend in [("backend", host.llamacpp.backend)] + [("also_build", b) for b in host.llamacpp.also_build]:
        if backend not in available:
            have = ", ".join(g.key for g in facts.gpus) or "no gpus declared"
            problems.append(Problem(f"{where}.{key}", f"{backend} needs a GPU that supports it "
                                                      f"({have}; this host can run: {', '.join(available)})"))
        # cuda's packages are the toolkit plan's (generators/plan/toolkits.py): none is a bundle, not a problem
        if facts.distro is not None and backend not in ("cpu", "cuda") and not facts.distro.group(backend):
            problems.append(Problem(f"{where}.{key}", f"no {backend} build packages for {facts.distro.key} "
                                                      "(see generators/data/distros.yaml)"))
    problems += checks.cuda_toolchain_problems(host)
    if problems:
        return problems, []
    targets, found = build_targets(host, facts)
    return [Problem(f"{ROOT_KEY}.{p.field}", p.message) for p in found], targets


def proxy_problems(host: Host) -> list[Problem]:
    """The proxy needs a llama-server to front, and a free loopback port to move it to."""
    proxy = host.sse_proxy
    where = f"{ROOT_KEY}.sse_proxy"
    if proxy is None:
        return []
    engine = checks.proxy_engine_problems(host)
    if engine:
        return engine
    names = [s.name for s in host.active_servers]
    fronted = fronted_server(host)
    if fronted is None:
        if proxy.server is not None:
            return [Problem(f"{where}.server", f"no server named {proxy.server!r} (servers: {', '.join(names)})")]
        return []
    port = upstream_port(host, fronted)
    if port > 65535:
        return [Problem(f"{where}.upstream_port", f"server {fronted.name}'s port {fronted.port} + 1000 is above "
                                                  "65535: set upstream_port (or sse_proxy: false)")]
    taken = [s.name for s in host.active_servers if s.port == port]
    if taken:
        return [Problem(f"{where}.upstream_port", f"port {port} is used by server {taken[0]} (llama-server "
                                                  "moves there behind the proxy: pick a free upstream_port, or "
                                                  "sse_proxy: false)")]
    return []


def server_problems(host: Host, facts: HostFacts, i: int, server: Server, names: list[str]) -> list[Problem]:
    where = f"{ROOT_KEY}.servers[{i}]"
    problems = checks.server_reference_problems(i, server, names)
    if server.device is not None:
        seen = [g.key for g in facts.backend_gpus(host.backend)]
        key = data.find_gpu(server.device) or server.device
        if key not in seen:
            problems.append(Problem(f"{where}.device", f"{server.device!r} is not one of this host's "
                                                       f"{host.backend} GPUs ({', '.join(seen) or 'none'})"))
    problems += checks.gpu_layers_problems(host, i, server)
    if server.load_mode not in (None, "auto") and host.llamacpp is not None:
        try:
            load_mode_flags(server.load_mode, host.llamacpp.build)
        except ValueError as exc:
            problems.append(Problem(f"{where}.load_mode", str(exc)))
    return problems


def host_problems(host: Host, facts: HostFacts) -> tuple[list[Problem], list[BuildTarget]]:
    """Every cross-field problem of the host, and its build targets when the builds could be planned."""
    backend, targets = backend_problems(host, facts)
    problems = checks.engine_problems(host) + backend + proxy_problems(host)
    problems += checks.duplicate_model_problems(host)
    names = [m.name for m in host.models]
    seen_servers: set[str] = set()
    seen_ports: set[int] = set()
    for i, server in enumerate(host.active_servers):
        problems += server_problems(host, facts, i, server, names)
        problems += checks.server_identity_problems(i, server, seen_servers, seen_ports)
        seen_servers.add(server.name)
        if host.serve != "router":  # a router serves every model at one address (router_problems checks it)
            seen_ports.add(server.port)
    problems += checks.role_problems(host)
    problems += router_problems(host, facts)
    if host.nvidia_persistence and not any(g.vendor == "nvidia" for g in facts.gpus):
        have = ", ".join(g.key for g in facts.gpus) or "no GPU"
        problems.append(Problem(f"{ROOT_KEY}.nvidia_persistence", f"needs an NVIDIA GPU (this host has {have})"))
    gpu_keys = [g.key for g in facts.gpus]
    if len(gpu_keys) != len(set(gpu_keys)):
        problems.append(Problem(f"{ROOT_KEY}.gpus", "a GPU is listed twice: list each physical GPU once"))
    return problems, targets
