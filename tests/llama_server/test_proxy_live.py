"""The proxy in front of a real llama-server (SmolLM2-135M): a real streamed tool call, read with ``openai``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from proxy_support import FIXTURES, WRITE_TOOL, LlamaServer, ProxyProcess, boundaries, http_get

from llamafleet_sseproxy.rechunk import ends_inside


@pytest.fixture(scope="module")
def live(llama_server_bin: Path, smollm2_gguf: Path) -> Iterator[tuple[LlamaServer, ProxyProcess]]:
    """llama-server with llama.cpp's Qwen2.5 tool template (see record_fixtures.py), the proxy in front of it."""
    extra = ("-np", "1", "--chat-template-file", str(FIXTURES / "qwen2.5-tools.jinja"))
    server = LlamaServer(llama_server_bin, smollm2_gguf, extra=extra).start()
    proxy = ProxyProcess(server.url, ("--split-open-brace",)).start()
    yield server, proxy
    proxy.stop()
    server.stop()


def tool_call(client: openai.OpenAI) -> tuple[str, list[str]]:
    """A streamed, grammar-constrained tool call (tool_choice required, assistant turn prefilled with <tool_call>)."""
    name = ""
    frags: list[str] = []
    stream = client.chat.completions.create(
        model="local",
        stream=True,
        max_tokens=24,
        temperature=0,
        tools=[WRITE_TOOL],  # type: ignore[list-item]
        tool_choice="required",
        messages=[
            {"role": "user", "content": "Write the lines a, b and c to the file abc.txt."},
            {"role": "assistant", "content": "<tool_call>\n"},
        ],
        extra_body={"cache_prompt": False},  # the same computation both times: same tokens
    )
    for c in stream:
        for call in c.choices[0].delta.tool_calls or [] if c.choices else []:
            if call.function and call.function.name:
                name = call.function.name
            if call.function and call.function.arguments is not None:
                frags.append(call.function.arguments)
    return name, frags


def test_real_tool_call_through_the_proxy_equals_the_direct_one(live: tuple[LlamaServer, ProxyProcess]) -> None:
    server, proxy = live
    direct_name, direct = tool_call(openai.OpenAI(base_url=server.url + "/v1", api_key="sk-local", max_retries=0))
    name, frags = tool_call(proxy.client(timeout=600))
    assert (name, direct_name) == ("write", "write")
    assert "".join(frags) == "".join(direct)
    assert direct[0].startswith("{") and len(direct) > 3  # llama-server sent a real, multi-event tool call
    assert frags[:2] == ["", "{"]  # --split-open-brace: the brace came in a delta of its own
    whole = "".join(frags)
    assert not any(ends_inside(whole, pos) for pos in boundaries(frags))


def test_real_endpoints_pass_through(live: tuple[LlamaServer, ProxyProcess]) -> None:
    server, proxy = live
    for path in ("/health", "/v1/models"):
        assert http_get(proxy.url + path) == http_get(server.url + path)
    report = json.loads(http_get(proxy.url + "/proxy/health")[1])
    assert report["ready"] is True
    assert report["status"] == 200
