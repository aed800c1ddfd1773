"""The fleet_status role's filter plugin: which hosts are read, unreachable or failed, from the play's hostvars."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[2] / "roles/fleet_status/filter_plugins/llamafleet_status.py"
FIXTURES = Path(__file__).parent / "fixtures" / "b11434"


def load():
    spec = importlib.util.spec_from_file_location("llamafleet_status_filter", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = load()
MANIFEST = {"engine": "llamacpp", "llamacpp": {"backend": "cpu", "version": "b11434-cpu"}, "sse_proxy": None,
            "servers": [{"name": "main", "model": "smollm2", "served_model": "local"}]}


def reading() -> dict:
    ok = {"status": 200, "error": None}
    endpoints = {name: {**ok, "body": (FIXTURES / file).read_text()} for name, file in (
        ("health", "health.json"), ("models", "models.json"), ("props", "props.json"), ("slots", "slots.json"),
        ("metrics", "metrics.txt"))}
    builds = {"current": "/c", "target": "/p/b11434-cpu", "error": None,
              "entries": [{"name": "b11434-cpu", "mtime": 1}]}
    return {"version": 1, "builds": builds, "servers": [{"name": "main", "key_error": None, "endpoints": endpoints}],
            "proxy": None}


def test_read_unreachable_failed_and_ollama_hosts() -> None:
    hostvars = {
        "read": {"fleet_status_raw": reading(), "preflight_rendered": {"manifest": MANIFEST}},
        "away": {"fleet_status_unreachable": "Failed to connect to the host via ssh: timed out"},
        "broke": {"preflight_rendered": {"manifest": MANIFEST}},  # dropped out of the play before the reading
        "oll": {"fleet_status_raw": {"servers": []}, "preflight_rendered": {"manifest": {"engine": "ollama"}}},
    }
    records = plugin.llamafleet_fleet_status(list(hostvars), hostvars, ["read", "away", "oll"])
    got = {r["host"]: (r["status"], r["problems"]) for r in records}
    assert got == {
        "read": ("ok", []),
        "away": ("unreachable", ["Failed to connect to the host via ssh: timed out"]),
        "broke": ("failed", ["a task failed on this host before it could be read (see above)"]),
        "oll": ("ollama", []),
    }
    text = plugin.llamafleet_status_table(records)
    assert [line.split()[:2] for line in text.splitlines()[1:5]] == [
        ["read", "ok"], ["away", "unreachable"], ["broke", "failed"], ["oll", "ollama"]]
    json.dumps(records)
