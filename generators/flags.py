"""llama-server command lines derived from the host description."""

from __future__ import annotations

from generators.layout import Layout
from generators.spec import Host, Server


def server_argv(host: Host, server: Server, layout: Layout) -> list[str]:
    """The full argv of one llama-server, in a stable order (binary first)."""
    model = host.model(server.model)
    argv = [
        layout.server_binary,
        "--model", layout.model_path(model),
        "--alias", server.alias,
        "--host", server.host,
        "--port", str(server.port),
        "--ctx-size", str(server.ctx),
        "--parallel", str(server.parallel),
        "--n-gpu-layers", str(server.gpu_layers),
        "--cache-type-k", server.cache_type_k,
        "--cache-type-v", server.cache_type_v,
        "--flash-attn", server.flash_attn,
    ]
    if server.batch is not None:
        argv += ["--batch-size", str(server.batch)]
    if server.ubatch is not None:
        argv += ["--ubatch-size", str(server.ubatch)]
    if server.threads is not None:
        argv += ["--threads", str(server.threads)]
    if server.jinja:
        argv.append("--jinja")
    if server.api_key_file is not None:
        argv += ["--api-key-file", server.api_key_file]
    return argv


def server_flags(argv: list[str]) -> list[str]:
    """The option names of an argv (what the installed binary's --help must know)."""
    return [a for a in argv[1:] if a.startswith("-")]
