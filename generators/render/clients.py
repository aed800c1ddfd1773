"""Agent client configs: llamafleet's part of OpenCode's, pi's, Continue's and Claude Code's files, from the plan.

Each function returns a fragment; ``roles/agent_clients`` merges it into the login user's existing file with
:func:`generators.merge.merge_text`, so the user's other settings stay.

A server with an API key is named by reference, never by value (the key sits in the login user's copy,
:class:`generators.plan.clients.ClientKey`): OpenCode ``{file:...}`` (its config substitution), pi ``!cat ...``
(a command its ``apiKey`` runs), Claude Code ``apiKeyHelper`` (a command; sent as ``Authorization: Bearer`` and
``X-Api-Key``, both of which llama-server accepts), Continue ``${{ secrets.NAME }}`` (resolved from
``~/.continue/.env``, where the role writes the one line ``NAME=<key>``).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from generators.merge import dump
from generators.plan.clients import ClientKey, ClientsPlan, Endpoint

PROVIDER = "llamafleet"  # our provider/model keys in every client file; the user's own entries are never touched
PLACEHOLDER_KEY = "sk-local"  # llama-server without --api-key ignores it; clients insist on a non-empty key
# OpenCode's built-in tools with the heaviest schemas (seed 000: dropping these four cut the prompt by 44%).
OPENCODE_TOOLS = {
    "full": {},
    "lite": {"todowrite": False, "task": False, "skill": False, "webfetch": False},
    "minimal": {n: False for n in ("edit", "write", "grep", "todowrite", "task", "skill", "webfetch")},
}


def _read_key(key: ClientKey) -> str:
    """A command that prints the key (pi's ``!command``, Claude Code's ``apiKeyHelper``, both run by a shell)."""
    return f"cat {shlex.quote(key.dest)}"


def _chat(plan: ClientsPlan) -> Endpoint:
    """Continue's chat model."""
    assert plan.chat is not None
    return plan.chat


def _agent(plan: ClientsPlan) -> Endpoint:
    """The endpoint of the agents (OpenCode, pi, Claude Code): at least clients.agent_min_ctx per session."""
    assert plan.agent is not None
    return plan.agent


def _others(plan: ClientsPlan, first: Endpoint) -> list[Endpoint]:
    """The host's other chat models a client can pick by name (a router's), after ``first``."""
    return [m for m in plan.models if m.model_id != first.model_id]


def _opencode_model(chat: Endpoint) -> dict[str, Any]:
    model: dict[str, Any] = {"name": chat.label}
    if chat.context:  # unknown for ctx: native until the GGUF is read; OpenCode then uses its own defaults
        model["limit"] = {"context": chat.context, "output": chat.output}
    if chat.vision:
        model["modalities"] = {"input": ["text", "image"], "output": ["text"]}
    return model


def opencode(plan: ClientsPlan) -> dict[str, Any]:
    chat = _agent(plan)
    assert plan.opencode_tools is not None
    model = _opencode_model(chat)
    config: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "model": f"{PROVIDER}/{chat.model_id}",
        "provider": {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": f"llamafleet ({chat.engine})",
                "options": {"baseURL": chat.openai_base,
                            "apiKey": PLACEHOLDER_KEY if chat.key is None else f"{{file:{chat.key.dest}}}"},
                "models": {chat.model_id: model, **{m.model_id: _opencode_model(m) for m in _others(plan, chat)}},
            }
        },
    }
    tools = OPENCODE_TOOLS[plan.opencode_tools]
    if tools:
        config["tools"] = dict(tools)
    return config


def pi(plan: ClientsPlan) -> dict[str, Any]:
    chat = _agent(plan)
    return {
        "providers": {
            PROVIDER: {
                "baseUrl": chat.openai_base,
                "api": "openai-completions",
                "apiKey": PLACEHOLDER_KEY if chat.key is None else "!" + _read_key(chat.key),
                "models": [
                    {
                        "id": m.model_id,
                        "name": m.label,
                        "reasoning": plan.pi_reasoning,
                        "input": ["text", "image"] if m.vision else ["text"],
                        "contextWindow": m.context or 4096,
                        "maxTokens": m.output,
                        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                    }
                    for m in (chat, *_others(plan, chat))
                ],
            }
        }
    }


def continue_dev(plan: ClientsPlan) -> dict[str, Any]:
    chat = _chat(plan)
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
        chat_model["apiKey"] = PLACEHOLDER_KEY if chat.key is None else _continue_secret(chat.key)
    if chat.context:
        chat_model["defaultCompletionOptions"] = {"contextLength": chat.context, "maxTokens": chat.output}
    models.append(chat_model)
    auto = plan.autocomplete
    if auto is not None:
        auto_model: dict[str, Any] = {
            "name": f"{PROVIDER} autocomplete",
            "provider": "ollama" if auto.engine == "ollama" else "llama.cpp",
            "model": auto.model_id,
            "apiBase": auto.base,
            "roles": ["autocomplete"],
        }
        if auto.key is not None:
            auto_model["apiKey"] = _continue_secret(auto.key)
        models.append(auto_model)
    return {"name": "llamafleet", "version": "1.0.0", "schema": "v1", "models": models}


def _continue_secret(key: ClientKey) -> str:
    return "${{ secrets." + key.env + " }}"


def claude_code(plan: ClientsPlan) -> dict[str, Any]:
    chat = _agent(plan)
    config: dict[str, Any] = {
        "env": {
            "ANTHROPIC_BASE_URL": chat.base,  # llama-server (and Ollama) serve Anthropic's /v1/messages here
            "ANTHROPIC_AUTH_TOKEN": PLACEHOLDER_KEY,
            "ANTHROPIC_MODEL": chat.model_id,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": chat.model_id,
        }
    }
    if chat.context:
        # Claude Code assumes a 200K window for a model it does not know: compact within what the server serves
        # (capped at the model's window by Claude Code itself) and keep each answer inside it.
        config["env"]["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] = str(chat.context)
        config["env"]["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(chat.output)
    if chat.key is not None:
        # The helper's output is the key; ANTHROPIC_AUTH_TOKEN would win over it, so the merge removes it (null).
        config["env"]["ANTHROPIC_AUTH_TOKEN"] = None
        config["apiKeyHelper"] = _read_key(chat.key)
    return config


FRAGMENTS: dict[str, Callable[[ClientsPlan], dict[str, Any]]] = {
    "opencode": opencode,
    "pi": pi,
    "continue": continue_dev,
    "claude_code": claude_code,
}


def render_client(plan: ClientsPlan, name: str) -> str:
    """One client's fragment as file text in its own format."""
    fmt = next(f.fmt for f in plan.files if f.name == name)
    return dump(FRAGMENTS[name](plan), fmt)
