"""Zero-drop restarts: requests wait for the upstream instead of failing; broken streams end cleanly.

The last test kills and restarts a real llama-server under load and counts failed requests.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import openai
import pytest
from proxy_support import (
    LlamaServer,
    ProxyProcess,
    Script,
    ScriptedUpstream,
    content_events,
    free_port,
    http_get,
    http_post,
    receive,
)


def in_thread(fn, *args):  # type: ignore[no-untyped-def]
    """Run ``fn`` in a thread; the returned dict gets "result" or "error"."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = fn(*args)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    box["thread"] = t
    return box


def wait_for(predicate, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def health(proxy: ProxyProcess) -> dict[str, object]:
    return dict(json.loads(http_get(proxy.url + "/proxy/health")[1]))


def test_new_requests_wait_until_the_upstream_is_back() -> None:
    up = ScriptedUpstream()  # not started yet: nothing listens on its port
    up.scripts["wait"] = Script(content_events(["a\\", "nb"]))
    proxy = ProxyProcess(f"http://127.0.0.1:{up.port}", ("--wait-timeout", "60")).start()
    try:
        assert http_get(proxy.url + "/proxy/health")[0] == 503
        assert health(proxy)["ready"] is False
        pending = [in_thread(receive, proxy.client(), "wait") for _ in range(3)]
        time.sleep(1.0)  # sequencing only: the requests are in the proxy, waiting
        assert all(p["thread"].is_alive() for p in pending)  # type: ignore[attr-defined]
        up.start()
        for p in pending:
            p["thread"].join(60)  # type: ignore[attr-defined]
            assert "error" not in p, p.get("error")
            assert "".join(p["result"].content) == "a\\nb"  # type: ignore[attr-defined]
        assert health(proxy)["ready"] is True
    finally:
        proxy.stop()
        up.stop()


def test_loading_503_answers_are_waited_out() -> None:
    up = ScriptedUpstream(chat_status=503).start()  # /health says 200 but completions say "Loading model"
    up.scripts["loading"] = Script(content_events(["ok"]))
    proxy = ProxyProcess(f"http://127.0.0.1:{up.port}", ("--wait-timeout", "60")).start()
    try:
        pending = in_thread(receive, proxy.client(), "loading")
        wait_for(lambda: len(up.requests) >= 2, "the proxy to retry the 503")
        up.chat_status = None
        pending["thread"].join(60)  # type: ignore[attr-defined]
        assert "error" not in pending, pending.get("error")
        assert "".join(pending["result"].content) == "ok"  # type: ignore[attr-defined]
        assert int(health(proxy)["retried_requests"]) >= 2  # type: ignore[call-overload]
    finally:
        proxy.stop()
        up.stop()


def test_a_request_the_upstream_dropped_is_not_sent_again() -> None:
    """A request that reached the upstream, whose connection then dropped, may be what crashed it: one try only."""
    up = ScriptedUpstream().start()  # /health says 200, but the completion is cut before its first event
    up.scripts["flaky"] = Script(content_events(["never"]), break_after=0)
    up.scripts["plain"] = Script([b'{"never": 1}'], drop=True)  # the connection closes before any answer
    proxy = ProxyProcess(f"http://127.0.0.1:{up.port}", ("--wait-timeout", "30")).start()
    try:
        with pytest.raises(openai.APIError) as err:  # the stream had begun: it ends with the error event
            receive(proxy.client(), "flaky")
        assert "upstream connection lost" in str(err.value)
        status, _, body = http_post(
            proxy.url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "plain"}]}
        )
        assert status == 502 and b"not sent again" in body, body
        assert [r["messages"][-1]["content"] for r in up.requests] == ["flaky", "plain"]  # each one sent once
        assert health(proxy)["retried_requests"] == 0
    finally:
        proxy.stop()
        up.stop()


def test_the_wait_is_bounded() -> None:
    proxy = ProxyProcess(f"http://127.0.0.1:{free_port()}", ("--wait-timeout", "1")).start()
    try:
        with pytest.raises(openai.APIStatusError) as err:
            receive(proxy.client(), "never")
        assert err.value.status_code == 503
        assert "not ready after 1 s" in str(err.value)
    finally:
        proxy.stop()


@dataclass
class Load:
    """Clients sending chat completions through the proxy until told to stop, each outcome recorded."""

    client: openai.OpenAI
    workers: int = 4
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    outcomes: list[dict[str, object]] = field(default_factory=list)

    def ok_count(self, since: float = 0.0) -> int:
        with self.lock:
            return sum(1 for o in self.outcomes if o["ok"] and float(o["start"]) >= since)  # type: ignore[arg-type]

    def one(self, n: int) -> None:
        stream = n % 2 == 0
        start = time.monotonic()
        outcome: dict[str, object] = {"start": start, "stream": stream, "chunks": 0}
        try:
            kw = {"model": "local", "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}
            if stream:
                for c in self.client.chat.completions.create(stream=True, **kw):  # type: ignore[call-overload]
                    outcome["chunks"] = int(outcome["chunks"]) + 1  # type: ignore[call-overload]
                    assert c.object == "chat.completion.chunk"
            else:
                reply = self.client.chat.completions.create(**kw)  # type: ignore[call-overload]
                assert reply.choices[0].message.content is not None
            outcome["ok"] = True
        except Exception as exc:  # noqa: BLE001 - counted and inspected below
            outcome.update(ok=False, error=f"{type(exc).__name__}: {exc}", clean=isinstance(exc, openai.APIError))
        outcome["end"] = time.monotonic()
        with self.lock:
            self.outcomes.append(outcome)

    def run(self) -> list[threading.Thread]:
        def loop(w: int) -> None:
            n = w
            while not self.stop.is_set():
                self.one(n)
                n += 1

        threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in range(self.workers)]
        for t in threads:
            t.start()
        return threads


def test_real_llama_server_killed_and_restarted_under_load(llama_server_bin: Path, smollm2_gguf: Path) -> None:
    """SIGKILL llama-server while clients stream through the proxy, start it again, count what failed."""
    server = LlamaServer(llama_server_bin, smollm2_gguf, extra=("-np", "4")).start()
    proxy = ProxyProcess(server.url, ("--wait-timeout", "240")).start()
    load = Load(proxy.client(timeout=300))
    threads = load.run()
    try:
        wait_for(lambda: load.ok_count() >= 4, "traffic before the kill", 240)
        killed_at = time.monotonic()
        server.kill()
        burst = [threading.Thread(target=load.one, args=(n,), daemon=True) for n in range(6)]
        for t in burst:  # new requests while nothing listens on the upstream port
            t.start()
        time.sleep(1.5)  # sequencing only: let them reach the proxy before the server comes back
        assert health(proxy)["ready"] is False
        threads += burst
        server.start(wait=False)
        server.wait_healthy()
        back_at = time.monotonic()
        wait_for(lambda: load.ok_count(since=back_at) >= 4, "traffic after the restart", 240)
    finally:
        load.stop.set()
        for t in threads:
            t.join(300)
        counters = health(proxy)
        proxy_log = proxy.stop()
        server.stop()
    outcomes = load.outcomes
    failed = [o for o in outcomes if not o["ok"]]
    # a stream that had begun when the server died cannot be replayed; it must end with the proxy's error event
    broken_mid_stream = [o for o in failed if o["stream"] and int(o["chunks"]) > 0]  # type: ignore[call-overload]
    # a request llama-server had when it died is never sent again (it may be what killed it): a clean 502
    in_flight = [o for o in failed if o not in broken_mid_stream and float(o["start"]) < killed_at]  # type: ignore[arg-type]
    dropped = [o for o in failed if o not in broken_mid_stream and o not in in_flight]
    during_outage = [o for o in outcomes if killed_at <= float(o["start"]) < back_at]  # type: ignore[arg-type]
    print(
        f"requests {len(outcomes)}, ok {len(outcomes) - len(failed)}, started during the outage {len(during_outage)}, "
        f"dropped {len(dropped)}, streams broken mid-way {len(broken_mid_stream)}; proxy: retried "
        f"{counters['retried_requests']}, broken streams {counters['broken_streams']}"
    )
    for o in broken_mid_stream + in_flight:
        print("  failed:", o["error"])
    for o in in_flight:
        error = str(o["error"])  # a 502, or a stream's error event when its headers had come before the kill
        assert o["clean"] and ("not sent again" in error or "upstream connection lost mid-stream" in error), o
    assert dropped == [], (dropped, proxy_log)
    assert during_outage and all(o["ok"] for o in during_outage)
    for o in broken_mid_stream:
        assert o["clean"] and "upstream connection lost mid-stream" in str(o["error"]), o
