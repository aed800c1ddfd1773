"""Cross-field checks that need nothing but the host description: references, duplicates, engine and roles.

Each returns problems, never raises. Checks that need the host's facts (its GPUs, its distro's packages) or a
decision of the plan (the proxy's port, a flag's spelling) live in :mod:`generators.plan.checks`, which runs
these too, in one order, so that every problem of a host is reported at once.
"""

from __future__ import annotations

from generators import data
from generators.errors import Problem
from generators.spec.schema import Host, Server
from generators.spec.types import ROOT_KEY


def min_build() -> int:
    """The oldest llama.cpp build the flag table (data/flag_renames.yaml) was checked against."""
    return int(data.flag_renames()["min_build"])


def engine_problems(host: Host) -> list[Problem]:
    problems: list[Problem] = []
    if host.engine == "llamacpp":
        if host.llamacpp is None:
            problems.append(Problem(f"{ROOT_KEY}.llamacpp", "required when engine is llamacpp"))
        if not host.models:
            problems.append(Problem(f"{ROOT_KEY}.models", "required: at least one model"))
        if not host.servers:
            problems.append(Problem(f"{ROOT_KEY}.servers", "required: at least one server"))
        if host.ollama is not None:
            problems.append(Problem(f"{ROOT_KEY}.ollama", "only for engine: ollama"))
    else:
        if host.ollama is None:
            problems.append(Problem(f"{ROOT_KEY}.ollama", "required when engine is ollama"))
        for key in ("llamacpp", "models", "servers"):
            if getattr(host, key):
                problems.append(Problem(f"{ROOT_KEY}.{key}", "not used with engine: ollama (ollama builds nothing)"))
    return problems


def build_number_problems(host: Host) -> list[Problem]:
    if host.llamacpp is None or host.llamacpp.build >= min_build():
        return []
    return [Problem(f"{ROOT_KEY}.llamacpp.build", f"b{host.llamacpp.build} is older than b{min_build()}, the "
                                                  "oldest build the flag table (data/flag_renames.yaml) was checked against")]


def cuda_toolchain_problems(host: Host) -> list[Problem]:
    """``cuda_toolchain`` and a written ``cuda_repo`` on a host that builds no CUDA."""
    cpp = host.llamacpp
    if cpp is None or "cuda" in cpp.backends:
        return []
    found = []
    if cpp.cuda_toolchain is not None:
        found.append(Problem(f"{ROOT_KEY}.llamacpp.cuda_toolchain", "only for a host that builds the cuda backend"))
    if "cuda_repo" in cpp.model_fields_set:
        found.append(Problem(f"{ROOT_KEY}.llamacpp.cuda_repo", "only for a host that builds the cuda backend"))
    return found


def proxy_engine_problems(host: Host) -> list[Problem]:
    if host.sse_proxy is None or host.engine == "llamacpp":
        return []
    return [Problem(f"{ROOT_KEY}.sse_proxy", "only for engine: llamacpp (it fronts a llama-server)")]


def duplicate_model_problems(host: Host) -> list[Problem]:
    names = [m.name for m in host.models]
    return [Problem(f"{ROOT_KEY}.models[{i}].name", f"duplicate model name {name!r}")
            for i, name in enumerate(names) if name in names[:i]]


def server_reference_problems(i: int, server: Server, names: list[str]) -> list[Problem]:
    """A server's model references and the settings that contradict each other."""
    where = f"{ROOT_KEY}.servers[{i}]"
    problems: list[Problem] = []
    for ref in ("model", "mmproj"):
        value = getattr(server, ref)
        if ref == "model" and value is None:
            problems.append(Problem(f"{where}.model", "required (on the server or its chosen preset)"))
        elif value is not None and value not in names:
            problems.append(Problem(f"{where}.{ref}", f"no model named {value!r} (models: {', '.join(names)})"))
    if server.ubatch and server.batch and server.ubatch > server.batch:
        problems.append(Problem(f"{where}.ubatch", f"ubatch {server.ubatch} is larger than batch {server.batch}"))
    if server.sessions == "shared" and server.parallel != 1:
        problems.append(Problem(f"{where}.parallel", "sessions: shared sizes slots itself (-np auto): drop parallel"))
    if server.host_cache_mib is not None and server.sessions != "shared":
        problems.append(Problem(f"{where}.host_cache_mib", "only with sessions: shared"))
    return problems


def gpu_layers_problems(host: Host, i: int, server: Server) -> list[Problem]:
    if host.backend == "cpu" and server.gpu_layers not in (None, 0):
        return [Problem(f"{ROOT_KEY}.servers[{i}].gpu_layers", "the cpu backend offloads nothing: drop gpu_layers")]
    return []


def server_identity_problems(i: int, server: Server, names: set[str], ports: set[int]) -> list[Problem]:
    """Duplicate server names and ports (``names``/``ports``: those of the servers before this one)."""
    where = f"{ROOT_KEY}.servers[{i}]"
    problems: list[Problem] = []
    if server.name in names:
        problems.append(Problem(f"{where}.name", f"duplicate server name {server.name!r}"))
    if server.port in ports:
        problems.append(Problem(f"{where}.port", f"port {server.port} is used by another server"))
    return problems


def role_problems(host: Host) -> list[Problem]:
    roles = [s.role for s in host.active_servers]
    problems: list[Problem] = []
    if host.servers and "chat" not in roles:
        problems.append(Problem(f"{ROOT_KEY}.servers", "no server has role chat (agent clients need one)"))
    if roles.count("autocomplete") > 1:
        problems.append(Problem(f"{ROOT_KEY}.servers", "more than one server has role autocomplete"))
    return problems
