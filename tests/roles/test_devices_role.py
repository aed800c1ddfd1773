"""roles/llamacpp/tasks/devices.yml run for real by ansible-playbook on this machine, against a real CPU build.

The role's filter plugin is the shim over generators.facts.devices.check_device; these runs check the whole path:
the command as the service user with the server's environment, the listing, and the failure message.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hostsupport import ANSIBLE_PLAYBOOK, ansible_env

ROOT = Path(__file__).resolve().parents[2]


def run_devices(tmp_path: Path, expected: str | None, environment: dict[str, str] | None = None):
    server = os.environ.get("LLAMAFLEET_LLAMA_SERVER")
    assert server, "set LLAMAFLEET_LLAMA_SERVER to a llama-server binary (a CPU build)"
    prefix = tmp_path / "b11434-cpu"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "llama-server").symlink_to(server)
    play = [{
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {
            "ansible_become_method": "su",  # this machine runs the tests as root, without sudo
            "ansible_python_interpreter": sys.executable,
            "service_user_account": {"name": "root"},
            "preflight_rendered": {"manifest": {
                "llamacpp": {"prefix": str(prefix)},
                "servers": [{"name": "main", "environment": environment or {}, "expected_device": expected}],
            }},
        },
        "tasks": [{"ansible.builtin.include_role": {"name": "llamacpp", "tasks_from": "devices"}}],
    }]
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(play))
    env = ansible_env()
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(playbook)],
        check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )


def test_a_cpu_build_passes_for_a_cpu_server(tmp_path: Path) -> None:
    out = run_devices(tmp_path, None, {"LLAMA_ARG_THREADS": "1"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "main: host localhost: CPU build; devices listed: none" in " ".join(out.stdout.split())


@pytest.mark.parametrize("expected", ["Vulkan0", "CUDA0", "ROCm1"])
def test_a_cpu_build_fails_a_gpu_server_with_the_reason(tmp_path: Path, expected: str) -> None:
    out = run_devices(tmp_path, expected)
    assert out.returncode != 0
    text = " ".join(out.stdout.split())  # the yaml callback wraps long messages
    assert f"main: host localhost: llama-server --list-devices does not list {expected} (listed: none): " in text
    assert "the build has no GPU backend compiled in" in text and "the previous build keeps serving" in text


def load_filters():
    path = ROOT / "roles" / "llamacpp" / "filter_plugins" / "llamafleet_devices.py"
    spec = importlib.util.spec_from_file_location("llamafleet_devices", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


def test_the_filter_checks_each_server_of_a_looped_command() -> None:
    listing = (ROOT / "tests" / "facts" / "listings" / "vulkan-t1200-igpu.composed.txt").read_text()
    listing = "\n".join(line for line in listing.splitlines() if not line.startswith("#"))
    results = [
        {"item": {"name": "main", "expected_device": "Vulkan1"}, "stdout": "", "stderr": listing},
        {"item": {"name": "fim", "expected_device": "Vulkan2"}, "stdout": listing, "stderr": ""},
        {"item": {"name": "off", "expected_device": "Vulkan0"}, "skipped": True},
    ]
    main, fim = load_filters()["llamafleet_device_checks"](results, "t1200-laptop")
    assert main["ok"] and main["message"] == "main: host t1200-laptop: Vulkan1 is NVIDIA T1200 Laptop GPU (4096 MiB)"
    assert not fim["ok"] and "does not list Vulkan2" in fim["message"] and "device index is wrong" in fim["message"]
    assert [d["name"] for d in fim["devices"]] == ["Vulkan0", "Vulkan1"]
