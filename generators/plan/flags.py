"""llama-server command lines: every value decided by :mod:`generators.plan.servers`, spelled for the build.

Spellings come from ``data/flag_renames.yaml`` for the llama.cpp build the host runs.
"""

from __future__ import annotations

from generators import data
from generators.spec import Server

SHARED_SLOT_SIMILARITY = "0.9"  # seed 001: keeps each agent session on the slot holding its prefix
# Prometheus metrics at /metrics (issue 17: fleet status and scraping). Spelled the same in every build from
# data/flag_renames.yaml's min_build (9093) to 11434, so no rename entry. Behind --api-key-file like every endpoint
# but /health and /v1/models. Its throughput gauges (llamacpp:*_tokens_seconds) cover the time since the previous
# /metrics read: each read resets them.
METRICS_FLAG = "--metrics"


def _spelling(setting: str, build: int) -> dict[str, object]:
    """The newest entry of a renamed setting whose ``since`` is at or below ``build``."""
    entries = [e for e in data.flag_renames()["renames"][setting] if int(e["since"]) <= build]
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


def ctx_value(server: Server) -> str:
    return "0" if server.ctx == "native" else str(server.ctx)


def server_argv(
    server: Server,
    *,
    binary: str,
    model_path: str,
    mmproj_path: str | None,
    chat_template_path: str | None,
    bind: tuple[str, int],
    gpu_layers: str,
    flash_attn: str,
    device: str | None,
    load_mode: str | None,
    build: int,
) -> list[str]:
    """The full argv of one llama-server, in a stable order (binary first)."""
    argv = [binary, "--model", model_path]
    if server.alias is not None:
        argv += ["--alias", server.alias]
    bind_host, bind_port = bind  # behind the SSE-repair proxy on loopback when it fronts this one
    argv += ["--host", bind_host, "--port", str(bind_port), "--ctx-size", ctx_value(server)]
    if server.sessions != "shared" and server.parallel != "auto":
        argv += ["--parallel", str(server.parallel)]
    argv += [
        "--n-gpu-layers", gpu_layers,
        "--cache-type-k", server.cache_k,
        "--cache-type-v", server.cache_v,
        "--flash-attn", flash_attn,
    ]
    if server.batch is not None:
        argv += ["--batch-size", str(server.batch)]
    if server.ubatch is not None:
        argv += ["--ubatch-size", str(server.ubatch)]
    if server.threads is not None:
        argv += ["--threads", str(server.threads)]
    if server.jinja:
        argv.append("--jinja")
    if chat_template_path is not None:
        argv += ["--chat-template-file", chat_template_path]
    if server.api_key_file is not None:
        argv += ["--api-key-file", server.api_key_file]
    if device is not None:
        argv += ["--device", device]
    if mmproj_path is not None:
        argv += ["--mmproj", mmproj_path]
    if not server.kv_offload:
        argv.append("--no-kv-offload")
    if load_mode is not None:
        argv += load_mode_flags(load_mode, build)
    if server.sessions == "shared":
        argv += ["--kv-unified", "--cache-idle-slots"]
        if server.host_cache_mib is not None:
            argv += ["--cache-ram", str(server.host_cache_mib)]
        argv += ["--slot-prompt-similarity", SHARED_SLOT_SIMILARITY]
    if server.fit is not None:
        argv += ["--fit", server.fit]
    argv.append(METRICS_FLAG)
    return argv


def server_flags(argv: list[str] | tuple[str, ...]) -> list[str]:
    """The option names of an argv (what the installed binary's --help must know)."""
    return [a for a in argv[1:] if a.startswith("-")]
