"""The proxy process over real HTTP: scripted upstream streams in, the ``openai`` client reading them out."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.request
from pathlib import Path

import openai
import pytest
from proxy_support import (
    DONE,
    FIXTURES,
    ProxyProcess,
    Script,
    ScriptedUpstream,
    boundaries,
    chunk,
    content_events,
    event,
    http_get,
    http_post,
    receive,
    split_bytes,
    tool_call_events,
)

from llamafleet_sseproxy.rechunk import ends_inside

HOSTILE = '{"path": "f.txt", "content": "a\\nb \\"q\\" c:\\\\ caf\\u00e9 \\ud83d\\ude00 é😀"}'
CONTENT = 'Line\\n one: \\"quoted\\" C:\\\\dir caf\\u00e9 \\ud83d\\ude00 é😀 東京'


def assert_clean(frags: list[str], whole: str) -> None:
    assert "".join(frags) == whole
    for pos in boundaries(frags):
        assert not ends_inside(whole, pos), f"a fragment ends inside an escape at {pos}: {frags!r}"


def raw_stream(url: str, script: str) -> bytes:
    """The response body exactly as sent, read with a plain HTTP client."""
    body = {"model": "local", "stream": True, "messages": [{"role": "user", "content": script}]}
    req = urllib.request.Request(
        url + "/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return bytes(resp.read())


def test_tool_arguments_split_at_every_position(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    client = proxy.client()
    direct = openai.OpenAI(base_url=f"http://127.0.0.1:{upstream.port}/v1", api_key="sk-local", max_retries=0)
    broken_direct = 0
    for b in range(len(HOSTILE) + 1):
        name = f"tool-split-{b}"
        upstream.scripts[name] = Script(tool_call_events([HOSTILE[:b], HOSTILE[b:]]))
        got = receive(client, name)
        assert got.names == {0: "write"}
        assert got.finish == "tool_calls"
        assert_clean(got.arguments[0], HOSTILE)
        assert json.loads(got.args()) == json.loads(HOSTILE)
        seen = receive(direct, name).arguments[0]
        broken_direct += any(ends_inside(HOSTILE, pos) for pos in boundaries(seen))
    assert broken_direct >= 20  # without the proxy, the same client sees fragments that end mid-escape


def test_content_split_at_every_position_and_every_tcp_read(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    client = proxy.client()
    for b in range(len(CONTENT) + 1):
        name = f"content-split-{b}"
        events = content_events([CONTENT[:b], CONTENT[b:]])
        upstream.scripts[name] = Script(split_bytes(events, 1 + b % 7))  # events cut at odd places on the wire
        got = receive(client, name)
        assert got.finish == "stop"
        assert_clean(got.content, CONTENT)


def test_utf8_bytes_split_at_every_position(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    text = "é😀東€"
    raw = text.encode()
    client = proxy.client()
    for b in range(len(raw) + 1):
        name = f"utf8-split-{b}"
        halves = [raw[:b].decode("utf-8", "surrogateescape"), raw[b:].decode("utf-8", "surrogateescape")]
        upstream.scripts[name] = Script(content_events(halves))
        got = receive(client, name)
        assert "".join(got.content) == text
        assert "\ufffd" not in "".join(got.content)


def test_surrogate_pair_split_between_events(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    units = "x\ud83d\ude00y"
    client = proxy.client()
    for b in range(len(units) + 1):
        name = f"surrogate-split-{b}"
        evs = [b"data: " + json.dumps(chunk({"content": p})).encode() + b"\n\n" for p in (units[:b], units[b:])]
        upstream.scripts[name] = Script([*evs, DONE])
        got = receive(client, name)
        assert "".join(got.content) == "x😀y"
        for frag in got.content:
            frag.encode("utf-8")  # no lone surrogate reached the client


@pytest.mark.parametrize(
    "name", ["tool_call_write", "tool_call_quotes", "tool_call_poem", "content_plain", "content_unicode"]
)
def test_recorded_llama_server_streams(upstream: ScriptedUpstream, proxy: ProxyProcess, name: str) -> None:
    """Real llama-server recordings, replayed as recorded and in 1-byte reads: same text, clean boundaries."""
    data = (FIXTURES / f"{name}.sse").read_bytes()
    request = json.loads((FIXTURES / f"{name}.request.json").read_text())
    expected = {"content": "", "args": ""}
    for raw in data.split(b"\n\n"):
        if raw.startswith(b"data: {"):
            for choice in json.loads(raw[6:])["choices"]:
                delta = choice["delta"]
                expected["content"] += delta.get("content") or ""
                for call in delta.get("tool_calls", []):
                    expected["args"] += call["function"].get("arguments", "")
    for piece in (0, 1):
        script = f"{name}-{piece}"
        upstream.scripts[script] = Script(split_bytes([data], piece) if piece else [data])
        got = receive(proxy.client(), script)
        assert "".join(got.content) == expected["content"]
        assert got.args() == expected["args"]
        assert_clean(got.content, expected["content"])
        if expected["args"]:
            assert_clean(got.arguments[0], expected["args"])
            assert got.names == {0: "write"}
            assert request["tool_choice"] == "required"


@pytest.mark.parametrize("name", ["tool_call_write", "tool_call_poem"])
def test_recorded_tool_call_resplit_at_every_position(
    upstream: ScriptedUpstream, proxy: ProxyProcess, name: str
) -> None:
    """The recorded arguments, cut again at every position, in the recorded envelope (id, model, fingerprint)."""
    data = (FIXTURES / f"{name}.sse").read_bytes()
    first = next(json.loads(r[6:]) for r in data.split(b"\n\n") if b'"tool_calls"' in r)
    args = "".join(
        call["function"].get("arguments", "")
        for r in data.split(b"\n\n")
        if r.startswith(b"data: {")
        for ch in json.loads(r[6:])["choices"]
        for call in ch["delta"].get("tool_calls", [])
    )
    client = proxy.client()
    for b in range(len(args) + 1):
        frags = [args[:b], args[b:]]
        evs = []
        for i, frag in enumerate(frags):
            ev = json.loads(json.dumps(first))
            call = ev["choices"][0]["delta"]["tool_calls"][0]
            call["function"]["arguments"] = frag
            if i:
                call = {"index": 0, "function": {"arguments": frag}}
                ev["choices"][0]["delta"]["tool_calls"] = [call]
            evs.append(event(ev))
        script = f"{name}-resplit-{b}"
        upstream.scripts[script] = Script([*evs, event(chunk({}, finish="tool_calls")), DONE])
        got = receive(client, script)
        assert_clean(got.arguments[0], args)


def test_unchanged_stream_is_byte_identical(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    data = (FIXTURES / "content_plain.sse").read_bytes()
    upstream.scripts["identical"] = Script(split_bytes([data], 13))
    assert raw_stream(proxy.url, "identical") == data


def test_keepalive_dropped_and_open_brace_split(upstream: ScriptedUpstream, proxy_strict: ProxyProcess) -> None:
    events = tool_call_events(['{"path": "a.txt", "content": "x\\', 'ny"}'])
    upstream.scripts["strict"] = Script([b": keep-alive\n\n", *events[:3], b": ping\n\n", *events[3:]])
    raw = raw_stream(proxy_strict.url, "strict")
    assert b": keep-alive" not in raw
    assert b": ping" not in raw
    got = receive(proxy_strict.client(), "strict")
    assert got.arguments[0][:3] == ["", "{", '"path": "a.txt", "content": "x']
    assert got.args() == '{"path": "a.txt", "content": "x\\ny"}'


def test_keepalive_passed_by_default(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    events = content_events(["a"])
    upstream.scripts["keepalive"] = Script([events[0], b": keep-alive\n\n", *events[1:]])
    assert b": keep-alive\n\n" in raw_stream(proxy.url, "keepalive")
    assert "".join(receive(proxy.client(), "keepalive").content) == "a"


def test_other_endpoints_pass_through_unchanged(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    direct = f"http://127.0.0.1:{upstream.port}"
    assert http_get(proxy.url + "/v1/models") == http_get(direct + "/v1/models")
    status, body = http_get(proxy.url + "/missing/x%2Fy?a=1&b=%20")
    assert status == 404
    echo = json.loads(body)
    assert (echo["method"], echo["raw_path"]) == ("GET", "/missing/x%2Fy?a=1&b=%20")
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    headers = {"Authorization": "Bearer sk-x", "Connection": "keep-alive, X-Hop", "X-Hop": "1", "X-End": "2"}
    headers["Expect"] = "100-continue"
    conn.request("PUT", "/slots?id_slot=0", body=b"\x00binary\xff", headers=headers)
    echo = json.loads(conn.getresponse().read())
    conn.close()
    assert echo["method"] == "PUT"
    assert echo["body"] == "\x00binary\xff"
    assert echo["headers"]["authorization"] == "Bearer sk-x"
    assert echo["headers"]["x-end"] == "2"
    assert "x-hop" not in echo["headers"]
    assert "expect" not in echo["headers"]


def test_non_streaming_completion_is_untouched(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "a\\"}}], "x": "\u00e9"}).encode()
    upstream.scripts["plain"] = Script([body])
    doc = {"model": "local", "messages": [{"role": "user", "content": "plain"}]}
    assert http_post(proxy.url + "/v1/chat/completions", doc)[2] == body


def test_stream_request_answered_with_an_error_passes_through(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    err = b'{"error":{"code":400,"message":"bad","type":"invalid_request_error"}}'
    upstream.scripts["bad"] = Script([err], status=400)
    doc = {"model": "local", "stream": True, "messages": [{"role": "user", "content": "bad"}]}
    status, _headers, body = http_post(proxy.url + "/v1/chat/completions", doc)
    assert (status, body) == (400, err)
    with pytest.raises(openai.BadRequestError):
        receive(proxy.client(), "bad")


def test_stream_broken_mid_way_ends_with_an_error_the_client_understands(
    upstream: ScriptedUpstream, proxy: ProxyProcess
) -> None:
    events = tool_call_events(['{"path": "a", "content": "x\\', "n", 'y"}'])
    upstream.scripts["broken"] = Script(events, break_after=2)
    raw = raw_stream(proxy.url, "broken")
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    last = raw.split(b"\n\n")[-3]
    assert json.loads(last[6:])["error"]["message"].startswith("upstream connection lost mid-stream")
    with pytest.raises(openai.APIError, match="upstream connection lost mid-stream"):
        receive(proxy.client(), "broken")
    # the held "\" went out before the error: what arrived is exactly what the upstream had sent
    assert b'"arguments":"\\\\"' in raw


def test_proxy_health_reports_upstream_state(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    for _ in range(100):  # a broken stream (test above) marks the upstream down until the next /health probe
        status, body = http_get(proxy.url + "/proxy/health")
        if status == 200:
            break
        time.sleep(0.05)
    report = json.loads(body)
    assert status == 200
    assert report["ready"] is True
    assert report["upstream"] == f"http://127.0.0.1:{upstream.port}"


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def test_a_slow_client_holds_the_upstream_back(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    """Backpressure: while the client reads nothing, the proxy stops reading too; nothing piles up in it."""
    total_events = 6000
    piece = event(chunk({"content": "x" * 16000}))
    upstream.scripts["slow"] = Script([piece] * total_events + [DONE])
    total = len(piece) * total_events
    body = json.dumps({"model": "local", "stream": True, "messages": [{"role": "user", "content": "slow"}]})
    assert proxy.proc is not None
    rss_before = rss_kib(proxy.proc.pid)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        assert sock.recv(1) == b"H"  # the answer has begun; from now on the client reads nothing
        for _ in range(40):  # let the upstream write all it can
            time.sleep(0.05)
        stalled = upstream.sent.get("slow", 0)
        print(f"upstream wrote {stalled} of {total} bytes while the client read nothing")
        assert "slow" not in upstream.finished
        grown = rss_kib(proxy.proc.pid) - rss_before
        print(f"the proxy grew by {grown} KiB")
        assert stalled < total // 4, (stalled, total)  # socket buffers hold some MB, not the 97 MB stream
        assert grown < 24 * 1024  # and the proxy holds next to nothing of it
        received = 1
        while chunk_ := sock.recv(1 << 20):
            received += len(chunk_)
            if b"data: [DONE]" in chunk_[-64:]:
                break
    assert "slow" in upstream.finished
    assert received > total


def test_a_client_that_goes_away_releases_the_upstream(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    """llama-server stops generating when its client disconnects: the proxy must pass the disconnect on."""
    upstream.scripts["abandon"] = Script(content_events(["tok"] * 2000), delay=0.01)
    body = json.dumps({"model": "local", "stream": True, "messages": [{"role": "user", "content": "abandon"}]})
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        seen = b""
        while b"data: " not in seen:  # the stream is running; then the client hangs up
            more = sock.recv(65536)
            assert more
            seen += more
    for _ in range(200):
        if "abandon" in upstream.abandoned:
            break
        time.sleep(0.05)
    assert "abandon" in upstream.abandoned
    assert "abandon" not in upstream.finished
