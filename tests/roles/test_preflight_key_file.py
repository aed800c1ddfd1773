"""An API key file others can read stops site.yml in the preflight play, before the first change on any host.

Runs the real site.yml under --check against this machine over the local connection (as root; become by su, since
there is no sudo here): the host_facts probe, the preflight render, then preflight's key-file check. The failing
run must end there: no task of the provisioning play starts, and the key file is left as it was.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import yaml

from hostsupport import ANSIBLE_PLAYBOOK, ROOT, ansible_env

DEMO = yaml.safe_load((ROOT / "inventories/demo/host_vars/demo.yml").read_text())["llamafleet"]
KEY = "sk-preflight-test-key"


def run_site(tmp_path: Path, key_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    description = copy.deepcopy(DEMO)
    description.pop("distro")  # whatever this machine is
    description["servers"][0]["api_key_file"] = str(key_file)
    inventory = {"all": {"hosts": {"here": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "ansible_become_method": "su", "llamafleet": description}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "hosts.yml"), str(ROOT / "site.yml"), "--check", *args],
        check=False, capture_output=True, text=True, env=ansible_env(), cwd=ROOT, timeout=300,
    )


def test_a_world_readable_key_file_fails_in_preflight_before_any_change(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "main.key"
    key_file.parent.mkdir()
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o644)
    done = run_site(tmp_path, key_file)
    assert done.returncode != 0
    lines = [ln for ln in done.stdout.splitlines() if "api_key_file" in ln and "host here" in ln]
    assert lines, done.stdout[-3000:]
    assert (f"host here: llamafleet.servers[0].api_key_file: {key_file} is mode 0644 owned by root: it must be "
            "mode 0600 and owned by llama") in lines[0], lines
    assert "TASK [preflight : Refuse a key file that others can read" in done.stdout
    assert "PLAY [Build llama.cpp and serve the models]" not in done.stdout  # stopped before the first change
    assert "TASK [build_deps" not in done.stdout and "TASK [llama_server" not in done.stdout
    assert KEY not in done.stdout + done.stderr
    assert key_file.read_text() == KEY + "\n" and oct(key_file.stat().st_mode & 0o777) == "0o644"


def test_a_missing_key_file_passes_preflight_and_is_left_to_the_llama_server_role(tmp_path: Path) -> None:
    """The check itself does not fail everything: with no key file yet, the preflight plays pass."""
    key_file = tmp_path / "keys" / "main.key"
    done = run_site(tmp_path, key_file, "--skip-tags", "provision,probe,prune")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "TASK [preflight : Look for each server's API key file]" in done.stdout
    assert not key_file.exists()
