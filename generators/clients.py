"""Agent client configs for a host: OpenCode, pi, Continue and Claude Code, pointed at the host's servers.

Each function returns llamafleet's *part* of a client's config (a fragment); ``roles/agent_clients`` merges it
into the login user's existing file with :func:`generators.merge.merge_text`, so the user's other settings stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from generators.flags import served_model_id
from generators.spec import Host, Server

PROVIDER = "llamafleet"  # our provider/model keys in every client file; the user's own entries are never touched
PLACEHOLDER_KEY = "sk-local"  # llama-server without --api-key ignores it; clients insist on a non-empty key
OUTPUT_CAP = 32768
# OpenCode's built-in tools with the heaviest schemas (seed 000: dropping these four cut the prompt by 44%).
OPENCODE_TOOLS = {
    "full": {},
    "lite": {"todowrite": False, "task": False, "skill": False, "webfetch": False},
    "minimal": {n: False for n in ("edit", "write", "grep", "todowrite", "task", "skill", "webfetch")},
}


@dataclass(frozen=True)
class Endpoint:
    """One model a client talks to: where, under which id, and how much context one session gets."""

    engine: str
    base: str  # scheme://host:port, no path
    model_id: str
    label: str
    context: int | None
    vision: bool

    @property
    def openai_base(self) -> str:
        return f"{self.base}/v1"

    @property
    def output(self) -> int:
        return min(self.context // 4, OUTPUT_CAP) if self.context else 8192


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _llama_endpoint(host: Host, server: Server) -> Endpoint:
    assert server.model is not None
    context: int | None = None
    if isinstance(server.ctx, int):
        slots = server.parallel if isinstance(server.parallel, int) and server.sessions != "shared" else 1
        context = server.ctx // slots
    return Endpoint(
        engine="llamacpp",
        base=f"http://{_url_host(server.host)}:{server.port}",
        model_id=served_model_id(host, server),
        label=f"{server.model} (llama.cpp, {server.name})",
        context=context,
        vision=server.mmproj is not None,
    )


def endpoint(host: Host, role: str) -> Endpoint | None:
    """The chat or autocomplete endpoint of a host, if it has one."""
    if host.ollama is not None:
        ollama = host.ollama
        tag = ollama.chat_model if role == "chat" else ollama.autocomplete_model
        if role == "chat" and tag is None:
            tag = ollama.models[0]
        if tag is None:
            return None
        return Endpoint(
            engine="ollama",
            base=f"http://{_url_host(ollama.host)}:{ollama.port}",
            model_id=tag,
            label=f"{tag} (ollama)",
            context=ollama.context_length or 4096,  # Ollama's default window is 4096 (seed 002)
            vision=False,
        )
    server = next((s for s in host.active_servers if s.role == role), None)
    return None if server is None else _llama_endpoint(host, server)


def opencode(host: Host) -> dict[str, Any]:
    chat = endpoint(host, "chat")
    assert chat is not None and host.clients is not None and host.clients.opencode is not None
    model: dict[str, Any] = {"name": chat.label}
    if chat.context:  # unknown for ctx: native until the GGUF is read; OpenCode then uses its own defaults
        model["limit"] = {"context": chat.context, "output": chat.output}
    if chat.vision:
        model["modalities"] = {"input": ["text", "image"], "output": ["text"]}
    config: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "model": f"{PROVIDER}/{chat.model_id}",
        "provider": {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": f"llamafleet ({chat.engine})",
                "options": {"baseURL": chat.openai_base, "apiKey": PLACEHOLDER_KEY},
                "models": {chat.model_id: model},
            }
        },
    }
    tools = OPENCODE_TOOLS[host.clients.opencode.tools]
    if tools:
        config["tools"] = dict(tools)
    return config


def pi(host: Host) -> dict[str, Any]:
    chat = endpoint(host, "chat")
    assert chat is not None and host.clients is not None and host.clients.pi is not None
    return {
        "providers": {
            PROVIDER: {
                "baseUrl": chat.openai_base,
                "api": "openai-completions",
                "apiKey": PLACEHOLDER_KEY,
                "models": [
                    {
                        "id": chat.model_id,
                        "name": chat.label,
                        "reasoning": host.clients.pi.reasoning,
                        "input": ["text", "image"] if chat.vision else ["text"],
                        "contextWindow": chat.context or 4096,
                        "maxTokens": chat.output,
                        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                    }
                ],
            }
        }
    }


def continue_dev(host: Host) -> dict[str, Any]:
    chat = endpoint(host, "chat")
    assert chat is not None
    models: list[dict[str, Any]] = []
    chat_model: dict[str, Any] = {
        "name": f"{PROVIDER} chat",
        "provider": "ollama" if chat.engine == "ollama" else "openai",
        "model": chat.model_id,
        "apiBase": chat.base if chat.engine == "ollama" else chat.openai_base,
        "roles": ["chat", "edit", "apply"],
        "capabilities": ["tool_use"] + (["image_input"] if chat.vision else []),
    }
    if chat.engine != "ollama":
        chat_model["apiKey"] = PLACEHOLDER_KEY
    if chat.context:
        chat_model["defaultCompletionOptions"] = {"contextLength": chat.context, "maxTokens": chat.output}
    models.append(chat_model)
    auto = endpoint(host, "autocomplete")
    if auto is not None:
        models.append(
            {
                "name": f"{PROVIDER} autocomplete",
                "provider": "ollama" if auto.engine == "ollama" else "llama.cpp",
                "model": auto.model_id,
                "apiBase": auto.base,
                "roles": ["autocomplete"],
            }
        )
    return {"name": "llamafleet", "version": "1.0.0", "schema": "v1", "models": models}


def claude_code(host: Host) -> dict[str, Any]:
    chat = endpoint(host, "chat")
    assert chat is not None
    return {
        "env": {
            "ANTHROPIC_BASE_URL": chat.base,  # llama-server (and Ollama) serve Anthropic's /v1/messages here
            "ANTHROPIC_AUTH_TOKEN": PLACEHOLDER_KEY,
            "ANTHROPIC_MODEL": chat.model_id,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": chat.model_id,
        }
    }


@dataclass(frozen=True)
class ClientSpec:
    """How one client's file is rendered, found and merged."""

    name: str
    fmt: str
    render: Any
    list_keys: tuple[tuple[str, str], ...] = ()
    keep_user: tuple[str, ...] = ()


CLIENTS = (
    ClientSpec("opencode", "json", opencode),
    ClientSpec("pi", "json", pi, list_keys=(("models", "id"),)),
    ClientSpec(
        "continue", "yaml", continue_dev, list_keys=(("models", "name"),), keep_user=("name", "version", "schema")
    ),
    ClientSpec("claude_code", "json", claude_code),
)


def enabled(host: Host) -> tuple[ClientSpec, ...]:
    if host.clients is None:
        return ()
    flags = {
        "opencode": host.clients.opencode,
        "pi": host.clients.pi,
        "continue": host.clients.continue_,
        "claude_code": host.clients.claude_code,
    }
    return tuple(c for c in CLIENTS if flags[c.name] is not None)
