"""Each llama-server's plan: its GPU and device name, where it binds and where clients reach it, its command line.

Decided once here from the typed host and its facts; the renders, the memory fit and the manifest read the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from generators import data
from generators.facts import Gpu, HostFacts
from generators.plan import backends
from generators.plan.flags import server_argv, server_flags
from generators.plan.layout import Layout, env_render_path, unit_render_path
from generators.plan.probe import ProbePlan, plan_probe
from generators.plan.proxy import server_bind
from generators.spec import Host, Model, Server
from generators.spec.types import http_url, local_address


@dataclass(frozen=True)
class ServedModel:
    """One model a llama-server answers for: a unit's one model, or each model of a router (``serve: router``)."""

    id: str  # what clients send as "model" (the alias, else the file name; a router's preset section name)
    model: str  # the inventory's model name
    role: str  # chat | autocomplete
    ctx_slot: int | None  # the context one session gets (ctx // slots); None for ctx: native
    vision: bool
    alias: str | None


@dataclass(frozen=True)
class ServerPlan:
    """One llama-server, every value decided."""

    index: int
    server: Server  # as it runs: the chosen preset applied
    declared: Server  # as written (its preset choice and presets)
    model: Model
    mmproj: Model | None
    unit: str
    env_name: str
    env_file: str  # the unit's EnvironmentFile=
    unit_render_path: str
    env_render_path: str
    backend: str
    gpu: Gpu | None
    device: str | None  # --device, only when the backend sees more than one device
    expected_device: str | None  # what the build must list for this server (CUDA0, Vulkan1); None on cpu
    bind_host: str  # llama-server's own address (behind the SSE-repair proxy when fronted)
    bind_port: int
    client_host: str  # what agents and probes use: the proxy's address when it fronts this server
    client_port: int
    served_model: str  # the id /v1/models reports
    model_path: str
    mmproj_path: str | None
    gpu_layers: str
    flash_attn: str
    load_mode: str | None
    environment: Mapping[str, str]
    argv: tuple[str, ...]
    probe: ProbePlan  # what its probes expect (/props, /slots) and how strict the agent probe is
    served: tuple[ServedModel, ...]  # every model it answers for (a router: all of them, the default first)
    # Seed 002: the FIM autocomplete server keeps its VRAM. A chat server on the same GPU starts after it
    # (After=/Wants=/PartOf= these units) and waits for its /health before loading (wait_health; a timeout).
    after: tuple[str, ...] = ()
    wait_health: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def role(self) -> str:
        return self.server.role

    @property
    def flags(self) -> list[str]:
        return server_flags(self.argv)


def server_gpu(host: Host, facts: HostFacts, server: Server) -> Gpu | None:
    """The GPU a server runs on: the one it names, else the backend-visible GPU with the most dedicated VRAM."""
    gpus = facts.backend_gpus(host.backend)
    if not gpus:
        return None
    if server.device is not None:
        key = data.find_gpu(server.device) or server.device
        return next(g for g in gpus if g.key == key)
    return max(gpus, key=lambda g: (not g.unified, g.vram_gb or 0.0, -gpus.index(g)))


def device_name(host: Host, facts: HostFacts, gpu: Gpu | None) -> str | None:
    """``Vulkan1``-style device name, only when the backend sees more than one device (else llama.cpp picks it)."""
    gpus = facts.backend_gpus(host.backend)
    if gpu is None or (len(gpus) < 2 and facts.device_index(host.backend, gpu) == 0):
        return None
    return f"{backends.DEVICE_PREFIX[host.backend]}{facts.device_index(host.backend, gpu)}"


def expected_device(host: Host, facts: HostFacts, gpu: Gpu | None) -> str | None:
    """The device the server's build must list (``Vulkan1``, ``CUDA0``, ``ROCm0``); None on the CPU backend."""
    if gpu is None:
        return None
    return backends.expected_device(host.backend, facts.device_index(host.backend, gpu))


def gpu_layers(host: Host, server: Server) -> str:
    if server.gpu_layers is not None:
        return str(server.gpu_layers)
    return "0" if host.backend == "cpu" else "99"


def flash_attn(host: Host, server: Server) -> str:
    if server.flash_attn is not None:
        return server.flash_attn
    return "auto" if host.backend == "cpu" else "on"


def load_mode(server: Server, gpu: Gpu | None) -> str | None:
    if server.load_mode is not None:
        return None if server.load_mode == "auto" else server.load_mode
    return None if gpu is None else gpu.quirks.get("load_mode")


def server_env(host: Host, server: Server, gpu: Gpu | None) -> dict[str, str]:
    """Environment for the unit's EnvironmentFile: GPU quirks for this backend, then the server's own."""
    env = gpu.env(host.backend) if gpu is not None else {}
    return {**env, **server.env}


HEALTH_WAIT_S = 300  # how long a chat server waits for the FIM server's /health before it loads anyway


def first_units(host: Host, facts: HostFacts, layout: Layout, index: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The units a chat server starts after (the autocomplete servers on its GPU) and their /health URLs."""
    server = host.active_servers[index]
    gpu = server_gpu(host, facts, server)
    if server.role != "chat" or gpu is None:
        return (), ()
    first = [s for s in host.active_servers if s.role == "autocomplete" and server_gpu(host, facts, s) == gpu]
    return (tuple(layout.unit_name(s) for s in first),
            tuple(http_url(local_address(b[0]), b[1], "/health") for b in (server_bind(host, s) for s in first)))


def served_model_id(host: Host, server: Server) -> str:
    """The model id llama-server reports on /v1/models: the alias, else the model file's name."""
    if server.alias is not None:
        return server.alias
    assert server.model is not None
    return host.model(server.model).filename


def ctx_slot(server: Server) -> int | None:
    """The context one session gets: ctx over the fixed slots (one pool with sessions: shared); None for native."""
    if not isinstance(server.ctx, int):
        return None
    slots = server.parallel if isinstance(server.parallel, int) and server.sessions != "shared" else 1
    return server.ctx // slots


def served_model(host: Host, server: Server, model_id: str | None = None) -> ServedModel:
    assert server.model is not None
    return ServedModel(model_id or served_model_id(host, server), server.model, server.role, ctx_slot(server),
                       server.mmproj is not None, server.alias)


def plan_server(host: Host, facts: HostFacts, layout: Layout, index: int, variant: Server | None = None) -> ServerPlan:
    """The plan of the host's ``index``-th server (the host must have passed the checks); ``variant``: that server
    with another of its presets applied (a router plans every preset as a model of its own)."""
    assert host.llamacpp is not None
    declared, server = host.servers[index], variant or host.active_servers[index]
    assert server.model is not None
    model = host.model(server.model)
    mmproj = host.model(server.mmproj) if server.mmproj is not None else None
    gpu = server_gpu(host, facts, server)
    bind = server_bind(host, server)
    device = device_name(host, facts, gpu)
    mode = load_mode(server, gpu)
    served = served_model_id(host, server)
    layers, attn = gpu_layers(host, server), flash_attn(host, server)
    after, wait_health = first_units(host, facts, layout, index)
    model_path = layout.model_path(model)
    mmproj_path = layout.model_path(mmproj) if mmproj is not None else None
    argv = server_argv(
        server,
        binary=layout.server_binary,
        model_path=model_path,
        mmproj_path=mmproj_path,
        chat_template_path=None if model.chat_template is None else layout.chat_template_path(model.chat_template),
        bind=bind,
        gpu_layers=layers,
        flash_attn=attn,
        device=device,
        load_mode=mode,
        build=host.llamacpp.build,
    )
    return ServerPlan(
        index=index,
        server=server,
        declared=declared,
        model=model,
        mmproj=mmproj,
        unit=layout.unit_name(server),
        env_name=layout.env_name(server),
        env_file=layout.env_file(server),
        unit_render_path=unit_render_path(server),
        env_render_path=env_render_path(server),
        backend=host.backend,
        gpu=gpu,
        device=device,
        expected_device=expected_device(host, facts, gpu),
        bind_host=bind[0],
        bind_port=bind[1],
        client_host=server.host,
        client_port=server.port,
        served_model=served,
        model_path=model_path,
        mmproj_path=mmproj_path,
        gpu_layers=layers,
        flash_attn=attn,
        load_mode=mode,
        environment=server_env(host, server, gpu),
        argv=tuple(argv),
        probe=plan_probe(host, server, model, served),
        served=(served_model(host, server),),
        after=after,
        wait_health=wait_health,
    )
