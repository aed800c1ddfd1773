"""The proxy under abuse: API key before the body, caps (requests, connections, body, headers), idle connections,
hostile request targets, what /proxy/health tells strangers, and pooled upstream connections.

Every test runs the real proxy process and talks to it with real clients (raw sockets where the abuse is below
what an HTTP client library lets one send).
"""

from __future__ import annotations

import json
import re
import resource
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from proxy_support import ProxyProcess, Script, ScriptedUpstream, content_events, http_get, receive

KEY = "sk-test-4f9c1d7e"


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` on a fresh connection and return the answer: read until it is whole (its Content-Length, or
    the end of a chunked body), the proxy closes the connection, or the timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while not _whole(out):
                piece = s.recv(65536)
                if not piece:
                    break
                out += piece
        except TimeoutError:
            pass
    return out


def _whole(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep or head.startswith(b"HTTP/1.1 100 "):
        return False
    length = re.search(rb"\r\ncontent-length: *([0-9]+)", head.lower())
    if length:
        return len(body) >= int(length.group(1))
    return b"\r\ntransfer-encoding: chunked" in head.lower() and body.endswith(b"0\r\n\r\n")


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def json_of(answer: bytes) -> dict[str, object]:
    return dict(json.loads(answer.split(b"\r\n\r\n", 1)[1]))


def chat_request(key: str | None, body: bytes, extra: str = "") -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def chat_doc(name: str, stream: bool = False) -> bytes:
    return json.dumps({"model": "local", "stream": stream, "messages": [{"role": "user", "content": name}]}).encode()


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "api-key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def keyed(upstream: ScriptedUpstream, key_file: Path) -> Iterator[ProxyProcess]:
    p = ProxyProcess(f"http://127.0.0.1:{upstream.port}", ("--api-key-file", str(key_file))).start()
    yield p
    p.stop()


# --- the API key ----------------------------------------------------------------------------------------------


def test_requests_without_the_key_are_refused_before_the_body(upstream: ScriptedUpstream, keyed: ProxyProcess) -> None:
    upstream.scripts["keyed"] = Script(content_events(["fine"]))
    before = len(upstream.requests)
    # headers announce 50 MB that never come: the 401 arrives anyway, and the connection is closed
    head = chat_request(None, b"")
    answer = raw(keyed.port, head.replace(b"Content-Length: 0", b"Content-Length: 50000000"))
    assert status_of(answer) == 401, answer
    assert json_of(answer)["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert b"WWW-Authenticate: Bearer" in answer
    for wrong in ("sk-test-4f9c1d7", KEY + "x", "", KEY.upper()):
        answer = raw(keyed.port, chat_request(wrong or None, chat_doc("keyed")))
        assert status_of(answer) == 401, (wrong, answer)
    assert status_of(raw(keyed.port, chat_request(KEY, chat_doc("keyed")).replace(b"Bearer", b"Basic"))) == 401
    assert len(upstream.requests) == before  # none of them reached the upstream
    with pytest.raises(openai.AuthenticationError):
        receive(keyed.client(), "keyed")  # the client's key is "sk-local"


def test_requests_with_the_key_pass(upstream: ScriptedUpstream, keyed: ProxyProcess) -> None:
    upstream.scripts["keyed"] = Script(content_events(["fine", " indeed"]))
    client = openai.OpenAI(base_url=keyed.url + "/v1", api_key=KEY, max_retries=0)
    assert "".join(receive(client, "keyed").content) == "fine indeed"
    assert status_of(raw(keyed.port, chat_request(KEY, chat_doc("keyed")))) == 200
    assert http_get(keyed.url + "/health")[0] == 200  # the upstream's readiness probe stays open, as upstream
    assert http_get(keyed.url + "/v1/models")[0] == 401


def test_a_key_file_that_cannot_be_read_stops_the_proxy_with_one_line(
    upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path in (tmp_path / "missing", empty):
        proxy = ProxyProcess(f"http://127.0.0.1:{upstream.port}", ("--api-key-file", str(path)))
        with pytest.raises(RuntimeError) as err:
            proxy.start()
        lines = [line for line in str(err.value).removeprefix("proxy exited: ").splitlines() if line.strip()]
        assert len(lines) == 1 and f"--api-key-file {path}" in lines[0], lines
        assert "Traceback" not in str(err.value)


# --- /proxy/health to strangers -------------------------------------------------------------------------------


def test_health_on_a_public_bind_tells_strangers_only_ok(upstream: ScriptedUpstream, key_file: Path) -> None:
    up = f"http://127.0.0.1:{upstream.port}"
    for args in ((), ("--api-key-file", str(key_file))):
        proxy = ProxyProcess(up, args, listen="0.0.0.0").start()
        try:
            status, body = http_get(proxy.url + "/proxy/health")
            assert (status, json.loads(body)) == (200, {"proxy": "ok"})
            answer = raw(
                proxy.port,
                b"GET /proxy/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + KEY.encode()
                + b"\r\nConnection: close\r\n\r\n",
            )
            report = json_of(answer)
            if args:  # the key holder gets the whole report
                assert report["upstream"] == up and report["ready"] is True
            else:  # without a key configured nobody does, beyond loopback
                assert report == {"proxy": "ok"}
        finally:
            proxy.stop()


def test_health_on_loopback_reports_everything(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    report = json.loads(http_get(proxy.url + "/proxy/health")[1])
    assert report["upstream"] == f"http://127.0.0.1:{upstream.port}" and "connection_limit" in report


# --- caps -----------------------------------------------------------------------------------------------------


def test_request_bodies_over_the_limit_get_413(upstream: ScriptedUpstream) -> None:
    upstream.scripts["small"] = Script([b'{"ok": true}'])
    proxy = ProxyProcess(f"http://127.0.0.1:{upstream.port}", ("--max-body", "2000")).start()
    try:
        before = len(upstream.requests)
        big = json.dumps({"messages": [{"role": "user", "content": "x" * 3000}]}).encode()
        assert status_of(raw(proxy.port, chat_request(None, big))) == 413
        announced = chat_request(None, b"").replace(b"Content-Length: 0", b"Content-Length: 1000000000")
        assert status_of(raw(proxy.port, announced)) == 413  # refused on the header, the body never sent
        chunked = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (500, b"y" * 500) for _ in range(6))
            + b"0\r\n\r\n"
        )
        assert status_of(raw(proxy.port, chunked)) == 413  # no length announced: cut when it passes the limit
        assert len(upstream.requests) == before
        assert status_of(raw(proxy.port, chat_request(None, chat_doc("small"), "Connection: close\r\n"))) == 200
    finally:
        log = proxy.stop()
    assert "Traceback" not in log


def test_header_lines_and_counts_over_the_limit_get_400(proxy: ProxyProcess) -> None:
    long_line = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n"
    assert status_of(raw(proxy.port, long_line)) in (400, 431)
    long_target = b"GET /v1/models?" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert status_of(raw(proxy.port, long_target)) in (400, 414)
    many = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(300)) + b"\r\n"
    assert status_of(raw(proxy.port, many)) in (400, 431)
    assert http_get(proxy.url + "/v1/models")[0] == 200


def test_requests_beyond_the_concurrency_cap_get_503(upstream: ScriptedUpstream) -> None:
    proxy = ProxyProcess(f"http://127.0.0.1:{upstream.port}", ("--max-concurrent", "2")).start()
    release = threading.Event()
    try:
        for name in ("hold1", "hold2"):  # two slow streams, 40 events 0.1 s apart
            upstream.scripts[name] = Script(content_events(["x"] * 40), delay=0.1)
        upstream.scripts["quick"] = Script(content_events(["q"]))
        socks = []
        for name in ("hold1", "hold2"):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
            s.sendall(chat_request(None, chat_doc(name, stream=True)))
            assert s.recv(100).startswith(b"HTTP/1.1 200"), name  # its stream has begun: in flight
            socks.append(s)
        answer = raw(proxy.port, chat_request(None, chat_doc("quick", stream=True)))
        assert status_of(answer) == 503 and b"Retry-After: 1" in answer
        assert b"requests in flight, the limit is 2" in answer
        health = json.loads(http_get(proxy.url + "/proxy/health")[1])  # health is not a request in flight
        assert health["active_requests"] == 2
        for s in socks:
            s.close()  # the clients go away: their slots free up
        release.set()
        for _ in range(200):
            if json.loads(http_get(proxy.url + "/proxy/health")[1])["active_requests"] == 0:
                break
            threading.Event().wait(0.05)
        assert "".join(receive(proxy.client(), "quick").content) == "q"
    finally:
        proxy.stop()


def test_connections_beyond_the_cap_close_idle_ones_or_are_refused(upstream: ScriptedUpstream) -> None:
    proxy = ProxyProcess(
        f"http://127.0.0.1:{upstream.port}", ("--max-connections", "3", "--idle-timeout", "300")
    ).start()
    try:
        idle = [socket.create_connection(("127.0.0.1", proxy.port), timeout=30) for _ in range(3)]
        # a fourth client is served: the longest-idle connection makes room
        assert http_get(proxy.url + "/v1/models")[0] == 200
        assert idle[0].recv(10) == b""  # the first idle one was closed
        for s in idle:
            s.close()
        upstream.scripts["busy"] = Script(content_events(["b"] * 50), delay=0.1)
        busy = []
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
            s.sendall(chat_request(None, chat_doc("busy", stream=True)))
            assert s.recv(100).startswith(b"HTTP/1.1 200")
            busy.append(s)
        refused = raw(proxy.port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")  # every one busy: refused
        assert status_of(refused) == 503 and b"too many open connections" in refused
        for s in busy:
            s.close()
    finally:
        log = proxy.stop()
    assert "Traceback" not in log


def test_a_thousand_idle_connections_do_not_exhaust_the_proxy(upstream: ScriptedUpstream) -> None:
    """1100 connections that send nothing against a proxy whose open-file limit is 1024 (the default a unit
    without LimitNOFILE gets): new clients are still served, /proxy/health still answers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1400:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    upstream.scripts["after"] = Script(content_events(["still", " here"]))
    proxy = ProxyProcess(f"http://127.0.0.1:{upstream.port}", ("--idle-timeout", "300"), nofile=1024).start()
    idle: list[socket.socket] = []
    try:
        for _ in range(1100):
            idle.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=30))
        assert "".join(receive(proxy.client(), "after").content) == "still here"
        status, body = http_get(proxy.url + "/proxy/health")
        report = json.loads(body)
        assert status == 200 and report["connections"] <= report["connection_limit"] < 1024
        assert http_get(proxy.url + "/v1/models")[0] == 200
    finally:
        for s in idle:
            s.close()
        log = proxy.stop()
    assert "Too many open files" not in log and "Traceback" not in log


def test_idle_connections_are_closed(proxy: ProxyProcess, upstream: ScriptedUpstream) -> None:
    quick = ProxyProcess(f"http://127.0.0.1:{upstream.port}", ("--idle-timeout", "1")).start()
    try:
        with socket.create_connection(("127.0.0.1", quick.port), timeout=30) as silent:
            assert silent.recv(10) == b""  # never sent a byte: closed
        with socket.create_connection(("127.0.0.1", quick.port), timeout=30) as slow:
            slow.sendall(b"GET /v1/models HTTP/1.1\r\nHost:")  # half a request, never finished
            assert slow.recv(10) == b""
        with socket.create_connection(("127.0.0.1", quick.port), timeout=30) as kept:
            kept.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b'"owned_by":"llamacpp"}]}' not in answer:
                answer += kept.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200")
            assert kept.recv(10) == b""  # idle after its answer: closed
    finally:
        quick.stop()


# --- request targets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"GET http://example.com/v1/models HTTP/1.1",
        b"GET http://127.0.0.1:1/health HTTP/1.1",
        b"OPTIONS * HTTP/1.1",
        b"CONNECT example.com:443 HTTP/1.1",
    ],
)
def test_targets_that_are_not_paths_get_400(upstream: ScriptedUpstream, line: bytes) -> None:
    proxy = ProxyProcess(f"http://127.0.0.1:{upstream.port}").start()
    try:
        answer = raw(proxy.port, line + b"\r\nHost: example.com\r\n\r\n")
        assert status_of(answer) == 400, answer
        assert http_get(proxy.url + "/proxy/health")[0] == 200
    finally:
        log = proxy.stop()
    assert "Traceback" not in log and "Error handling request" not in log, log


# --- pooled upstream connections ------------------------------------------------------------------------------


def test_sequential_requests_share_an_upstream_connection(upstream: ScriptedUpstream, proxy: ProxyProcess) -> None:
    upstream.peers.clear()
    for i in range(10):
        assert http_get(proxy.url + f"/echo/{i}")[0] == 200
    assert len(upstream.peers) == 10
    assert len(set(upstream.peers)) < 10, upstream.peers  # reused, not one fresh connection per request


def test_a_client_waiting_for_100_continue_is_refused_before_it_sends_the_body(
    upstream: ScriptedUpstream, keyed: ProxyProcess
) -> None:
    head = chat_request(None, b"", "Expect: 100-continue\r\n").replace(b"Content-Length: 0", b"Content-Length: 9000000")
    answer = raw(keyed.port, head)
    assert status_of(answer) == 401 and b"100 Continue" not in answer, answer
    with socket.create_connection(("127.0.0.1", keyed.port), timeout=10) as s:  # with the key: go ahead
        body = chat_doc("keyed")
        s.sendall(
            chat_request(KEY, b"", "Expect: 100-continue\r\n").replace(
                b"Content-Length: 0", b"Content-Length: %d" % len(body)
            )
        )
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        assert s.recv(100).startswith(b"HTTP/1.1 200")
