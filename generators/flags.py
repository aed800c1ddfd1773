"""llama-server command lines derived from the host description.

Values come from the host's preferences and from the hardware (catalog quirks, the GPU the server runs on);
spellings come from ``data/flag_renames.yaml`` for the llama.cpp build the host runs.
"""

from __future__ import annotations

from generators import catalog
from generators.layout import Layout
from generators.spec import Gpu, Host, Server

DEVICE_PREFIX = {"cuda": "CUDA", "vulkan": "Vulkan", "hip": "ROCm"}
SHARED_SLOT_SIMILARITY = "0.9"  # seed 001: keeps each agent session on the slot holding its prefix


def _spelling(setting: str, build: int) -> dict[str, object]:
    """The newest entry of a renamed setting whose ``since`` is at or below ``build``."""
    entries = [e for e in catalog.flag_renames()["renames"][setting] if int(e["since"]) <= build]
    if not entries:
        raise ValueError(f"b{build} predates every spelling of {setting} in data/flag_renames.yaml")
    return max(entries, key=lambda e: int(e["since"]))


def load_mode_flags(mode: str, build: int) -> list[str]:
    """``--load-mode <mode>``, or the flag older builds used for it (``--no-mmap`` for ``none``)."""
    entry = _spelling("load_mode", build)
    if "template" in entry:
        return [str(a).replace("{value}", mode) for a in entry["template"]]  # type: ignore[union-attr]
    if mode not in entry:
        raise ValueError(f"load mode {mode!r} has no spelling before b10405 (this host runs b{build})")
    return [str(a) for a in entry[mode]]  # type: ignore[union-attr]


def server_gpu(host: Host, server: Server) -> Gpu | None:
    """The GPU a server runs on: the one it names, else the backend-visible GPU with the most dedicated VRAM."""
    gpus = host.backend_gpus()
    if not gpus:
        return None
    if server.device is not None:
        key = catalog.find_gpu(server.device) or server.device
        return next(g for g in gpus if g.key == key)
    return max(gpus, key=lambda g: (not g.unified, g.vram_gb or 0.0, -gpus.index(g)))


def device_name(host: Host, server: Server) -> str | None:
    """``Vulkan1``-style device name, only when the backend sees more than one device (else llama.cpp picks it)."""
    gpus = host.backend_gpus()
    gpu = server_gpu(host, server)
    if gpu is None or len(gpus) < 2:
        return None
    return f"{DEVICE_PREFIX[host.backend]}{gpus.index(gpu)}"


def gpu_layers(host: Host, server: Server) -> str:
    if server.gpu_layers is not None:
        return str(server.gpu_layers)
    return "0" if host.backend == "cpu" else "99"


def flash_attn(host: Host, server: Server) -> str:
    if server.flash_attn is not None:
        return server.flash_attn
    return "auto" if host.backend == "cpu" else "on"


def load_mode(host: Host, server: Server) -> str | None:
    if server.load_mode is not None:
        return None if server.load_mode == "auto" else server.load_mode
    gpu = server_gpu(host, server)
    return None if gpu is None else gpu.quirks.get("load_mode")


def server_env(host: Host, server: Server) -> dict[str, str]:
    """Environment for the unit's EnvironmentFile: GPU quirks for this backend, then the server's own."""
    gpu = server_gpu(host, server)
    env = gpu.env(host.backend) if gpu is not None else {}
    return {**env, **server.env}


def ctx_value(server: Server) -> str:
    return "0" if server.ctx == "native" else str(server.ctx)


def server_argv(host: Host, server: Server, layout: Layout) -> list[str]:
    """The full argv of one llama-server, in a stable order (binary first)."""
    assert host.llamacpp is not None and server.model is not None
    model = host.model(server.model)
    argv = [layout.server_binary, "--model", layout.model_path(model)]
    if server.alias is not None:
        argv += ["--alias", server.alias]
    bind_host, bind_port = host.server_bind(server)  # behind the SSE-repair proxy on loopback when it fronts this one
    argv += ["--host", bind_host, "--port", str(bind_port), "--ctx-size", ctx_value(server)]
    if server.sessions != "shared" and server.parallel != "auto":
        argv += ["--parallel", str(server.parallel)]
    argv += [
        "--n-gpu-layers", gpu_layers(host, server),
        "--cache-type-k", server.cache_k,
        "--cache-type-v", server.cache_v,
        "--flash-attn", flash_attn(host, server),
    ]
    if server.batch is not None:
        argv += ["--batch-size", str(server.batch)]
    if server.ubatch is not None:
        argv += ["--ubatch-size", str(server.ubatch)]
    if server.threads is not None:
        argv += ["--threads", str(server.threads)]
    if server.jinja:
        argv.append("--jinja")
    if model.chat_template is not None:
        argv += ["--chat-template-file", layout.chat_template_path(model.chat_template)]
    if server.api_key_file is not None:
        argv += ["--api-key-file", server.api_key_file]
    device = device_name(host, server)
    if device is not None:
        argv += ["--device", device]
    if server.mmproj is not None:
        argv += ["--mmproj", layout.model_path(host.model(server.mmproj))]
    if not server.kv_offload:
        argv.append("--no-kv-offload")
    mode = load_mode(host, server)
    if mode is not None:
        argv += load_mode_flags(mode, host.llamacpp.build)
    if server.sessions == "shared":
        argv += ["--kv-unified", "--cache-idle-slots"]
        if server.host_cache_mib is not None:
            argv += ["--cache-ram", str(server.host_cache_mib)]
        argv += ["--slot-prompt-similarity", SHARED_SLOT_SIMILARITY]
    if server.fit is not None:
        argv += ["--fit", server.fit]
    return argv


def server_flags(argv: list[str]) -> list[str]:
    """The option names of an argv (what the installed binary's --help must know)."""
    return [a for a in argv[1:] if a.startswith("-")]


def served_model_id(host: Host, server: Server) -> str:
    """The model id llama-server reports on /v1/models: the alias, else the model file's name."""
    if server.alias is not None:
        return server.alias
    assert server.model is not None
    return host.model(server.model).filename
