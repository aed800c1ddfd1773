"""Pure renders: a validated :class:`~generators.spec.Host` in, file contents out."""

from __future__ import annotations

import functools
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

import jinja2

from generators import clients
from generators.chat_templates import template_text
from generators.flags import device_name, served_model_id, server_argv, server_env, server_flags, server_gpu
from generators.layout import CLIENT_FILES, Layout
from generators.merge import dump
from generators.spec import Host

MANAGED = "Managed by llamafleet: edits here are overwritten; change the inventory and re-run the playbook."

TEMPLATES = {
    "unit": "llama-server.service.j2",
    "env": "llama-server.env.j2",
    "build": "build-llamacpp.sh.j2",
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


# --- the build script -------------------------------------------------------------------------------------------


def backend_cmake_flags(host: Host) -> list[str]:
    """The backend's cmake switches. Kept small on purpose: generators/backends.py will own this."""
    backend = host.backend
    gpus = host.backend_gpus()
    if backend == "cuda":
        archs = sorted({g.cuda_cc.replace(".", "") for g in gpus if g.cuda_cc}, key=int)
        return ["-DGGML_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(archs)}"]
    if backend == "vulkan":
        return ["-DGGML_VULKAN=ON"]
    if backend == "hip":
        targets = sorted({g.gfx for g in gpus if g.gfx})
        return ["-DGGML_HIP=ON", f"-DGPU_TARGETS={';'.join(targets)}"]
    return []


def cmake_flags(host: Host) -> list[str]:
    cpp = host.llamacpp
    assert cpp is not None
    return [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=OFF",
        f"-DGGML_NATIVE={'ON' if cpp.native else 'OFF'}",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        f"-DLLAMA_BUILD_NUMBER={cpp.build}",
        "-DCMAKE_C_COMPILER_LAUNCHER=ccache",
        "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache",
        *backend_cmake_flags(host),
    ]


def build_env(host: Host) -> dict[str, str]:
    """Toolkit paths for the build, from the distro's facts (CUDA and ROCm live in different places)."""
    if host.distro is None:
        return {}
    facts = host.distro.facts()
    if host.backend == "cuda":
        return {"CUDA_HOME": facts["cuda_home"], "CUDACXX": f"{facts['cuda_home']}/bin/nvcc"}
    if host.backend == "hip":
        return {"ROCM_PATH": facts["rocm_path"], "HIP_PATH": facts["rocm_path"]}
    return {}


def render_build_script(host: Host, layout: Layout) -> str:
    return _render(
        "build", llamacpp=host.llamacpp, layout=layout, cmake_flags=cmake_flags(host), build_env=build_env(host)
    )


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
    wanted = ["build", host.backend] if host.engine == "llamacpp" else ["ollama"]
    packages: list[str] = []
    for group in wanted:
        packages += [p for p in facts["packages"].get(group, []) if p not in packages]
    return {
        "key": host.distro.key,
        "family": facts["family"],
        "package_manager": facts["package_manager"],
        "packages": packages,
        "cuda_home": facts["cuda_home"],
        "rocm_path": facts["rocm_path"],
    }


def _llamacpp(host: Host, layout: Layout) -> dict[str, Any] | None:
    if host.llamacpp is None:
        return None
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
        "cmake_flags": cmake_flags(host),
        "build_env": build_env(host),
    }


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
            "host": s.host,
            "port": s.port,
            "alias": s.alias,
            "served_model": served_model_id(host, s),
            "model": s.model,
            "model_path": layout.model_path(host.model(s.model)),
            "mmproj_path": layout.model_path(host.model(s.mmproj)) if s.mmproj else None,
            "api_key_file": s.api_key_file,
            "gpu": gpu.key if gpu is not None else None,
            "device": device_name(host, s),
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
    }


def render_host(host: Host, layout: Layout | None = None) -> list[RenderedFile]:
    """Every file a host gets, in a stable order; paths mirror the install locations."""
    layout = layout or Layout(host)
    files: list[RenderedFile] = []
    if host.engine == "llamacpp":
        files.append(RenderedFile("build/build-llamacpp.sh", render_build_script(host, layout), "0755"))
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
    files += render_clients(host, layout)
    files.append(RenderedFile("manifest.json", json.dumps(manifest(host, layout), indent=2, sort_keys=True) + "\n"))
    return files
