"""roles/build_deps' CUDA toolkit tasks, read without Ansible: what they run, and the exact line a host without
the distribution's CUDA package in reach fails with (the manifest's distro.cuda_toolkit of a real render).

A real run of the candidate check against this machine is tests/roles/test_build_deps_cuda_role.py; NVIDIA's
repository half cannot run here (developer.download.nvidia.com is unreachable): it is linted and read only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import yaml
from hostsupport import render

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "roles" / "build_deps" / "tasks"


def tasks(name: str) -> list[dict[str, Any]]:
    return yaml.safe_load((TASKS / name).read_text())


def task(name: str, module: str) -> dict[str, Any]:
    return next(t for t in tasks(name) if module in t)


def cuda_toolkit(host: str) -> dict[str, Any]:
    return json.loads(render(host)["manifest.json"].content)["distro"]["cuda_toolkit"]


def test_the_candidate_check_is_read_only_and_runs_in_check_mode() -> None:
    ask = task("cuda_candidate.yml", "ansible.builtin.command")
    assert ask["ansible.builtin.command"]["argv"] == ["apt-cache", "policy", "{{ __build_deps_cuda.packages | first }}"]
    assert ask["check_mode"] is False and ask["changed_when"] is False
    refresh = task("cuda_candidate.yml", "ansible.builtin.apt")
    assert refresh["ansible.builtin.apt"] == {"update_cache": True, "cache_valid_time": 86400}  # never a source
    modules = {m for t in tasks("cuda_candidate.yml") for m in t if m.startswith("ansible.")}
    assert modules == {"ansible.builtin.find", "ansible.builtin.apt", "ansible.builtin.command",
                       "ansible.builtin.debug", "ansible.builtin.assert"}
    main = [t["name"] for t in tasks("main.yml")]
    assert main.index("Set up the CUDA toolkit's source (llamacpp.cuda_repo) before anything installs") < main.index(
        "Install the packages of the build and of every backend the host builds")


def fail_line(host: str) -> str:
    check = task("cuda_candidate.yml", "ansible.builtin.assert")["ansible.builtin.assert"]
    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(check["fail_msg"])
    return template.render(inventory_hostname=host, __build_deps_cuda=cuda_toolkit(host))


def test_without_the_component_the_host_fails_in_one_line_naming_the_fix() -> None:
    assert fail_line("rtx4090-debian13") == (
        "host rtx4090-debian13: llamafleet.llamacpp.cuda_repo: distro: Debian 13's nvidia-cuda-toolkit (non-free) "
        "has no install candidate, the non-free component is not enabled: add non-free to Components in "
        "/etc/apt/sources.list.d/debian.sources (or to the deb line in /etc/apt/sources.list), run apt update and "
        "run again; or set llamacpp.cuda_repo: nvidia for NVIDIA's repository (llamafleet never edits apt sources)")
    assert fail_line("rtx3070") == (
        "host rtx3070: llamafleet.llamacpp.cuda_repo: distro: Ubuntu 24.04's nvidia-cuda-toolkit (multiverse) has no "
        "install candidate, the multiverse component is not enabled: add multiverse to Components in "
        "/etc/apt/sources.list.d/ubuntu.sources (or run add-apt-repository multiverse), run apt update and run "
        "again; or set llamacpp.cuda_repo: nvidia for NVIDIA's repository (llamafleet never edits apt sources)")


def test_nvidias_repository_is_added_with_its_own_files_and_check_mode_reports_it() -> None:
    toolkit = cuda_toolkit("rtx4060-laptop")  # Fedora 43, cuda_repo: nvidia
    assert toolkit["repo_url"] + toolkit["repo_file"] == (
        "https://developer.download.nvidia.com/compute/cuda/repos/fedora43/x86_64/cuda-fedora43.repo")
    get = task("nvidia_repo_dnf.yml", "ansible.builtin.get_url")
    assert get["ansible.builtin.get_url"]["dest"] == "/etc/yum.repos.d/{{ __build_deps_cuda.repo_file }}"
    deb = task("nvidia_repo_apt.yml", "ansible.builtin.apt")
    assert deb["ansible.builtin.apt"]["deb"] == "{{ __build_deps_cuda.repo_url }}{{ __build_deps_cuda.repo_file }}"
    for fetch in (get, deb):  # check mode: reported, never fetched (NVIDIA's server may be out of reach)
        assert "not ansible_check_mode" in fetch["when"]
    for name in ("nvidia_repo_apt.yml", "nvidia_repo_dnf.yml"):
        pending = task(name, "ansible.builtin.set_fact")["ansible.builtin.set_fact"]["__build_deps_repo_pending"]
        assert pending.startswith("{{ ansible_check_mode and not ")
    blind = yaml.safe_load((ROOT / "roles" / "build_deps" / "vars" / "main.yml").read_text())["__build_deps_blind"]
    assert "__build_deps_repo_pending | default(false)" in blind  # packages.yml reports instead of failing
    assert cuda_toolkit("rtx4090")["repo_url"].endswith("/repos/ubuntu2404/x86_64/")  # seed 001: cuda_repo nvidia
    assert cuda_toolkit("rtx3070")["repo_url"] is None and cuda_toolkit("t1200-laptop") is None
