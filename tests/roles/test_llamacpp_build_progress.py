"""roles/llamacpp's build step on this machine, with a stand-in build script: the log path is printed before the
build, progress lines (compiled/total from the log) while it runs, a failure names the log, a finished build is
not run again (`creates:` idempotence), and check mode runs nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """#!/bin/bash
set -e
echo "-- Configuring done"
for i in 1 2 3 4; do echo "[$i/4] Building CXX object ggml/src/f$i.cpp.o"; sleep 2; done
{fail}
mkdir -p {prefix}/bin && touch {prefix}/bin/llama-server
"""


def run_build(tmp_path: Path, fail: bool = False, check: bool = False) -> subprocess.CompletedProcess[str]:
    prefix = tmp_path / "prefix" / "b1-cpu"
    script = tmp_path / "build-llamacpp-b1-cpu.sh"
    content = SCRIPT.format(prefix=prefix, fail="echo 'error: boom' >&2; exit 7" if fail else "")
    build = {"version": "b1-cpu", "script": str(script), "prefix": str(prefix), "render_path": "build.sh"}
    play = [{
        "hosts": "localhost", "gather_facts": False,
        "vars": {
            "preflight_rendered": {"files": {"build.sh": {"content": content}},
                                   "manifest": {"llamacpp": {"cache_root": str(tmp_path / "cache")}}},
            "__llamacpp_build": build, "llamacpp_build_poll": 5, "llamacpp_build_timeout": 600,
        },
        "tasks": [{"ansible.builtin.include_role": {"name": "llamacpp", "tasks_from": "build"}}],
    }]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local",
            "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml")]
    return subprocess.run(argv + (["--check"] if check else []), check=False, capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


def test_build_logs_prints_progress_and_is_not_run_twice(tmp_path: Path) -> None:
    log = tmp_path / "cache" / "logs" / "build-b1-cpu.log"
    result = run_build(tmp_path)
    out = result.stdout
    assert result.returncode == 0, out[-3000:]
    assert f"tail -f {log}" in out
    assert out.index(f"tail -f {log}") < out.index("b1-cpu: ")
    assert "b1-cpu: done, 4/4 compiled" in out, out[-3000:]
    assert "[4/4] Building CXX" in log.read_text()
    again = run_build(tmp_path)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-2000:]
    assert "tail -f" not in again.stdout


def test_failed_build_names_its_log(tmp_path: Path) -> None:
    result = run_build(tmp_path, fail=True)
    log = tmp_path / "cache" / "logs" / "build-b1-cpu.log"
    assert result.returncode != 0
    assert f"the build of b1-cpu failed (exit 7); its log is {log} on the host" in result.stdout
    assert "error: boom" in result.stdout


def test_check_mode_runs_nothing_and_reports_the_build(tmp_path: Path) -> None:
    result = run_build(tmp_path, check=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "(check mode: not run)" in result.stdout
    assert "changed=2" in result.stdout  # the script it would install, and the build it would run
    assert not (tmp_path / "cache" / "logs").exists()
    assert not (tmp_path / "prefix").exists()
