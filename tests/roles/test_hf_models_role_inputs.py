"""roles/hf_models refuses a bad model list before anything changes, naming the host and every bad field at once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hostsupport import ANSIBLE_PLAYBOOK, ansible_env

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = """---
- name: Fetch models
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: hf_models
"""


def run_role(tmp_path: Path, variables: dict) -> subprocess.CompletedProcess[str]:
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = ansible_env(json_results=True)
    playbook = ANSIBLE_PLAYBOOK
    return subprocess.run(
        [str(playbook), "-i", "localhost,", str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.json'}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_every_bad_field_is_reported_before_anything_runs(tmp_path):
    proc = run_role(
        tmp_path,
        {
            "hf_models_list": [
                {"repo": "not a repo", "file": "/etc/passwd"},
                {"repo": "owner/name", "file": "../x.gguf"},
                {"repo": "owner/name", "file": "ok.gguf", "dest_dir": "relative/dir"},
            ],
            "hf_models_token_file": "token-in-cwd",
        },
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = proc.stdout
    for line in (
        "host localhost: hf_models_list[0].repo: not a repo is not owner/name",
        "host localhost: hf_models_list[0].file: /etc/passwd must be a relative path in the repo ending in .gguf",
        "host localhost: hf_models_list[1].file: ../x.gguf must be a relative path in the repo ending in .gguf",
        "host localhost: hf_models_list[2].dest_dir: must be an absolute path",
        "host localhost: hf_models_token_file: must be an absolute path",
    ):
        assert line in out, (line, out)
    assert "Install Python with venv support" not in out, "nothing may run after a failed input check"


def test_a_model_without_file_fails_the_argument_spec(tmp_path):
    proc = run_role(tmp_path, {"hf_models_list": [{"repo": "owner/name"}]})
    assert proc.returncode == 2
    assert "missing required arguments: file found in hf_models_list" in proc.stdout
    assert "Install Python with venv support" not in proc.stdout
