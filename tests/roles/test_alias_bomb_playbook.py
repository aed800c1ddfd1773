"""A YAML alias bomb in host_vars, through ansible-playbook itself: a clear one-line error, in bounded time.

Ansible loads host_vars with PyYAML, which builds aliases by reference, so loading is instant; the first template that
reads the variable expands it. Without a guard, `ansible-playbook site.yml --check` on a ten-level bomb never got past
the preflight role's argument-spec check (killed after 90 s, measured on this machine), because that check templates
``llamafleet`` in full before any task of ours runs. The playbooks therefore run preflight's ``bounded`` entry point
first (no argument spec; its action reads the variable untemplated and counts it by identity).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hostsupport import ANSIBLE_PLAYBOOK, ROOT, ansible_env

# ten levels of nine: 9^10 (3.5 billion) strings once expanded, inside the description itself
BOMB = "llamafleet:\n  user: llama\n  x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"  x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
) + "  servers: *a9\n"
# a description that contains itself (PyYAML builds the cycle; a template walking it never ends)
CYCLE = "llamafleet: &self\n  user: llama\n  models: [*self]\n"


def run(tmp_path: Path, text: str, playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
    inv = tmp_path / "inventory"
    (inv / "host_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(f"all:\n  hosts:\n    bomb:\n      ansible_connection: local\n"
                                   f"      ansible_python_interpreter: {sys.executable}\n")
    (inv / "host_vars" / "bomb.yml").write_text(text)
    return subprocess.run(  # a hang fails the test as TimeoutExpired
        [str(ANSIBLE_PLAYBOOK), "-i", str(inv / "hosts.yml"), str(ROOT / playbook), "--check", *args],
        check=False, capture_output=True, text=True, env=ansible_env(), cwd=ROOT, timeout=60,
    )


@pytest.mark.parametrize(
    ("text", "playbook", "args"),
    [(BOMB, "site.yml", ()), (CYCLE, "playbooks/upgrade.yml", ("-e", "llamacpp_build=11434"))],
    ids=["bomb-site", "cycle-upgrade"],
)
def test_an_alias_bomb_in_host_vars_ends_with_one_line_not_a_hang(
    tmp_path: Path, text: str, playbook: str, args: tuple[str, ...]
) -> None:
    done = run(tmp_path, text, playbook, *args)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-2000:]
    line = ("host bomb: llamafleet: expands to more than 200000 values (YAML aliases repeated inside each other?): "
            "refused unread")
    assert line in done.stderr + done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert "Validating arguments against arg spec" not in done.stdout  # refused before anything templated it
    assert "failed=1" in done.stdout
