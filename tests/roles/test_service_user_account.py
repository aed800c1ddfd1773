"""roles/service_user's account tasks on this machine: an existing account keeps its shell and comment and only gets
the GPU device groups appended; a new one is created with llamafleet's shell and comment.

Run for real against throwaway accounts (created and removed by the test; needs root). The Molecule hosts have no
/dev/dri, so group membership is proven here with a stand-in group the test creates as the "render" group.
"""

from __future__ import annotations

import os
import pwd
import grp
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates throwaway accounts: needs root")


@pytest.fixture
def names():
    tag = f"{os.getpid() % 100000}"
    user, group = f"lfsvc{tag}", f"lfrender{tag}"
    subprocess.run(["groupadd", group], check=True)
    yield user, group
    subprocess.run(["userdel", "-r", user], check=False, capture_output=True)
    subprocess.run(["groupdel", group], check=False, capture_output=True)


def run_account(tmp_path: Path, user: str, groups: list[str]) -> subprocess.CompletedProcess[str]:
    play = [{
        "hosts": "localhost", "gather_facts": False,
        "vars": {"preflight_rendered": {"manifest": {"user": user}}, "preflight_host": {"device_groups": groups}},
        "tasks": [{"ansible.builtin.include_role": {"name": "service_user", "tasks_from": "account"}}],
    }]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml")],
        check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )


def test_existing_account_keeps_shell_and_comment_and_gets_the_gpu_group(tmp_path, names):
    user, group = names
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-c", "Dana Dev,Room 4,,", user], check=True)
    before = pwd.getpwnam(user)
    result = run_account(tmp_path, user, [group])
    assert result.returncode == 0, result.stdout[-3000:]
    after = pwd.getpwnam(user)
    assert (after.pw_shell, after.pw_gecos, after.pw_dir, after.pw_uid) == (
        before.pw_shell, before.pw_gecos, before.pw_dir, before.pw_uid)
    assert user in grp.getgrnam(group).gr_mem
    again = run_account(tmp_path, user, [group])  # idempotent: nothing left to append
    assert "changed=0" in again.stdout, again.stdout[-2000:]


def test_existing_account_without_gpu_groups_is_not_touched(tmp_path, names):
    user, _ = names
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-c", "Dana Dev", user], check=True)
    result = run_account(tmp_path, user, [])
    assert result.returncode == 0, result.stdout[-3000:]
    assert "changed=0" in result.stdout
    assert pwd.getpwnam(user).pw_shell == "/bin/sh"


def test_new_account_gets_llamafleets_shell_comment_and_group(tmp_path, names):
    user, group = names
    result = run_account(tmp_path, user, [group])
    assert result.returncode == 0, result.stdout[-3000:]
    entry = pwd.getpwnam(user)
    assert (entry.pw_shell, entry.pw_gecos) == ("/bin/bash", "llamafleet llama-server")
    assert user in grp.getgrnam(group).gr_mem
