"""The hub token path: the hf_models role's fetcher module run by ansible-playbook at -vvv (plan in check mode,
then the fetch) against the loopback fake hub, with a gated repo only the known fake token opens. The download
succeeds, so the token was sent, and the token appears nowhere in the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakehub import Hub, HubFile, Repo, serve
from hubcli import FILE

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_LEAKTOKEN456"
REPO = "owner/gated-GGUF"

PLAY = """---
- name: Fetch a gated model with a token file
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Plan and fetch
      llamafleet_hf_fetch:
        host: "{{ inventory_hostname }}"
        repo: "{{ repo }}"
        file: "{{ file }}"
        dest: "{{ dest }}"
        token_file: "{{ token_file }}"
        endpoint: "{{ endpoint }}"
        reserve_bytes: 0
"""


@pytest.fixture
def gated_hub() -> Iterator[str]:
    path = os.environ.get("LLAMAFLEET_SMOLLM2_GGUF")
    assert path, 'needs the SmolLM2 GGUF: eval "$(cat /tmp/host-llama.env)"'
    state = Hub(repos={REPO: Repo(files={FILE: HubFile(Path(path).read_bytes())}, gated=True,
                                  granted_tokens=frozenset({TOKEN}))},
                valid_tokens=frozenset({TOKEN}))
    server, endpoint = serve(state)
    yield endpoint
    server.shutdown()
    server.server_close()


def run(tmp_path: Path, endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "vars.json").write_text(json.dumps({"repo": REPO, "file": FILE, "dest": str(tmp_path / "models"),
                                                    "token_file": str(token_file), "endpoint": endpoint}))
    env = {**os.environ, "ANSIBLE_LIBRARY": str(ROOT / "roles/hf_models/library"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "default",
           "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    playbook = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run(
        [str(playbook), "-i", "localhost,", str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.json'}",
         "-e", f"ansible_python_interpreter={sys.executable}", "-vvv", *args],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )


def test_the_token_opens_the_gated_repo_and_is_never_printed(tmp_path: Path, gated_hub: str) -> None:
    plan = run(tmp_path, gated_hub, "--check", "--diff")
    out = plan.stdout + plan.stderr
    assert plan.returncode == 0, out
    assert '"action": "download"' in out and TOKEN not in out
    done = run(tmp_path, gated_hub, "--diff")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert (tmp_path / "models" / Path(FILE).name).exists() or any((tmp_path / "models").rglob("*.gguf"))
    assert TOKEN not in out
