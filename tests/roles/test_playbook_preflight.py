"""Bad host_vars stop the playbook in the preflight play, before any task reaches a host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((REPO / "inventories/demo/host_vars/demo.yml").read_text())["llamafleet"]


def run_site(tmp_path: Path, hosts: dict[str, dict]) -> subprocess.CompletedProcess[str]:
    """Run site.yml against hosts that cannot be reached: any task that tried to touch one would fail differently."""
    inventory = {"all": {"hosts": {
        name: {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1, **hvars}
        for name, hvars in hosts.items()
    }}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    ansible_playbook = Path(sys.executable).with_name("ansible-playbook")
    return subprocess.run(
        [str(ansible_playbook), "-i", str(tmp_path / "hosts.yml"), str(REPO / "site.yml")],
        check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )


def test_unknown_key_wrong_type_and_missing_model_fail_before_any_host_changes(tmp_path):
    unknown = {**DEMO, "servers": [{**DEMO["servers"][0], "contxt": 8192}]}
    wrong_type = {**DEMO, "servers": [{**DEMO["servers"][0], "port": "eighty"}]}
    missing_model = {**DEMO, "servers": [{**DEMO["servers"][0], "model": "qwen"}]}
    result = run_site(tmp_path, {
        "good": {"llamafleet": DEMO},
        "unknown": {"llamafleet": unknown},
        "wrongtype": {"llamafleet": wrong_type},
        "nomodel": {"llamafleet": missing_model},
    })
    out = result.stdout
    assert result.returncode != 0
    assert "host unknown: llamafleet.servers[0].contxt: unknown key" in out
    assert "host wrongtype: llamafleet.servers[0].port: Input should be a valid integer" in out
    assert "host nomodel: llamafleet.servers[0].model: no model named 'qwen' (models: smollm2)" in out
    # Nothing after the preflight play ran, not even fact gathering on the good host.
    assert "Gathering Facts" not in out
    assert "UNREACHABLE" not in out


def test_host_without_a_description_is_named(tmp_path):
    result = run_site(tmp_path, {"bare": {}})
    assert result.returncode != 0
    # The role's argument spec names the host and the missing variable.
    assert "fatal: [bare]" in result.stdout
    assert "missing required arguments: llamafleet" in result.stdout
    assert "Gathering Facts" not in result.stdout


def test_exposed_server_needs_an_api_key_file(tmp_path):
    exposed = {**DEMO, "servers": [{**DEMO["servers"][0], "host": "0.0.0.0"}]}
    result = run_site(tmp_path, {"exposed": {"llamafleet": exposed}})
    assert "host exposed: llamafleet.servers[0]: host 0.0.0.0 is not loopback: set api_key_file too" in result.stdout
    assert "Gathering Facts" not in result.stdout


def test_context_that_cannot_fit_the_gpu_stops_the_playbook_in_preflight(tmp_path):
    """Seed 000's T1200 (4 GB) asked for 512K tokens of context: the fit check fails it before any host changes."""
    t1200 = yaml.safe_load((REPO / "inventories/example/host_vars/t1200-laptop.yml").read_text())["llamafleet"]
    too_big = {**t1200, "servers": [{**t1200["servers"][0], "ctx": 524288}]}
    result = run_site(tmp_path, {"good": {"llamafleet": DEMO}, "t1200": {"llamafleet": too_big}})
    out = result.stdout
    assert result.returncode != 0
    assert "host t1200: llamafleet.servers[0].ctx: server main: 524288 tokens of context do not fit" in out
    assert "nearest configuration that fits: --ctx-size" in out
    assert "memory fit" not in out + result.stderr  # the demo host (no GPU, RAM not described) warns about nothing
    assert "Gathering Facts" not in out
    assert "UNREACHABLE" not in out


def test_model_unknown_offline_warns_once_and_preflight_passes(tmp_path):
    """Facts the catalog lacks are a warning naming host, model and the catalog command; the play goes on."""
    t1200 = yaml.safe_load((REPO / "inventories/example/host_vars/t1200-laptop.yml").read_text())["llamafleet"]
    unknown = {**t1200, "models": [{**t1200["models"][0], "path": "/home/dev/models/mystery-3b-q4_k_m.gguf"}]}
    result = run_site(tmp_path, {"t1200": {"llamafleet": unknown}})
    warnings = [line for line in result.stderr.splitlines() if "memory fit" in line]
    assert len(warnings) == 1, result.stderr
    assert "host t1200" in warnings[0] and "mystery-3b-q4_k_m.gguf" in warnings[0]
    assert "python -m generators catalog add" in warnings[0]
    assert "UNREACHABLE" in result.stdout  # past preflight: the next play tried the (unreachable on purpose) host
