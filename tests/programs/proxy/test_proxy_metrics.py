"""The proxy's own counters at ``/proxy/metrics`` (issue 17 item 5), read as Prometheus reads them.

Each test runs a fresh proxy process in front of the scripted upstream, makes it stream, repair, hold, refuse and
cut, and reads the counters back through prometheus_client's text parser (what a scrape would see).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from proxy_support import ProxyProcess, Script, ScriptedUpstream, content_events, http_get, receive, tool_call_events

KEY = "sk-metrics-test-7b1e0c"
# a tool call's arguments, split between the backslash and the "n" of an escape: the proxy must re-chunk it
HOSTILE = '{"path": "f.txt", "content": "a\\nb"}'
SPLIT = HOSTILE.index("\\") + 1


def scrape(url: str, key: str | None = None) -> dict[str, float]:
    """``name{labels}`` -> value, from the proxy's text page parsed by prometheus_client."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with urllib.request.urlopen(urllib.request.Request(url + "/proxy/metrics", headers=headers), timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


@pytest.fixture
def fresh(upstream: ScriptedUpstream) -> Iterator[ProxyProcess]:
    upstream.health = 200
    p = ProxyProcess(f"http://127.0.0.1:{upstream.port}").start()
    yield p
    p.stop()


def test_a_fresh_proxy_counts_nothing(fresh: ProxyProcess) -> None:
    got = scrape(fresh.url)
    assert got["llamafleet_proxy_streams_total"] == 0
    assert got["llamafleet_proxy_requests_total"] == 0
    assert got['llamafleet_proxy_errors_total{kind="broken_stream"}'] == 0
    assert got["llamafleet_proxy_upstream_ready"] == 1


def test_streams_repairs_and_connects_are_counted(upstream: ScriptedUpstream, fresh: ProxyProcess) -> None:
    upstream.scripts["metrics-plain"] = Script(content_events(["hello", " world"]))
    upstream.scripts["metrics-split"] = Script(tool_call_events([HOSTILE[:SPLIT], HOSTILE[SPLIT:]]))
    client = fresh.client()
    assert "".join(receive(client, "metrics-plain").content) == "hello world"
    got = receive(client, "metrics-split")
    assert json.loads(got.args()) == json.loads(HOSTILE)
    assert http_get(fresh.url + "/v1/models")[0] == 200  # a plain request: forwarded, not a stream
    after = scrape(fresh.url)
    assert after["llamafleet_proxy_requests_total"] == 3
    assert after["llamafleet_proxy_streams_total"] == 2
    assert after["llamafleet_proxy_repaired_streams_total"] == 1  # the split escape, not the plain text
    assert after["llamafleet_proxy_repaired_events_total"] >= 1
    assert after["llamafleet_proxy_upstream_connects_total"] >= 1
    assert after["llamafleet_proxy_upstream_connect_failures_total"] == 0


def test_a_broken_stream_is_an_error(upstream: ScriptedUpstream, fresh: ProxyProcess) -> None:
    upstream.scripts["metrics-broken"] = Script(content_events(["a", "b", "c", "d"]), break_after=2)
    body = json.dumps({"model": "local", "stream": True, "messages": [{"role": "user", "content": "metrics-broken"}]})
    req = urllib.request.Request(fresh.url + "/v1/chat/completions", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert b'"upstream_error"' in resp.read()  # the stream ends with the proxy's error event
    got = scrape(fresh.url)
    assert got['llamafleet_proxy_errors_total{kind="broken_stream"}'] == 1
    assert got['llamafleet_proxy_errors_total{kind="unavailable"}'] == 0


def test_a_request_arriving_while_the_upstream_is_down_is_held(upstream: ScriptedUpstream, fresh: ProxyProcess) -> None:
    upstream.scripts["metrics-held"] = Script(content_events(["after the restart"]))
    upstream.health = 503
    for _ in range(200):  # the monitor polls every 0.5 s
        if http_get(fresh.url + "/proxy/health")[0] == 503:
            break
        time.sleep(0.05)
    assert scrape(fresh.url)["llamafleet_proxy_upstream_ready"] == 0
    answers: list[str] = []
    waiting = threading.Thread(target=lambda: answers.append("".join(receive(fresh.client(), "metrics-held").content)))
    waiting.start()
    for _ in range(200):
        if scrape(fresh.url)["llamafleet_proxy_active_requests"] == 1:
            break
        time.sleep(0.05)
    upstream.health = 200
    waiting.join(30)
    assert answers == ["after the restart"]
    got = scrape(fresh.url)
    assert got["llamafleet_proxy_held_requests_total"] == 1
    assert got["llamafleet_proxy_upstream_ready"] == 1


def test_with_a_key_the_metrics_need_it(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    p = ProxyProcess(f"http://127.0.0.1:{upstream.port}", ("--api-key-file", str(key_file))).start()
    try:
        status, body = http_get(p.url + "/proxy/metrics")
        assert status == 401 and b"llamafleet_proxy" not in body
        assert http_get(p.url + "/v1/models")[0] == 401
        got = scrape(p.url, KEY)
        assert got['llamafleet_proxy_errors_total{kind="unauthorized"}'] == 2
        assert got["llamafleet_proxy_requests_total"] == 0  # refused ones never reach the upstream
    finally:
        p.stop()
