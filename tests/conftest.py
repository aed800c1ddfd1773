"""Fixtures for the SSE-repair proxy: a scripted upstream, proxies in front of it, and the real llama-server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from proxy_support import ProxyProcess, ScriptedUpstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    up = ScriptedUpstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def proxy(upstream: ScriptedUpstream) -> Iterator[ProxyProcess]:
    """The proxy with its defaults (keep-alive comments passed on, no brace split)."""
    p = ProxyProcess(f"http://127.0.0.1:{upstream.port}").start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def proxy_strict(upstream: ScriptedUpstream) -> Iterator[ProxyProcess]:
    """The proxy with keep-alive comments dropped and the opening brace split off."""
    p = ProxyProcess(f"http://127.0.0.1:{upstream.port}", ("--keepalive", "drop", "--split-open-brace")).start()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    """The real llama-server (env LLAMAFLEET_LLAMA_SERVER); tests that need it fail without it."""
    path = os.environ.get("LLAMAFLEET_LLAMA_SERVER")
    if not path:
        pytest.fail("set LLAMAFLEET_LLAMA_SERVER to a llama-server binary")
    assert os.access(path, os.X_OK), f"{path} is not executable"
    return Path(path)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 (env LLAMAFLEET_SMOLLM2_GGUF); tests that need it fail without it."""
    path = os.environ.get("LLAMAFLEET_SMOLLM2_GGUF")
    if not path:
        pytest.fail("set LLAMAFLEET_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf")
    assert Path(path).read_bytes()[:4] == b"GGUF", f"{path} is not a GGUF file"
    return Path(path)
