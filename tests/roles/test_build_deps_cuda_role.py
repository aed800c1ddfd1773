"""roles/build_deps' CUDA candidate check (tasks/cuda_candidate.yml) run for real, in check mode, on this machine.

This machine is Debian 12 without the non-free component, so Debian's nvidia-cuda-toolkit has no install
candidate here: the run must fail with the one line naming the component, and pass for a package apt can install.
Read-only: apt-cache policy and a find; check mode refreshes no index.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hostsupport import ANSIBLE_PLAYBOOK, ansible_env

pytestmark = pytest.mark.skipif(shutil.which("apt-cache") is None, reason="needs apt (a Debian or Ubuntu machine)")


def run_check(tmp_path: Path, package: str) -> subprocess.CompletedProcess[str]:
    toolkit = {"repo": "distro", "label": "Debian 12's nvidia-cuda-toolkit (non-free)", "packages": [package],
               "component": "non-free", "enable": "add non-free to Components in /etc/apt/sources.list.d/debian.sources",
               "nvcc": "11.8", "repo_url": None, "repo_file": None}
    play = [{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"ansible_python_interpreter": sys.executable,  # the role reads the manifest, like preflight's
                 "preflight_rendered": {"manifest": {"distro": {"packages": [], "cuda_toolkit": toolkit}}}},
        "tasks": [{"ansible.builtin.include_role": {"name": "build_deps", "tasks_from": "cuda_candidate"}}],
    }]
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(play))
    return subprocess.run([str(ANSIBLE_PLAYBOOK), "--check", "-i", "localhost,", str(playbook)], check=False,
                          capture_output=True, text=True, env=ansible_env(), cwd=tmp_path, timeout=300)


def test_no_candidate_fails_in_one_line_naming_the_component(tmp_path: Path) -> None:
    policy = subprocess.run(["apt-cache", "policy", "nvidia-cuda-toolkit"], capture_output=True, text=True).stdout
    if "Candidate:" in policy and "Candidate: (none)" not in policy:
        pytest.skip("this machine has non-free enabled: nvidia-cuda-toolkit has a candidate")
    out = run_check(tmp_path, "nvidia-cuda-toolkit")
    assert out.returncode != 0
    text = " ".join(out.stdout.split())
    assert ("host localhost: llamafleet.llamacpp.cuda_repo: distro: Debian 12's nvidia-cuda-toolkit (non-free) has "
            "no install candidate, the non-free component is not enabled: add non-free to Components in "
            "/etc/apt/sources.list.d/debian.sources, run apt update and run again; or set llamacpp.cuda_repo: "
            "nvidia for NVIDIA's repository (llamafleet never edits apt sources)") in text


def test_a_package_with_a_candidate_passes_and_changes_nothing(tmp_path: Path) -> None:
    out = run_check(tmp_path, "bash")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "changed=0" in out.stdout and "failed=0" in out.stdout


def test_check_mode_reports_nvidias_repository_instead_of_failing_on_it(tmp_path: Path) -> None:
    """cuda_repo: nvidia in check mode on a host without the repository (this one): nothing is fetched (NVIDIA's
    server is out of reach here), the repository and the packages are reported, and the run passes."""
    if Path("/usr/share/keyrings/cuda-archive-keyring.gpg").exists():
        pytest.skip("this machine has NVIDIA's repository")
    toolkit = {"repo": "nvidia", "label": "NVIDIA's repository (cuda-toolkit)", "packages": ["cuda-toolkit"],
               "component": None, "enable": None, "nvcc": "13.2",
               "repo_url": "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/",
               "repo_file": "cuda-keyring_1.1-1_all.deb"}
    play = [{
        "hosts": "localhost", "connection": "local", "gather_facts": True,
        "vars": {"ansible_python_interpreter": sys.executable,
                 "preflight_rendered": {"manifest": {"distro": {"package_manager": "apt", "packages": ["cuda-toolkit"],
                                                                "cuda_toolkit": toolkit}}}},
        "tasks": [{"ansible.builtin.include_role": {"name": "build_deps", "tasks_from": "cuda_toolkit"}},
                  {"ansible.builtin.include_role": {"name": "build_deps", "tasks_from": "packages"},
                   "vars": {"build_deps_packages": ["cuda-toolkit"]}}],
    }]
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(play))
    out = subprocess.run([str(ANSIBLE_PLAYBOOK), "--check", "-i", "localhost,", str(playbook)], check=False,
                         capture_output=True, text=True, env=ansible_env(), cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.split())
    assert ("would install https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/"
            "cuda-keyring_1.1-1_all.deb, then apt update") in text
    assert "would refresh the apt index and install cuda-toolkit" in text
