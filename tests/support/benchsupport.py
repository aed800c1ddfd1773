"""Shared by the bench tests: a CPU host serving SmolLM2 from this machine, and the recorded llama-bench output."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[1] / "bench" / "fixtures" / "smollm2-cpu-b11434.json"
SMOLLM2 = os.environ.get("LLAMAFLEET_SMOLLM2_GGUF", "")


def cpu_hostvars(model_path: str, **server: Any) -> dict[str, Any]:
    return {"llamafleet": {
        "user": "llama",
        "distro": {"name": "debian", "version": "13"},
        "llamacpp": {"build": 11434, "source": {"path": "/opt/llama.cpp"}, "targets": ["llama-server", "llama-bench"]},
        "models": [{"name": "smollm2", "path": model_path}],
        "servers": [{"name": "main", "model": "smollm2", "ctx": 4096, **server}],
    }}


def fixture_records() -> list[dict[str, Any]]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def module_output(runs: list[dict[str, Any]], bandwidth_gbs: float = 10.0) -> dict[str, Any]:
    """What the host module would return for ``runs``, from the recorded llama-bench JSON: each run gets the
    recorded tests of its configuration (runs whose configuration was not recorded are left out)."""
    recorded = fixture_records()
    results = []
    for run in runs:
        c = run["config"]
        mine = [r for r in recorded if r["n_ubatch"] == c["ubatch"] and r["n_threads"] == c["threads"]
                and r["type_k"] == c["cache_k"] and r["type_v"] == c["cache_v"]
                and bool(r["flash_attn"]) == c["flash_attn"] and r["n_batch"] == c["batch"]]
        if mine:
            results.append({**run, "ok": True, "rc": 0, "records": mine, "seconds": 1.0})
    return {"results": results, "bandwidth": {"gbs": bandwidth_gbs, "method": "recorded"}}
