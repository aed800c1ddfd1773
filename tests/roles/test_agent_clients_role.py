"""roles/agent_clients run for real (ansible-playbook on this machine, connection local) against a scratch home:
the user's own settings survive, a backup is kept, a second run changes nothing, an unreadable file is left alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hostsupport import ANSIBLE_PLAYBOOK, ROOT, ansible_env, parse_tweaked, plan_of

from generators.pipeline import render_plan

PLAYBOOK = """---
- name: Merge agent client configs
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: agent_clients
"""


def run_role(tmp_path: Path, home: Path, host: str = "strix-halo") -> subprocess.CompletedProcess[str]:
    spec = parse_tweaked(host, {"clients": {"user": "root", "home": str(home)}})
    files, manifest = render_plan(plan_of(spec, host))
    rendered = {
        "files": {f.path: {"content": f.content, "mode": f.mode} for f in files},
        "manifest": manifest,
    }
    (tmp_path / "vars.json").write_text(json.dumps({"preflight_rendered": rendered}))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = ansible_env(json_results=True)
    playbook = ANSIBLE_PLAYBOOK
    return subprocess.run(
        [
            str(playbook),
            "-i",
            "localhost,",
            str(tmp_path / "play.yml"),
            "-e",
            f"@{tmp_path / 'vars.json'}",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=300,
    )


def recap(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("localhost"))


def test_role_merges_keeps_user_settings_backs_up_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    opencode = home / ".config/opencode/opencode.json"
    opencode.parent.mkdir(parents=True)
    opencode.write_text(json.dumps({"theme": "tokyonight", "provider": {"openai": {"options": {"x": 1}}}}))
    done = run_role(tmp_path, home)
    assert done.returncode == 0, done.stdout + done.stderr
    merged = json.loads(opencode.read_text())
    assert merged["theme"] == "tokyonight" and merged["provider"]["openai"] == {"options": {"x": 1}}
    assert merged["provider"]["llamafleet"]["options"]["baseURL"] == "http://127.0.0.1:8080/v1"
    backups = [p for p in opencode.parent.iterdir() if p.name.startswith("opencode.json.") and p != opencode]
    assert len(backups) == 1 and json.loads(backups[0].read_text())["theme"] == "tokyonight"
    claude = json.loads((home / ".claude/settings.json").read_text())
    assert claude["env"]["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8080"
    # the limits of the server they point at (strix-halo: ctx 65536, parallel 1), as merged into the user's files
    assert merged["provider"]["llamafleet"]["models"]["coder-qwen"]["limit"] == {"context": 65536, "output": 16384}
    assert (claude["env"]["CLAUDE_CODE_AUTO_COMPACT_WINDOW"], claude["env"]["CLAUDE_CODE_MAX_OUTPUT_TOKENS"]) == (
        "65536", "16384")
    assert oct((home / ".claude/settings.json").stat().st_mode & 0o777) == "0o600"
    again = run_role(tmp_path, home)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "changed=0" in recap(again.stdout)


def test_role_refuses_to_overwrite_an_unreadable_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = home / ".claude/settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text("{ this is not json")
    done = run_role(tmp_path, home)
    assert done.returncode != 0
    assert "is not valid json" in done.stdout and "never overwrites" in done.stdout
    assert settings.read_text() == "{ this is not json"


@pytest.fixture(autouse=True)
def _root_only() -> None:
    assert os.geteuid() == 0, "the role test chowns files to root: run it as root (this machine's default)"
