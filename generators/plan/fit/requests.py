"""What the memory planner is asked for one server: the memory it may use and the values it pins.

Read from the host's plan: the server's GPU (its ``vram_gb``, an APU's GTT pool), the host's RAM when the facts
know it, and either the server's own settings (what it leaves free is the planner's choice) or the command line
render writes (:func:`launch_request`: every value the unit sets is pinned, as llama.cpp's own ``--fit`` never
touches a value given on the command line).
"""

from __future__ import annotations

from generators.plan.fit.gguf_facts import ModelFacts
from generators.plan.fit.planner import UNKNOWN_MIB, Backend, Memory, Request
from generators.plan.host import HostPlan
from generators.plan.servers import ServerPlan

# llama-server's defaults for what render leaves out (b11434: common/common.h, tools/server/server.cpp)
DEFAULT_BATCH = 2048
DEFAULT_UBATCH = 512
AUTO_SLOTS = 4  # --parallel left out (or auto): four slots sharing one unified KV pool

_BACKENDS: dict[str, Backend] = {"cpu": "cpu", "cuda": "cuda", "vulkan": "vulkan", "hip": "rocm", "rocm": "rocm",
                                 "metal": "metal"}


def memory_for(plan: HostPlan, server: ServerPlan, vram_mib: int | None, ram_mib: int | None) -> tuple[Memory, bool]:
    """The memory a server may use, and whether host RAM is known."""
    backend = _BACKENDS.get(plan.backend, "cpu")
    gpu = server.gpu if backend != "cpu" else None
    unified = bool(gpu is not None and gpu.unified)
    if vram_mib is None and gpu is not None and gpu.vram_gb:
        vram_mib = int(float(gpu.vram_gb) * 1024)
    if ram_mib is None and plan.facts.ram_mib:
        ram_mib = int(plan.facts.ram_mib)
    known = ram_mib is not None
    gpu_mib = (vram_mib or 0) if backend != "cpu" else 0
    build = plan.spec.llamacpp.build if plan.spec.llamacpp is not None else None  # its reservation rules
    return Memory(gpu_mib, ram_mib or UNKNOWN_MIB, backend, unified, build=build), known


def request_for(server: ServerPlan, facts: ModelFacts) -> Request:
    """What a server pins (set in the inventory) and what it leaves to the planner."""
    spec = server.server
    ctx = spec.ctx if isinstance(spec.ctx, int) else facts.n_ctx_train
    parallel = spec.parallel
    unified = spec.sessions == "shared"
    if parallel == "auto":  # llama-server's own auto: 4 slots sharing one unified KV pool
        parallel, unified = 4, True
    k = spec.cache_type_k or spec.kv_cache
    v = spec.cache_type_v or spec.kv_cache
    fa = {"on": True, "off": False}.get(str(spec.flash_attn))
    layers = spec.gpu_layers
    if layers == "all":
        layers = facts.n_layer + 1
    elif not isinstance(layers, int):
        layers = None
    return Request(
        ctx=ctx, parallel=int(parallel), kv_unified=unified, cache_type_k=k, cache_type_v=v, flash_attn=fa,
        batch=spec.batch, ubatch=spec.ubatch, gpu_layers=layers,
        no_kv_offload=True if spec.kv_offload is False else None, mmproj=bool(spec.mmproj),
    )


def launch_request(server: ServerPlan, facts: ModelFacts) -> Request:
    """The memory settings of the command line render writes for ``server`` (its planned argv)."""
    spec = server.server
    ctx = facts.n_ctx_train if spec.ctx == "native" else int(spec.ctx)
    shared = spec.sessions == "shared" or spec.parallel == "auto"
    parallel = AUTO_SLOTS if shared else int(spec.parallel)
    fa = {"on": True, "off": False}.get(server.flash_attn)  # auto: the planner's choice (on)
    batch = spec.batch or DEFAULT_BATCH
    layers = server.gpu_layers
    if layers == "auto":
        gpu_layers, n_cpu_moe = None, None  # llama.cpp fits layers (and experts) itself
    else:
        gpu_layers = facts.n_layer + 1 if layers == "all" else min(int(layers), facts.n_layer + 1)
        n_cpu_moe = 0
    return Request(
        ctx=ctx, parallel=parallel, kv_unified=shared, cache_type_k=spec.cache_k, cache_type_v=spec.cache_v,
        flash_attn=fa, batch=batch, ubatch=min(spec.ubatch or DEFAULT_UBATCH, batch), gpu_layers=gpu_layers,
        n_cpu_moe=n_cpu_moe, no_kv_offload=not spec.kv_offload, mmproj=spec.mmproj is not None,
    )
