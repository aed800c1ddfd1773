"""The manifest: the typed contract between the renders and the roles (``manifest.json`` in the render root).

The roles take every name, path, port and package list from here instead of rebuilding them. Each key is
documented where it is declared (``#:`` comments); ``tests/manifest/test_manifest.py`` keeps the rendered manifests and
these declarations equal. :func:`build_manifest` builds it from the host's plan and the files rendered from it
(every ``render_path`` it names is one of them); :func:`manifest_file` writes it as sorted, indented JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypedDict

from generators.facts import CudaSource
from generators.plan.builds import BuildPlan
from generators.plan.clients import ClientsPlan
from generators.plan.host import HostPlan, ProxyPlan
from generators.plan.layout import MANIFEST_PATH, SSE_PROXY_UNIT
from generators.plan.probe import ProbePlan
from generators.plan.router import LOAD_ON_STARTUP, RouterPlan
from generators.plan.servers import ServerPlan
from generators.render import RenderedFile
from generators.spec.types import http_url, local_address


class CudaToolkitEntry(TypedDict):
    #: ``distro`` or ``nvidia``: the host's ``llamacpp.cuda_repo``
    repo: str
    #: how the plan names it: ``Debian 13's nvidia-cuda-toolkit (non-free)``, ``NVIDIA's repository (cuda-toolkit)``
    label: str
    #: its packages (also in ``packages``)
    packages: list[str]
    #: the nvcc release the plan was made for (None: not recorded, a rolling release)
    nvcc: str | None
    #: the apt component the package is in: build_deps checks its install candidate first (None: no check)
    component: str | None
    #: how to enable that component, for the failure message
    enable: str | None
    #: NVIDIA's repository for this distro (``repo: nvidia``), else None
    repo_url: str | None
    #: what adds that repository: the ``cuda-keyring`` .deb (apt) or the .repo file (dnf), under ``repo_url``
    repo_file: str | None


class DistroEntry(TypedDict):
    #: the distro table's row key: ``fedora-44``, ``ubuntu-24.04``, ``arch``
    key: str
    #: the distribution family (``redhat``, ``debian``, ``archlinux``), for the roles' vars files
    family: str
    #: the package manager Ansible uses there (``dnf``, ``apt``, ``pacman``)
    package_manager: str
    #: what build_deps installs: the build group and each built backend's group (ollama hosts: the ollama group)
    packages: list[str]
    #: the sse_proxy role's packages (the table's ``packages.sse_proxy``; [] when it has none)
    sse_proxy_packages: list[str]
    #: the hf_models role's packages (the table's ``packages.hub``; [] when it has none)
    hub_packages: list[str]
    #: the CUDA build's toolkit root (``/usr`` for Debian's and Ubuntu's package, ``/usr/local/cuda`` for NVIDIA's,
    #: ``/opt/cuda`` for Arch's); None without a CUDA build, for the bundle, or where CMake asks the host's nvcc
    cuda_home: str | None
    #: the distro's ROCm root (a HIP build's: the host's own ROCm where the distribution's HIP is too old)
    rocm_path: str
    #: the CUDA toolkit package build_deps installs, checks and (NVIDIA's) adds the repository of; None when
    #: nothing is installed (the host has nvcc, the plan is the bundle, or no CUDA build)
    cuda_toolkit: CudaToolkitEntry | None


class ToolchainEntry(TypedDict):
    #: native | alt-gcc | patch | alt-gcc+patch | bundle
    kind: str
    #: why this plan, one sentence each
    reasons: list[str]
    #: the older host compiler an alt-gcc plan builds with
    host_cxx: str | None
    #: the declarations the private header copy patches
    patch_functions: list[str]
    #: the official image's flavour a bundle plan extracts
    bundle_tag: str | None
    #: the host's nvcc version
    nvcc: str | None


class BuildEntry(TypedDict):
    #: cpu | cuda | vulkan | hip
    backend: str
    #: ``b<build>-<backend>``: the prefix's and build dir's name
    version: str
    #: whether this is the servers' backend (the role switches ``current`` to it)
    serves: bool
    #: the script in the render root
    render_path: str
    #: where the role puts the script on the host
    script: str
    #: the build's own versioned prefix
    prefix: str
    #: the build's own build directory
    build_dir: str
    #: the configure flags
    cmake_flags: list[str]
    #: the CUDA toolchain plan (cuda builds only)
    toolchain: ToolchainEntry | None
    #: the device the build's ``llama-server --list-devices`` must show before it may serve: the serving build
    #: the first server's (``Vulkan1``), another build its device 0 (``CUDA0``, ``ROCm0``); None for cpu
    expected_device: str | None


class SdistEntry(TypedDict):
    #: the PyPI package of the llama.cpp sdist
    package: str
    #: the sdist's file name: ``<package with - as _>-<build>.0.0.tar.gz``
    filename: str


class LlamaCppEntry(TypedDict):
    #: the llama.cpp build number
    build: int
    #: the servers' backend
    backend: str
    #: the backends this host's hardware can run
    backends_available: list[str]
    #: the serving build's ``b<build>-<backend>``
    version: str
    #: the source as written: ``{git: {url, ref}}``, ``{path}`` or ``{pypi: {package}}``
    source: dict[str, Any]
    #: git | path | pypi
    source_kind: str
    #: the source tree on the host
    source_dir: str
    #: where every build's prefix lives
    prefix_root: str
    #: the serving build's prefix
    prefix: str
    #: the symlink the units run from (``<prefix_root>/current``)
    current: str
    #: the serving build's build directory
    build_dir: str
    #: the shared ccache
    ccache_dir: str
    #: the cache root (sources, builds, scripts, the bundle extractor)
    cache_root: str
    #: the binaries built
    targets: list[str]
    #: the serving build's configure flags
    cmake_flags: list[str]
    #: the serving build's toolkit environment (CUDA_HOME, ROCM_PATH)
    build_env: dict[str, str]
    #: every build, the serving one first
    builds: list[BuildEntry]
    #: the bundle extractor on the host (``<cache_root>/bin/llamafleet-bundle.py``) when a build's toolchain plan
    #: is the bundle, else None
    bundle_helper: str | None
    #: the PyPI sdist to download when the source is pypi, else None
    sdist: SdistEntry | None


class ModelEntry(TypedDict):
    #: the model's name in the inventory
    name: str
    #: the GGUF's path on the host
    path: str
    #: where it comes from: ``{path}``, ``{pypi: ...}`` or ``{hf: ...}`` (and its chat_template)
    source: dict[str, Any]


class ProbeModelEntry(TypedDict):
    #: the model name the probes send as ``model`` (the served model id)
    name: str
    #: the context each slot must report (/slots ``n_ctx``, /props ``default_generation_settings.n_ctx``): llama.cpp's
    #: rule, ``--ctx-size`` padded to 256 and shared by the slots unless their KV is unified; 0 = unknown, not compared
    n_ctx_slot: int
    #: the ``model_alias`` /props must report
    alias: str
    #: its slots (/props ``total_slots``, the /slots list): a router's models each have their own
    slots: int


class ProbeEntry(TypedDict):
    #: strict | warn | off: what the agent probe (tool_choice auto, a write_file call checked exactly) does when the
    #: model does not call the tool right by itself: fail the host, warn, or not run
    agent_probe: str
    #: every model the server serves (one for a normal server; a router lists each)
    models: list[ProbeModelEntry]
    #: the slots (/props ``total_slots``, the /slots list)
    slots: int
    #: the llama.cpp build number that must serve it (/props ``build_info`` ``b<build>-<commit>``)
    build: int
    #: whether the served template must take tools (/props ``chat_template_caps.supports_tool_calls``)
    tools_template: bool


class RouterModelEntry(TypedDict):
    #: the id clients send as ``"model"`` (the preset INI's section name)
    name: str
    #: the inventory's model name
    model: str
    #: chat | autocomplete
    role: str
    #: the alias it is served under, if any (its id when set)
    alias: str | None
    #: the context one session gets (ctx // slots); None for ctx: native
    n_ctx_slot: int | None
    #: the GGUF's path on the host
    model_path: str
    #: whether the router loads it when it starts (``load-on-startup``)
    load_on_start: bool


class RouterEntry(TypedDict):
    #: the ``--models-preset`` INI on the host
    preset_file: str
    #: the INI in the render root
    render_path: str
    #: ``--models-max``: how many models stay loaded together (the memory planner's, or router.models_max)
    models_max: int
    #: ``--models-autoload``: a request naming an unloaded model loads it
    autoload: bool
    #: every model it serves, the default one first
    models: list[RouterModelEntry]


class _RouterKey(TypedDict, total=False):
    #: serve: router: the preset and the models it serves (absent for a unit serving one model)
    router: RouterEntry


class ServerEntry(_RouterKey):
    #: the server's name
    name: str
    #: chat | autocomplete
    role: str
    #: its user unit's name
    unit: str
    #: its environment file's name
    env: str
    #: the environment file's content, as a mapping
    environment: dict[str, str]
    #: llama-server's own address (127.0.0.1 behind the SSE-repair proxy when fronted)
    host: str
    #: llama-server's own port (the proxy's upstream port when fronted)
    port: int
    #: what agents and probes use: the proxy's address when it fronts this server
    client_host: str
    #: what agents and probes use: the proxy's port when it fronts this server
    client_port: int
    #: llama-server's /health as asked on the host (IPv6 bracketed, a wildcard bind asked on loopback)
    health_url: str
    #: the OpenAI-compatible base URL probes use, ``.../v1`` (the proxy's when it fronts this server)
    base_url: str
    #: the ``--alias``
    alias: str | None
    #: the model id /v1/models reports
    served_model: str
    #: the model's name
    model: str
    #: the GGUF's path on the host
    model_path: str
    #: the multimodal projector's path, if any
    mmproj_path: str | None
    #: the API key file on the host, if any
    api_key_file: str | None
    #: the catalog key of the GPU it runs on (None on cpu)
    gpu: str | None
    #: the ``--device`` it names (only when the backend sees several devices)
    device: str | None
    #: the servers' backend
    backend: str
    #: the device its build must list (``Vulkan1``, ``CUDA0``); None on cpu
    expected_device: str | None
    #: the preset chosen, if any
    preset: str | None
    #: the presets it defines
    presets: list[str]
    #: the option names of its command line and, for a router, of its preset INI's keys (what the installed
    #: binary's --help must know)
    flags: list[str]
    #: what its probes expect, and how strict the agent probe is
    probe: ProbeEntry


class OllamaEntry(TypedDict):
    #: the drop-in's path on the host
    dropin: str
    #: the drop-in in the render root
    render_path: str
    #: the drop-in's Environment= pairs
    environment: dict[str, str]
    #: the models to pull
    models: list[str]
    #: derived models, each created from its Modelfile (``PARAMETER num_ctx``): name, base, context, modelfile
    #: (on the host), render_path
    derived: list[dict[str, Any]]
    #: every model's served name and context, as clients are told: {pulled tag: {name, context}}
    contexts: dict[str, dict[str, Any]]
    #: Ollama's address
    host: str
    #: Ollama's port
    port: int


class ClientFileEntry(TypedDict):
    #: opencode | pi | continue | claude_code
    name: str
    #: json | yaml
    format: str
    #: the fragment in the render root
    render_path: str
    #: the user's file it merges into
    dest: str
    #: that file relative to the user's home
    relpath: str
    #: lists merged by an id key: list key -> id key
    list_keys: dict[str, str]
    #: top-level keys whose user value wins
    keep_user: list[str]


class ClientKeyEntry(TypedDict):
    #: the server whose key this is
    server: str
    #: the server's api_key_file on the host (the service user's, mode 0600)
    source: str
    #: the login user's copy (mode 0600), the file the client configs reference
    dest: str
    #: the secret's name in Continue's ~/.continue/.env
    env: str


class ClientKeysEntry(TypedDict, total=False):
    #: the keys of the servers the clients use that have an api_key_file (absent when none has one)
    keys: list[ClientKeyEntry]
    #: Continue's secrets file, where each key's ``env`` line goes (absent without keys; None without Continue)
    continue_env: str | None


class ClientsEntry(ClientKeysEntry, TypedDict):
    #: the login user whose clients are configured
    user: str
    #: that user's home
    home: str
    #: one entry per enabled client
    files: list[ClientFileEntry]
    #: what OpenCode, pi and Claude Code are pointed at: base_url (OpenAI /v1), model, context and output (the
    #: limits the configs carry; context null while ctx is native), min_context (clients.agent_min_ctx)
    agent: dict[str, Any] | None


class HubEntry(TypedDict):
    #: the token file on the host ("" = none)
    token_file: str
    #: the hub's URL ("" = huggingface_hub's default)
    endpoint: str


class SseProxyEntry(TypedDict):
    #: the proxy's user unit
    unit: str
    #: the unit in the render root
    render_path: str
    #: the server it fronts
    server: str
    #: where it listens (the fronted server's address)
    listen_host: str
    #: where it listens (the fronted server's port)
    listen_port: int
    #: llama-server behind it, on loopback
    upstream_url: str
    #: its /proxy/health as asked on the host
    health_url: str
    #: pass | drop (SSE keep-alive comments)
    keepalive: str
    #: whether a tool call's opening brace is sent as its own delta
    split_open_brace: bool
    #: seconds a request waits for llama-server (re)starting
    wait_timeout: float
    #: the PYTHONPATH root the package is installed under
    install_dir: str
    #: the package ``python3 -m`` runs (``<install_dir>/<package>/``)
    package: str
    #: the fronted server's API key file, which the proxy reads too (null without a key)
    api_key_file: str | None


class Manifest(TypedDict):
    #: the service user
    user: str
    #: llamacpp | ollama
    engine: str
    #: the distro's facts and packages (None without a distro)
    distro: DistroEntry | None
    #: the host's GPUs, resolved through the catalog
    gpus: list[dict[str, Any]]
    #: the llama.cpp builds (None for ollama)
    llamacpp: LlamaCppEntry | None
    #: where models live on the host
    models_dir: str
    #: where shipped chat templates live on the host
    chat_templates_dir: str
    #: the models
    models: list[ModelEntry]
    #: the llama-servers
    servers: list[ServerEntry]
    #: Ollama's drop-in (None for llamacpp)
    ollama: OllamaEntry | None
    #: the agent clients (None without any)
    clients: ClientsEntry | None
    #: the hub settings (None without a hub block)
    hub: HubEntry | None
    #: the SSE-repair proxy (None without one)
    sse_proxy: SseProxyEntry | None
    #: the proxy's unit name, always, so roles can retire a proxy the host no longer has
    sse_proxy_unit: str
    #: nvidia-persistenced enabled and running (the host asked for persistence mode, seed 001)
    nvidia_persistence: bool


def _build(build: BuildPlan) -> BuildEntry:
    target = build.target
    return {
        "backend": target.backend,
        "version": target.version,
        "serves": build.serves,
        "render_path": build.render_path,
        "script": build.script,
        "prefix": build.paths.prefix,
        "build_dir": build.paths.build_dir,
        "cmake_flags": list(build.cmake_flags),
        "toolchain": target.toolchain.as_dict() if target.toolchain is not None else None,  # type: ignore[typeddict-item]
        "expected_device": build.expected_device,
    }


def _llamacpp(plan: HostPlan) -> LlamaCppEntry | None:
    cpp = plan.llamacpp
    if cpp is None:
        return None
    layout, spec, primary = cpp.layout, cpp.spec, cpp.serving
    return {
        "build": spec.build,
        "backend": spec.backend,
        "backends_available": list(cpp.backends_available),
        "version": spec.version,
        "source": spec.source.model_dump(exclude_none=True),
        "source_kind": spec.source.kind,
        "source_dir": layout.source_dir,
        "prefix_root": layout.prefix_root,
        "prefix": layout.prefix,
        "current": layout.current,
        "build_dir": layout.build_dir,
        "ccache_dir": layout.ccache_dir,
        "cache_root": layout.cache_root,
        "targets": list(spec.targets),
        "cmake_flags": list(primary.cmake_flags),
        "build_env": dict(primary.target.env),
        "builds": [_build(b) for b in cpp.builds],
        "bundle_helper": cpp.bundle_helper,
        "sdist": None if cpp.sdist is None else {"package": cpp.sdist["package"], "filename": cpp.sdist["filename"]},
    }


def _probe(probe: ProbePlan, router: RouterPlan | None) -> ProbeEntry:
    """The server's probe block; a router's lists every model it serves, each as planned alone, under its id."""
    if router is None:
        models: list[ProbeModelEntry] = [
            {"name": m.name, "n_ctx_slot": m.n_ctx_slot, "alias": m.alias, "slots": probe.slots} for m in probe.models]
    else:
        models = [{"name": m.id, "n_ctx_slot": m.plan.probe.models[0].n_ctx_slot, "alias": m.id,
                   "slots": m.plan.probe.slots} for m in router.models]
    return {
        "agent_probe": probe.agent_probe,
        "models": models,
        "slots": probe.slots,
        "build": probe.build,
        "tools_template": probe.tools_template,
    }


def _router(router: RouterPlan) -> RouterEntry:
    startup = router.startup
    return {
        "preset_file": router.preset_file,
        "render_path": router.render_path,
        "models_max": router.models_max,
        "autoload": router.autoload,
        "models": [
            {
                "name": m.id,
                "model": m.plan.model.name,
                "role": m.plan.role,
                "alias": m.plan.server.alias,
                "n_ctx_slot": served.ctx_slot,
                "model_path": m.plan.model_path,
                "load_on_start": m.id in startup,
            }
            for m, served in ((m, m.plan.served[0]) for m in router.models)
        ],
    }


def _flags(s: ServerPlan, router: RouterPlan | None) -> list[str]:
    """The command line's options, then each preset key as the option it is (``--ctx-size``), once each."""
    flags = list(s.flags)
    if router is not None:
        keys = [k for k, _ in router.shared] + [k for m in router.models for k, _ in m.options]
        flags += [f"--{k}" for k in keys if k != LOAD_ON_STARTUP and f"--{k}" not in flags]
    return list(dict.fromkeys(flags))


def _server(s: ServerPlan, router: RouterPlan | None = None) -> ServerEntry:
    entry: ServerEntry = {
        "name": s.name,
        "role": s.role,
        "unit": s.unit,
        "env": s.env_name,
        "environment": dict(s.environment),
        "host": s.bind_host,
        "port": s.bind_port,
        "client_host": s.client_host,
        "client_port": s.client_port,
        "health_url": http_url(local_address(s.bind_host), s.bind_port, "/health"),
        "base_url": http_url(local_address(s.client_host), s.client_port, "/v1"),
        "alias": s.server.alias,
        "served_model": s.served_model,
        "model": s.model.name,
        "model_path": s.model_path,
        "mmproj_path": s.mmproj_path,
        "api_key_file": s.server.api_key_file,
        "gpu": s.gpu.key if s.gpu is not None else None,
        "device": s.device,
        "backend": s.backend,
        "expected_device": s.expected_device,
        "preset": s.declared.preset,
        "presets": sorted(s.declared.presets),
        "flags": _flags(s, router),
        "probe": _probe(s.probe, router),
    }
    if router is not None:
        entry["router"] = _router(router)
    return entry


def _sse_proxy(proxy: ProxyPlan | None) -> SseProxyEntry | None:
    if proxy is None:
        return None
    unit = proxy.unit
    return {
        "unit": proxy.name,
        "render_path": proxy.render_path,
        "server": proxy.server,
        "listen_host": unit.listen_host,
        "listen_port": unit.listen_port,
        "upstream_url": unit.upstream_url,
        "health_url": proxy.health_url,
        "keepalive": unit.keepalive,
        "split_open_brace": unit.split_open_brace,
        "wait_timeout": unit.wait_timeout,
        "install_dir": proxy.install_dir,
        "package": proxy.package,
        "api_key_file": unit.api_key_file,
    }


def _client_keys(clients: ClientsPlan) -> dict[str, Any]:
    """The clients' keys, only when a server they use has one (hosts without keys keep their manifest as it was)."""
    if not clients.keys:
        return {}
    return {
        "keys": [{"server": k.server, "source": k.source, "dest": k.dest, "env": k.env} for k in clients.keys],
        "continue_env": clients.continue_env,
    }


def _cuda_toolkit(source: CudaSource | None) -> CudaToolkitEntry | None:
    if source is None:
        return None
    return {
        "repo": source.repo,
        "label": source.label,
        "packages": list(source.packages),
        "nvcc": None if source.nvcc is None else str(source.nvcc),
        "component": source.component,
        "enable": source.enable,
        "repo_url": source.repo_url,
        "repo_file": source.repo_file,
    }


def _rendered_paths(manifest: Manifest) -> list[str]:
    paths = [b["render_path"] for b in manifest["llamacpp"]["builds"]] if manifest["llamacpp"] else []
    if manifest["ollama"] is not None:
        paths.append(manifest["ollama"]["render_path"])
        paths += [d["render_path"] for d in manifest["ollama"]["derived"]]
    if manifest["clients"] is not None:
        paths += [f["render_path"] for f in manifest["clients"]["files"]]
    if manifest["sse_proxy"] is not None:
        paths.append(manifest["sse_proxy"]["render_path"])
    paths += [s["router"]["render_path"] for s in manifest["servers"] if "router" in s]
    return paths


def build_manifest(plan: HostPlan, files: Sequence[RenderedFile]) -> Manifest:
    """What the roles need besides the files: names, paths, ports and packages, as plain data."""
    distro = plan.distro
    manifest: Manifest = {
        "user": plan.user,
        "engine": plan.engine,
        "distro": None
        if distro is None
        else {
            "key": distro.key,
            "family": distro.family,
            "package_manager": distro.package_manager,
            "packages": list(distro.packages),
            "sse_proxy_packages": list(distro.sse_proxy_packages),
            "hub_packages": list(distro.hub_packages),
            "cuda_home": distro.cuda_home,
            "rocm_path": distro.rocm_path,
            "cuda_toolkit": _cuda_toolkit(distro.cuda_toolkit),
        },
        "gpus": [g.as_dict() for g in plan.gpus],
        "llamacpp": _llamacpp(plan),
        "models_dir": plan.layout.models_dir,
        "chat_templates_dir": plan.layout.chat_templates_dir,
        "models": [{"name": m.name, "path": m.path, "source": m.source} for m in plan.models],
        "servers": [_server(s, plan.router if plan.router and plan.router.server == s.name else None)
                    for s in plan.servers],
        "ollama": None
        if plan.ollama is None
        else {
            "dropin": plan.ollama.dropin,
            "render_path": plan.ollama.render_path,
            "environment": dict(plan.ollama.environment),
            "models": list(plan.ollama.spec.models),
            "derived": [{"name": m.name, "base": m.base, "context": m.context, "modelfile": m.modelfile,
                         "render_path": m.render_path} for m in plan.ollama.models if m.derived],
            "contexts": {m.base: {"name": m.name, "context": m.context} for m in plan.ollama.models},
            "host": plan.ollama.spec.host,
            "port": plan.ollama.spec.port,
        },
        "clients": None
        if plan.clients is None
        else {
            "user": plan.clients.user,
            "home": plan.clients.home,
            "agent": None if plan.clients.agent is None else {
                "base_url": plan.clients.agent.openai_base, "model": plan.clients.agent.model_id,
                "context": plan.clients.agent.context, "output": plan.clients.agent.output,
                "min_context": plan.clients.agent_min_ctx,
            },
            "files": [
                {
                    "name": f.name,
                    "format": f.fmt,
                    "render_path": f.render_path,
                    "dest": f.dest,
                    "relpath": f.relpath,
                    "list_keys": dict(f.list_keys),
                    "keep_user": list(f.keep_user),
                }
                for f in plan.clients.files
            ],
            **_client_keys(plan.clients),
        },
        "hub": None if plan.hub is None else {"token_file": plan.hub.token_file, "endpoint": plan.hub.endpoint},
        "sse_proxy": _sse_proxy(plan.proxy),
        "sse_proxy_unit": SSE_PROXY_UNIT,
        "nvidia_persistence": plan.spec.nvidia_persistence,
    }
    rendered = {f.path for f in files}
    missing = [p for p in _rendered_paths(manifest) if p not in rendered]
    assert not missing, f"the manifest names files that were not rendered: {missing}"
    return manifest


def manifest_file(manifest: Manifest) -> RenderedFile:
    return RenderedFile(MANIFEST_PATH, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
