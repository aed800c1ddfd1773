"""site.yml asks the host first (read-only, also under --check) and renders from the description merged with it.

Runs site.yml's first three plays (`--skip-tags provision,probe,prune`, `--check`) against this machine over the local connection:
the host_facts probe reads it for real (no GPU here), the preflight render merges what it read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((REPO / "inventories/demo/host_vars/demo.yml").read_text())["llamafleet"]


def os_release() -> dict[str, str]:
    values = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value.strip('"')
    return values


def run_site(tmp_path: Path, description: dict) -> subprocess.CompletedProcess[str]:
    inventory = {"all": {"hosts": {"here": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, "llamafleet": description}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "show.yml").write_text(yaml.safe_dump([{
        "hosts": "all", "gather_facts": False, "tasks": [
            {"ansible.builtin.copy": {"content": "{{ preflight_rendered.manifest | to_json }}",
                                      "dest": str(tmp_path / "manifest.json")},
             "check_mode": False, "delegate_to": "localhost"}]}]))
    (tmp_path / "play.yml").write_text(yaml.safe_dump([
        {"ansible.builtin.import_playbook": str(REPO / "site.yml")},
        {"ansible.builtin.import_playbook": str(tmp_path / "show.yml"), "tags": ["always"]},
    ]))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(tmp_path / "hosts.yml"),
         str(tmp_path / "play.yml"), "--check", "--skip-tags", "provision,probe,prune"],
        check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )


def test_distro_left_out_is_detected_by_the_probe(tmp_path: Path) -> None:
    release = os_release()
    key = f"{release['ID']}-{release.get('VERSION_ID', '')}"
    description = {k: v for k, v in DEMO.items() if k != "distro"}
    result = run_site(tmp_path, description)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Read the host's GPUs, toolchains, memory, disk and device groups" in result.stdout
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["distro"]["key"] == key


def test_declared_distro_that_is_not_the_host_stops_the_run(tmp_path: Path) -> None:
    release = os_release()
    other = {"name": "fedora", "version": "44"}
    result = run_site(tmp_path, {**DEMO, "distro": other})
    assert result.returncode != 0
    line = f"host here: llamafleet.distro: declared fedora-44, detected {release['ID']}-{release['VERSION_ID']}"
    assert line in result.stdout, result.stdout[-3000:]
    assert not (tmp_path / "manifest.json").exists()


def test_existing_system_account_is_refused_before_any_change(tmp_path: Path) -> None:
    """`daemon` (uid 1) exists on every Debian host: below login.defs' UID_MIN, so preflight stops the run."""
    uid = __import__("pwd").getpwnam("daemon").pw_uid
    result = run_site(tmp_path, {**DEMO, "user": "daemon", "distro": None})
    assert result.returncode != 0
    assert (f"host here: llamafleet.user: daemon is a system account (uid {uid}, below UID_MIN 1000 of "
            "/etc/login.defs): name a login user or a new one") in result.stdout, result.stdout[-3000:]
    assert not (tmp_path / "manifest.json").exists()
