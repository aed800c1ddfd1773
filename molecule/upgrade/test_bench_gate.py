"""The bench playbook and the upgrade gate on a real test host (opt-in: `make test-gate`, ~25 min on 2 cores cold).

1. site.yml provisions the host at build A (llama-server and llama-bench);
2. playbooks/bench.yml sweeps it (CPU: threads, ubatch/batch, KV, flash attention; two slots with
   llama-batched-bench) within a budget, the records land beside the inventory, `python -m generators bench-report`
   writes the table and the chart from them, and bench/bench_vs_deployed.py prints deployed/best and the ceiling
   fraction from them; the fastest variant written as the tuned file (--min-gain -1: whichever it is) shows in
   `site.yml --check --diff` as exactly the unit flags it changes, and nothing changes on the host;
3. playbooks/upgrade.yml -e rollout_bench=true moves it to build B: the probes pass, the gate re-runs A's stored
   deployed configuration on B and lets it through (B's records are stored by the gate);
4. build A is rebuilt on the host without SIMD (-DGGML_AVX=OFF -DGGML_AVX2=OFF ...: a deliberately slow build that
   answers every probe correctly), and an upgrade back to it with the gate is rolled back by the gate alone: the
   host serves B again.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import testinfra
import yaml
from PIL import Image
from upgradesupport import BUILD_A, BUILD_B, PREFIX, REPO, current, playbook, serving, start_hosts, shared_description

HOST = "lf-gate"
CACHE = "/var/cache/llamafleet"
UNIT = "/home/llama/.config/systemd/user/llamafleet-main.service"
#: the x86 SIMD switches of ggml-cpu (every other object of the build is unchanged, so ccache keeps them)
NO_SIMD = ("-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_AVX_VNNI=OFF", "-DGGML_AVX512=OFF", "-DGGML_FMA=OFF",
           "-DGGML_F16C=OFF", "-DGGML_BMI2=OFF", "-DGGML_SSE42=OFF")


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    spec = shared_description()["llamafleet"]
    spec["llamacpp"]["targets"] = ["llama-server", "llama-bench", "llama-batched-bench"]
    spec["servers"][0]["parallel"] = 2  # two slots: the sweep adds a llama-batched-bench run
    yield from start_hosts([HOST], tmp_path_factory.mktemp("inv"), spec)


def records(inventory) -> list[dict]:
    path = inventory.parent / "bench" / f"{HOST}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def gate_lines(stdout: str) -> list[str]:
    return re.findall(r"main (?:prefill|generation) d\d+: [0-9.]+ t/s on b\d+-cpu vs [0-9.]+ on b\d+-cpu "
                      r"\([-+][0-9.]+ %\)(?: REGRESSION)?", stdout)


def rebuild_without_simd(build: int) -> None:
    """Reconfigure the host's own build tree of ``build`` without SIMD and install the result into its prefix."""
    host = testinfra.get_host(f"podman://{HOST}")
    tree, prefix = f"{CACHE}/build/b{build}-cpu", f"{PREFIX}/b{build}-cpu"
    assert host.file(f"{tree}/CMakeCache.txt").exists, "the llamacpp role keeps its build tree"
    steps = [f"cmake -B {tree} {' '.join(NO_SIMD)}",
             f"cmake --build {tree} --parallel 2 --target llama-server llama-bench",
             f"install -m 0755 {tree}/bin/llama-server {tree}/bin/llama-bench {prefix}/bin/"]
    for step in steps:
        done = host.run(f"env CCACHE_DIR={CACHE}/ccache {step}")
        assert done.rc == 0, (step, done.stderr[-3000:])
    flags = host.run(f"grep -E '^GGML_AVX2:BOOL=' {tree}/CMakeCache.txt").stdout.strip()
    assert flags == "GGML_AVX2:BOOL=OFF", flags


def test_bench_then_an_upgrade_the_gate_passes_then_a_slow_build_it_rolls_back(inventory):
    build_a = ("-e", f"preflight_llamacpp_build={BUILD_A}")
    assert playbook(inventory, "site.yml", *build_a).returncode == 0
    assert current(HOST) == f"{PREFIX}/b{BUILD_A}-cpu"

    swept = playbook(inventory, "playbooks/bench.yml", *build_a, "-e", "bench_budget_s=180")
    assert swept.returncode == 0
    assert "bench plan for lf-gate: budget 180 s" in swept.stdout and "run 1/" in swept.stdout
    mine = [r for r in records(inventory)
            if r["version"] == f"b{BUILD_A}-cpu" and r["ok"] and r["tool"] == "llama-bench"]  # not the slots run
    assert sum(r["deployed"] for r in mine) == 1 and len(mine) >= 3, [r["label"] for r in mine]
    assert {r["flags"]["threads"] for r in mine} >= {1, 2}  # the CPU backend's threads sweep
    assert all(t["avg_ts"] > 0 for r in mine for t in r["tests"])
    serving(HOST)  # the servers were started again and probed

    slots = [r for r in records(inventory) if r["tool"] == "llama-batched-bench" and r["ok"]]
    assert [t["pl"] for t in slots[0]["tests"]] == [1, 2] and all(t["speed_tg"] > 0 for t in slots[0]["tests"])

    report = subprocess.run(
        [sys.executable, "-m", "generators", "bench-report", "--inventory", str(inventory), "--host", HOST],
        capture_output=True, text=True, cwd=REPO, check=False)
    assert report.returncode == 0, report.stderr
    charted = json.loads(Image.open(inventory.parent / "bench" / f"{HOST}.png").text["llamafleet-series"])
    measured = {(r["label"], t["test"], t["n_depth"]): t["avg_ts"] for r in mine for t in r["tests"]}
    plotted = {(s["label"].split(" ", 2)[2], t["test"], t["n_depth"]): t["avg_ts"]
               for s in charted["series"] for t in s["tests"]}
    assert plotted == measured
    ratios = subprocess.run([sys.executable, str(REPO / "bench/bench_vs_deployed.py"), "--records",
                             str(inventory.parent / "bench" / f"{HOST}.jsonl"), "--version", f"b{BUILD_A}-cpu"],
                            capture_output=True, text=True, check=False)
    assert ratios.returncode == 0 and "generation d0: deployed/best = " in ratios.stdout, ratios.stderr
    print(ratios.stdout)
    table = (inventory.parent / "bench" / f"{HOST}.md").read_text()
    assert "### slots (llama-batched-bench, deployed flags)" in table
    print(table)

    tuned = inventory.parent / "tuned" / f"{HOST}.yml"
    written = subprocess.run([sys.executable, "-m", "generators", "bench-report", "--inventory", str(inventory),
                              "--host", HOST, "--write-tuned", "--min-gain", "-1"],
                             capture_output=True, text=True, cwd=REPO, check=False)
    assert written.returncode == 0 and tuned.is_file(), written.stdout + written.stderr
    fields = yaml.safe_load(tuned.read_text())["servers"]["main"]
    flags = {"batch": "--batch-size", "ubatch": "--ubatch-size", "flash_attn": "--flash-attn",
             "cache_type_k": "--cache-type-k", "cache_type_v": "--cache-type-v", "threads": "--threads"}
    unit_before = testinfra.get_host(f"podman://{HOST}").file(UNIT).content_string
    check = playbook(inventory, "site.yml", *build_a, "--check", "--diff")
    assert check.returncode == 0
    added = [line.strip("+ \\") for line in check.stdout.splitlines() if line.startswith("+    --")]
    assert fields and all(f"{flags[k]} {v}" in added for k, v in fields.items()), (fields, added)
    assert testinfra.get_host(f"podman://{HOST}").file(UNIT).content_string == unit_before  # --check changed nothing
    tuned.unlink()  # the rest of the test runs the deployed flags its records were taken with

    gated = ("-e", "rollout_bench=true")
    upgrade = playbook(inventory, "playbooks/upgrade.yml", "-e", f"llamacpp_build={BUILD_B}", *gated)
    lines = gate_lines(upgrade.stdout)
    assert upgrade.returncode == 0, lines
    assert lines and not any("REGRESSION" in line for line in lines)
    assert current(HOST) == f"{PREFIX}/b{BUILD_B}-cpu"

    rebuild_without_simd(BUILD_A)
    slow = playbook(inventory, "playbooks/upgrade.yml", "-e", f"llamacpp_build={BUILD_A}", *gated)
    assert slow.returncode != 0
    lines = gate_lines(slow.stdout)
    assert any("REGRESSION" in line for line in lines), lines
    # the probes on the slow build passed: the task that failed is the gate's judgement
    assert f"host {HOST}: upgrade to b{BUILD_A}-cpu failed (Judge the new build against b{BUILD_B}-cpu:" in slow.stdout
    assert "the bench gate refuses the new build" in slow.stdout
    assert f"rolled back to b{BUILD_B}-cpu" in slow.stdout
    assert current(HOST) == f"{PREFIX}/b{BUILD_B}-cpu"
    serving(HOST)
