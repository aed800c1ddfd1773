"""generators/status.py against answers recorded from the real llama-server b11434 (fixtures/b11434).

The fixtures were recorded from SmolLM2-135M served with ``--ctx-size 2048 --parallel 2 --metrics`` after three
chat completions (metrics.txt, slots.json), and during a fourth, generating 600 tokens (metrics-busy.txt,
slots-busy.json): ``tests/status/record_fixtures.py`` records them again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hostsupport import run_cli

from generators.status import builds_status, health_of, host_status, parse_metrics, proxy_status, table

FIXTURES = Path(__file__).parent / "fixtures" / "b11434"
MANIFEST = {
    "engine": "llamacpp",
    "llamacpp": {"backend": "cpu", "version": "b11434-cpu"},
    "servers": [{"name": "main", "unit": "llamafleet-main.service", "model": "smollm2", "served_model": "local",
                 "device": None, "expected_device": None}],
    "sse_proxy": None,
}
BUILDS = {"current": "/opt/llamafleet/llama.cpp/current", "target": "/opt/llamafleet/llama.cpp/b11434-cpu",
          "error": None, "entries": [{"name": "b11434-cpu", "mtime": 3.0}, {"name": "b11434-vulkan", "mtime": 2.5},
                                     {"name": "b11000-cpu", "mtime": 2.0}, {"name": "b10405-cpu", "mtime": 1.0}]}


def recorded(name: str, file: str = "metrics.txt") -> float:
    """A sample's value read from the fixture line by line (not through the parser under test)."""
    [line] = [ln for ln in (FIXTURES / file).read_text().splitlines() if ln.startswith(name + " ")]
    return float(line.split()[1])


def ok(name: str) -> dict[str, Any]:
    return {"status": 200, "body": (FIXTURES / name).read_text(), "error": None}


def raw(metrics_file: str = "metrics.txt", slots_file: str = "slots.json", **replace: dict[str, Any]) -> dict[str, Any]:
    endpoints = {"health": ok("health.json"), "models": ok("models.json"), "props": ok("props.json"),
                 "slots": ok(slots_file), "metrics": ok(metrics_file), **replace}
    return {"version": 1, "builds": BUILDS, "servers": [{"name": "main", "key_error": None, "endpoints": endpoints}],
            "proxy": None}


def test_the_recorded_metrics_parse_with_prometheus_client() -> None:
    metrics = parse_metrics((FIXTURES / "metrics.txt").read_text())
    assert metrics["llamacpp:tokens_predicted_total"] == recorded("llamacpp:tokens_predicted_total") > 0
    assert metrics["llamacpp:predicted_tokens_seconds"] == recorded("llamacpp:predicted_tokens_seconds") > 0
    assert metrics["llamacpp:requests_processing"] == 0
    assert len(metrics) == len([ln for ln in (FIXTURES / "metrics.txt").read_text().splitlines() if ln[:1] != "#"])
    assert "llamacpp:kv_cache_usage_ratio" not in metrics  # gone by b11434: no KV usage in /metrics


def test_a_page_that_is_not_prometheus_text_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_metrics("llamacpp:x{oops 1\n")


def test_an_idle_server_after_three_requests() -> None:
    record = host_status("ws1", raw(), MANIFEST)
    assert record["status"] == "ok" and record["problems"] == []
    assert record["build"] == {"running": "b11434-cpu", "previous": "b11000-cpu", "expected": "b11434-cpu",
                               "matches": True, "problems": []}
    [server] = record["servers"]
    assert server["models"] == ["local"] and server["build_info"] == "b11434-unknown"
    assert (server["n_ctx_slot"], server["slots"], server["slots_busy"]) == (1024, 2, 0)
    assert server["tokens_per_s"] == recorded("llamacpp:predicted_tokens_seconds")
    assert server["prompt_tokens_per_s"] == recorded("llamacpp:prompt_tokens_seconds")
    tokens, seconds = recorded("llamacpp:tokens_predicted_total"), recorded("llamacpp:tokens_predicted_seconds_total")
    assert server["avg_tokens_per_s"] == pytest.approx(tokens / seconds, abs=0.01)
    prompt, prompt_s = recorded("llamacpp:prompt_tokens_total"), recorded("llamacpp:prompt_seconds_total")
    assert server["avg_prompt_tokens_per_s"] == pytest.approx(prompt / prompt_s, abs=0.01)


def test_a_server_generating_has_a_busy_slot() -> None:
    [server] = host_status("ws1", raw("metrics-busy.txt", "slots-busy.json"), MANIFEST)["servers"]
    assert (server["slots_busy"], server["slots"]) == (1, 2)
    assert server["requests_processing"] == 1
    assert server["tokens_per_s"] == 0  # the gauge covers the time since the previous read: nothing finished


def test_a_loading_server_and_one_without_metrics_are_degraded() -> None:
    loading = {"status": 503, "body": '{"error":{"code":503,"message":"Loading model"}}', "error": None}
    record = host_status("ws1", raw(health=loading, metrics={"status": 501, "body": "", "error": None}), MANIFEST)
    assert record["status"] == "degraded"
    [server] = record["servers"]
    assert server["health"] == "loading"
    assert server["problems"] == ["health: loading", "metrics: HTTP 501"]
    assert server["tokens_per_s"] is None and server["n_ctx_slot"] == 1024  # /slots still answered


def test_nothing_listening_is_down_with_the_error() -> None:
    refused = {"status": None, "body": "", "error": "ConnectionRefusedError: [Errno 111] Connection refused"}
    endpoints = dict.fromkeys(("health", "models", "props", "slots", "metrics"), refused)
    reading = {**raw(), "servers": [{"name": "main", "key_error": None, "endpoints": endpoints}]}
    record = host_status("ws1", reading, MANIFEST)
    assert record["status"] == "down"
    assert record["servers"][0]["problems"][:2] == ["health: down", f"models: {refused['error']}"]


def test_an_unreachable_host_keeps_its_reason() -> None:
    record = host_status("ws2", None, None, "unreachable: ssh: connect to host ws2 port 22: No route to host")
    assert record["status"] == "unreachable"
    assert record["problems"] == ["ssh: connect to host ws2 port 22: No route to host"]
    assert table([record]).splitlines()[1].split()[:3] == ["ws2", "unreachable", "-"]


def test_a_build_other_than_the_inventory_is_degraded() -> None:
    got = builds_status({**BUILDS, "target": "/opt/llamafleet/llama.cpp/b11000-cpu"}, "b11434-cpu")
    assert (got["running"], got["previous"], got["matches"]) == ("b11000-cpu", "b11434-cpu", False)
    reading = {**raw(), "builds": {**BUILDS, "target": "/opt/llamafleet/llama.cpp/b11000-cpu"}}
    record = host_status("ws1", reading, MANIFEST)
    assert record["status"] == "degraded"
    assert record["problems"] == ["running b11000-cpu, the inventory says b11434-cpu"]


def test_the_proxy_counters() -> None:
    text = "\n".join([
        "# TYPE llamafleet_proxy_streams_total counter", "llamafleet_proxy_streams_total 5",
        "# TYPE llamafleet_proxy_repaired_streams_total counter", "llamafleet_proxy_repaired_streams_total 2",
        "# TYPE llamafleet_proxy_held_requests_total counter", "llamafleet_proxy_held_requests_total 1",
        "# TYPE llamafleet_proxy_errors_total counter", 'llamafleet_proxy_errors_total{kind="broken_stream"} 1',
        'llamafleet_proxy_errors_total{kind="unavailable"} 2', "",
    ])
    got = proxy_status({"key_error": None, "health": ok("health.json"),
                        "metrics": {"status": 200, "body": text, "error": None}})
    assert got is not None and got["health"] == "ok" and got["problems"] == []
    assert got["counters"]["streams"] == 5 and got["counters"]["repaired_streams"] == 2
    assert got["counters"]["held_requests"] == 1 and got["counters"]["errors"] == 3
    assert got["counters"]["upstream_connects"] is None  # not in that page: not invented


def test_the_table_has_one_row_per_server_and_the_problems_below() -> None:
    second = {**MANIFEST["servers"][0], "name": "fim"}
    reading = raw()
    reading["servers"].append({"name": "fim", "key_error": "api key file /k: PermissionError: Permission denied",
                               "endpoints": {**reading["servers"][0]["endpoints"],
                                             "metrics": {"status": 401, "body": "", "error": None}}})
    record = host_status("ws1", reading, {**MANIFEST, "servers": [MANIFEST["servers"][0], second]})
    lines = table([record]).splitlines()
    assert lines[0].split()[:3] == ["HOST", "STATUS", "BUILD"]
    assert lines[1].split()[:9] == ["ws1", "ok", "b11434-cpu", "b11000-cpu", "cpu", "main", "cpu", "ok", "local"]
    assert lines[2].split()[:3] == ["fim", "cpu", "ok"]  # host columns only on the host's first row
    assert lines[3:] == ["ws1/fim: api key file /k: PermissionError: Permission denied", "ws1/fim: metrics: HTTP 401"]
    json.dumps(record)  # plain JSON data


def test_a_router_lists_its_loaded_models_apart() -> None:
    listing = {"object": "list", "data": [{"id": "smollm2", "status": {"value": "loaded", "args": []}},
                                          {"id": "tiny", "status": {"value": "unloaded", "args": []}}]}
    reading = raw(models={"status": 200, "body": json.dumps(listing), "error": None})
    record = host_status("ws1", reading, MANIFEST)
    [server] = record["servers"]
    assert server["models"] == ["smollm2", "tiny"] and server["loaded_models"] == ["smollm2"]
    assert server["model_states"] == {"smollm2": "loaded", "tiny": "unloaded"}
    assert "smollm2 (+1 unloaded)" in table([record])


def test_health_words() -> None:
    assert [health_of(a) for a in (None, {"status": None}, {"status": 200}, {"status": 503}, {"status": 404})] == [
        "down", "down", "ok", "loading", "http 404"]


def test_the_cli_prints_saved_records(tmp_path: Path) -> None:
    records = [host_status("ws1", raw(), MANIFEST), host_status("ws2", None, None, "unreachable: no route")]
    saved = tmp_path / "fleet.json"
    saved.write_text(json.dumps(records))
    shown = run_cli("status", "--from-json", str(saved))
    assert shown.returncode == 0 and shown.stdout == table(records)
    as_json = run_cli("status", "--from-json", str(saved), "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == records
    usage = run_cli("status")
    assert usage.returncode == 2 and "give --inventory (or --from-json)" in usage.stderr
