"""The bench host module against the real llama-bench (b11434) and SmolLM2: a two-configuration sweep run as
Ansible runs a module, its records kept, then the report CLI's table and chart hold exactly the measured numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from benchsupport import cpu_hostvars
from hostsupport import ROOT, run_cli
from PIL import Image

from generators import bench
from generators.plan.bench import HostSweep

MODULE = ROOT / "roles" / "bench" / "library" / "llamafleet_bench.py"


@pytest.fixture(scope="module")
def llama_bench() -> str:
    path = os.environ.get("LLAMAFLEET_LLAMA_BENCH")
    if not path:
        pytest.fail("set LLAMAFLEET_LLAMA_BENCH to a llama-bench binary (eval \"$(cat /tmp/host-llama.env)\")")
    return path


def run_module(args: dict, tmp_path: Path) -> dict:
    """The module as Ansible runs it: a fresh interpreter reading ANSIBLE_MODULE_ARGS from a file."""
    argfile = tmp_path / "args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run([sys.executable, str(MODULE), str(argfile)], capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.stdout, done.stderr
    return json.loads(done.stdout)


def test_a_real_two_configuration_sweep_ends_in_the_report(llama_bench: str, smollm2_gguf: Path,
                                                           tmp_path: Path) -> None:
    hostvars = cpu_hostvars(str(smollm2_gguf))
    plan, sweep = bench.plan_sweep("cpubox", hostvars, cores=2)
    server = sweep.sweeps[0]
    one_thread = next(c for c in server.configs if c.threads == 1)
    small = replace(server, configs=(server.configs[0], one_thread), n_prompt=32, n_gen=8, repetitions=1,
                    depths=(0, 128))
    runs = HostSweep("cpubox", sweep.budget_s, (small,), ()).runs()
    for run in runs:
        run["binary"] = llama_bench  # the plan names the host's prefix; here the real binary of this machine
    log = tmp_path / "bench.log"
    out = run_module({"runs": runs, "log": str(log), "bandwidth_mib": 64, "bandwidth_rounds": 3}, tmp_path)
    assert not out.get("failed"), out
    assert out["failed_runs"] == [] and len(out["results"]) == 2
    assert out["bandwidth"]["gbs"] > 0
    text = log.read_text()
    assert "llamafleet-bench: run 2/2" in text and "llama-bench: benchmark" in text  # progress for the play

    records = bench.records_from_results(plan, out)
    assert [r["deployed"] for r in records] == [True, False]
    for r in records:
        assert r["key"]["build"] == 11434 and r["key"]["quantization"] == "Q4_1"
        assert {(t["test"], t["n_depth"]) for t in r["tests"]} == {("pp", 0), ("tg", 0), ("pp", 128), ("tg", 128)}
        assert all(t["avg_ts"] > 0 for t in r["tests"])
        assert all(0 < t["fraction_of_ceiling"] for t in r["tests"] if t["test"] == "tg")

    inv = tmp_path / "inv"
    (inv / "host_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  hosts:\n    cpubox: {ansible_connection: local}\n")
    (inv / "host_vars" / "cpubox.yml").write_text(yaml.safe_dump(hostvars))
    bench.append_records(bench.records_path(inv, "cpubox"), records)
    done = run_cli("bench-report", "--inventory", str(inv), "--host", "cpubox")
    assert done.returncode == 0, done.stderr

    png = inv / "bench" / "cpubox.png"
    series = json.loads(Image.open(png).text["llamafleet-series"])["series"]
    measured = {(r["label"], t["test"], t["n_depth"]): t["avg_ts"] for r in records for t in r["tests"]}
    charted = {(s["label"].split(" ", 2)[2], t["test"], t["n_depth"]): t["avg_ts"] for s in series for t in s["tests"]}
    assert charted == measured
    table = (inv / "bench" / "cpubox.md").read_text()
    for r in records:
        row = next(line for line in table.splitlines() if f"| {r['label']}" in line)
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3:7] == [f"{bench.speed(r, t, d):.2f}" for t in ("pp", "tg") for d in (0, 128)]


def test_a_real_slots_run_with_llama_batched_bench_ends_in_the_report(llama_bench: str, smollm2_gguf: Path,
                                                                      tmp_path: Path) -> None:
    batched_bench = os.environ.get("LLAMAFLEET_LLAMA_BATCHED_BENCH")
    if not batched_bench:
        pytest.fail("set LLAMAFLEET_LLAMA_BATCHED_BENCH (eval \"$(bash .ci/host-llama.sh)\")")
    hostvars = cpu_hostvars(str(smollm2_gguf), ctx=4096, parallel=2)
    hostvars["llamafleet"]["llamacpp"]["targets"] = ["llama-server", "llama-bench", "llama-batched-bench"]
    plan, sweep = bench.plan_sweep("cpubox", hostvars, cores=2)
    server = replace(sweep.sweeps[0], configs=sweep.sweeps[0].configs[:1], n_prompt=32, n_gen=8, repetitions=1,
                     depths=(0,))
    runs = HostSweep("cpubox", sweep.budget_s, (server,), ()).runs()
    assert [r.get("tool") for r in runs] == [None, "llama-batched-bench"]
    runs[0]["binary"], runs[1]["binary"] = llama_bench, batched_bench
    out = run_module({"runs": runs, "log": str(tmp_path / "bench.log"), "bandwidth_mib": 0}, tmp_path)
    assert out["failed_runs"] == [], out
    lines = out["results"][1]["records"]
    assert [r["pl"] for r in lines] == [1, 2]
    assert all(r["speed_tg"] > 0 and r["pp"] == 128 and r["tg"] == 32 for r in lines)
    assert lines[1]["n_kv"] == 2 * (128 + 32)  # both sequences were really decoded side by side

    records = bench.records_from_results(plan, out)
    slots = next(r for r in records if r["tool"] == "llama-batched-bench")
    assert slots["key"] == next(r for r in records if r["tool"] == "llama-bench")["key"]
    assert [t["speed_tg"] for t in slots["tests"]] == [r["speed_tg"] for r in lines]
    table = bench.markdown("cpubox", records)
    assert "### slots (llama-batched-bench, deployed flags)" in table
    row = next(line for line in table.splitlines() if line.startswith("| b11434-cpu | main | 2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == f"{lines[1]['speed_tg']:.2f}" and cells[6] == f"{lines[1]['speed_tg'] / lines[0]['speed_tg']:.2f}x"
    # the slots run is not a configuration: the report's flag rows and the tuned choice never see it
    assert [r["label"] for r in bench.latest(records)] == [runs[0]["label"]]
