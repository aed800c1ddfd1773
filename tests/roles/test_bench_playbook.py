"""playbooks/bench.yml and the bench role on this machine, over the local connection.

- ``--check``: the first three plays and the bench role's plan: the budget and the sweep are shown, trimmed to
  ``-e bench_budget_s``, and nothing runs or is written (no servers stopped, no records);
- the role's sweep and store steps for real (``tasks_from: sweep.yml`` then ``store.yml``): the host module runs a
  two-configuration sweep with the real llama-bench in the background, the play prints its progress, and the
  records are appended on the controller.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from benchsupport import cpu_hostvars
from hostsupport import ANSIBLE_PLAYBOOK, ROOT, ansible_env

from generators import bench
from generators.plan.bench import HostSweep

LOGIN_USER = "cloudsdk"  # a login account of this machine (uid >= UID_MIN): the service user of the --check run


def smollm2() -> str:
    path = os.environ.get("LLAMAFLEET_SMOLLM2_GGUF")
    if not path:
        pytest.fail("set LLAMAFLEET_SMOLLM2_GGUF (eval \"$(cat /tmp/host-llama.env)\")")
    return path


def inventory(tmp_path: Path, description: dict) -> Path:
    hosts = {"all": {"hosts": {"here": {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3",
                                        "ansible_become_method": "su", "llamafleet": description}}}}
    path = tmp_path / "inv" / "hosts.yml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(hosts))
    return path


def test_check_mode_shows_the_budget_and_the_sweep_and_changes_nothing(tmp_path: Path) -> None:
    description = {**cpu_hostvars(smollm2())["llamafleet"], "user": LOGIN_USER}
    description.pop("distro")  # the probe detects it
    description["llamacpp"] = {**description["llamacpp"], "source": {"pypi": {}}}
    inv = inventory(tmp_path, description)
    done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inv), str(ROOT / "playbooks" / "bench.yml"), "--check",
                           "-e", "bench_budget_s=60"], capture_output=True, text=True, env=ansible_env(), cwd=ROOT,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "bench plan for here: budget 60 s, estimate" in done.stdout
    assert "deployed ub512/b2048 fa kv f16/f16" in done.stdout
    assert "trimmed: b11434-cpu main:" in done.stdout  # the full sweep does not fit 60 s
    assert "TASK [bench : Stop each server for the sweep]" in done.stdout
    assert "skipping: [here] => (item=llamafleet-main.service)" in done.stdout
    assert not (inv.parent / "bench").exists()


@pytest.fixture
def llama_bench() -> str:
    path = os.environ.get("LLAMAFLEET_LLAMA_BENCH")
    if not path:
        pytest.fail("set LLAMAFLEET_LLAMA_BENCH (eval \"$(cat /tmp/host-llama.env)\")")
    return path


def test_the_sweep_runs_in_the_background_with_progress_and_the_records_are_appended(
        tmp_path: Path, llama_bench: str) -> None:
    hostvars = cpu_hostvars(smollm2())
    _, sweep = bench.plan_sweep("here", hostvars, cores=2)
    s = sweep.sweeps[0]
    small = replace(s, configs=s.configs[:2], n_prompt=16, n_gen=4, repetitions=1, depths=(0, 64))
    runs = HostSweep("here", 60, (small,), ()).runs()
    for run in runs:
        run["binary"] = llama_bench
    inv = inventory(tmp_path, hostvars["llamafleet"])
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "all", "gather_facts": False,
        "vars": {"service_user_account": {"name": "root", "home": str(tmp_path / "home"), "runtime_dir": "/run/user/0"},
                 "__bench_plan": {"sweep": {"runs": runs, "estimate_s": 60}},
                 "__bench_bandwidth": {"bandwidth": {"gbs": 10.0, "method": "test"}},
                 "bench_budget_s": 60, "bench_poll": 5},
        "tasks": [
            {"ansible.builtin.file": {"path": str(tmp_path / "home" / ".cache/llamafleet/bench"), "state": "directory",
                                      "mode": "0755"}},
            {"ansible.builtin.include_role": {"name": "bench", "tasks_from": "sweep.yml"}},
            {"ansible.builtin.include_role": {"name": "bench", "tasks_from": "store.yml"}},
        ]}]))
    done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inv), str(play)], capture_output=True, text=True,
                          env=ansible_env(), cwd=ROOT, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "TASK [bench : Print the progress]" in done.stdout
    assert "done: llamafleet-bench: run 2/2" in done.stdout
    lines = (inv.parent / "bench" / "here.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["label"] for r in records] == [r["label"] for r in runs]
    assert all(r["ok"] and r["tests"] for r in records)
    assert "records: " + str(inv.parent / "bench" / "here.jsonl") in done.stdout
