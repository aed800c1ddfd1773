"""roles/models tasks_from prune: run for real with ansible-playbook on this machine against a scratch models dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = """\
- name: Prune a scratch models dir
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Run the prune entry point
      ansible.builtin.include_role:
        name: models
        tasks_from: prune
"""
KEEP = ["served.gguf", "split-00001-of-00003.gguf", "split-00002-of-00003.gguf", "split-00003-of-00003.gguf",
        ".served.gguf.verified.json", ".split-00002-of-00003.gguf.verified.json", "notes.txt",
        ".new.gguf.0123abcd.part"]
UNUSED = ["old.gguf", ".old.gguf.verified.json", "other-00002-of-00002.gguf"]


def run_prune(tmp_path: Path, prune: bool) -> tuple[subprocess.CompletedProcess[str], Path]:
    models = tmp_path / "models"
    models.mkdir()
    for name in KEEP + UNUSED:
        (models / name).write_text(name)
    (models / "sub").mkdir()
    (models / "sub" / "deep.gguf").write_text("not in the models dir itself")
    manifest = {"models_dir": str(models), "models": [
        {"name": "a", "path": str(models / "served.gguf")},
        {"name": "b", "path": str(models / "split-00001-of-00003.gguf")},
        {"name": "c", "path": "/elsewhere/other-00001-of-00002.gguf"},
    ]}
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    extra = json.dumps({"preflight_rendered": {"manifest": manifest}, "models_prune": prune,
                        "ansible_python_interpreter": sys.executable})
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        [str(bin_dir / "ansible-playbook"), "-i", "localhost,", str(tmp_path / "play.yml"), "-e", extra],
        capture_output=True, text=True, env=env, check=False,
    )
    return done, models


def names(models: Path) -> set[str]:
    return {p.name for p in models.iterdir()}


@pytest.mark.parametrize("prune", [True, False], ids=["models_prune", "default"])
def test_prune_removes_only_unreferenced_ggufs_and_their_sidecars(tmp_path: Path, prune: bool) -> None:
    done, models = run_prune(tmp_path, prune)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = set(KEEP) | {"sub"} | (set() if prune else set(UNUSED))
    assert names(models) == expected
    assert (models / "sub" / "deep.gguf").exists()
