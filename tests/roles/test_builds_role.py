"""roles/llamacpp run for real by ansible-playbook on this machine for a host with ``llamacpp.also_build``.

The manifest and the files are a real render of strix-halo (Vulkan servers) with ``also_build: [hip]``, moved
under a scratch directory. Each rendered build script is replaced by a stand-in that records its run and installs
a llama-server wrapper into its prefix: ``--list-devices`` prints a listing (tests/facts/listings), everything
else runs the real CPU binary (its ``--help`` is what the role checks the rendered flags against). The role must
run both scripts, check each build's device (the serving build per server, the other against
``builds[].expected_device``), switch ``current`` once, to the serving build, notify the one restart topic once,
and change nothing on a second run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from hostsupport import ANSIBLE_PLAYBOOK, ansible_env

from generators.pipeline import render_hostvars

ROOT = Path(__file__).resolve().parents[2]
LISTINGS = ROOT / "tests" / "facts" / "listings"
STRIX_VULKAN = "Available devices:\n  Vulkan0: AMD Radeon Graphics (RADV GFX1151) (98304 MiB, 97000 MiB free)\n"


def listing(name: str) -> str:
    return "\n".join(line for line in (LISTINGS / name).read_text().splitlines() if not line.startswith("#")) + "\n"


def stand_in(log: Path, prefix: str, devices: Path) -> str:
    """A build script that records its run and installs a llama-server wrapper into its prefix."""
    server = os.environ.get("LLAMAFLEET_LLAMA_SERVER")
    assert server, "set LLAMAFLEET_LLAMA_SERVER to a llama-server binary (a CPU build)"
    return (
        "#!/bin/sh\nset -eu\n"
        f"echo \"$0\" >> {log}\n"
        f"mkdir -p {prefix}/bin\n"
        f"cat > {prefix}/bin/llama-server <<'EOF'\n"
        "#!/bin/sh\n"
        f"if [ \"${{1:-}}\" = --list-devices ]; then cat {devices}; exit 0; fi\n"
        f"exec {server} \"$@\"\n"
        "EOF\n"
        f"chmod 0755 {prefix}/bin/llama-server\n"
    )


def prepare(tmp_path: Path, hip_listing: str) -> tuple[Path, dict]:
    hostvars = yaml.safe_load((ROOT / "inventories/example/host_vars/strix-halo.yml").read_text())
    hostvars["llamafleet"]["llamacpp"]["also_build"] = ["hip"]
    rendered = render_hostvars("strix-halo", hostvars)
    files = {f.path: {"content": f.content, "mode": f.mode} for f in rendered.files}
    text = json.dumps(rendered.manifest)
    # every host path under the scratch directory
    text = text.replace("/var/cache/llamafleet", str(tmp_path / "cache")).replace("/opt/llamafleet", str(tmp_path / "opt"))
    data = json.loads(text)
    cpp = data["llamacpp"]
    source = tmp_path / "src"
    source.mkdir()
    (source / "CMakeLists.txt").write_text("# a stand-in tree\n")
    cpp.update(source_kind="path", source_dir=str(source))
    log = tmp_path / "builds.log"
    for build in cpp["builds"]:
        devices = tmp_path / f"devices-{build['backend']}.txt"
        devices.write_text(STRIX_VULKAN if build["serves"] else hip_listing)
        files[build["render_path"]]["content"] = stand_in(log, build["prefix"], devices)
    play = [{
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {
            "ansible_become_method": "su",  # this machine runs the tests as root, without sudo
            "ansible_python_interpreter": sys.executable,
            "service_user_account": {"name": "root", "running": True},
            "preflight_rendered": {"manifest": data, "files": files},
        },
        "roles": [{"role": "llamacpp"}],
        # the one restart topic (roles/service_user/handlers): here a stand-in that only says it ran
        "handlers": [{"name": "Record the restart", "ansible.builtin.debug": {"msg": "RESTART-NOTIFIED"},
                      "listen": "llamafleet restart servers"}],
    }]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play))
    return playbook, data


def run(tmp_path: Path, playbook: Path) -> subprocess.CompletedProcess[str]:
    env = ansible_env()
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(playbook)],
        check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )


def recap(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("localhost "))


def test_an_also_build_host_builds_both_checks_both_and_switches_current_once(tmp_path: Path) -> None:
    playbook, data = prepare(tmp_path, listing("rocm-gfx1151.composed.txt"))
    cpp = data["llamacpp"]
    serving = next(b for b in cpp["builds"] if b["serves"])
    other = next(b for b in cpp["builds"] if not b["serves"])
    assert (serving["backend"], serving["expected_device"]) == ("vulkan", "Vulkan0")
    assert (other["backend"], other["expected_device"]) == ("hip", "ROCm0")
    first = run(tmp_path, playbook)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out
    # each build's own script, once each: the other build first, so a failing one leaves `current` alone
    assert (tmp_path / "builds.log").read_text().splitlines() == [other["script"], serving["script"]]
    assert Path(cpp["current"]).resolve() == Path(serving["prefix"])
    assert Path(other["prefix"], "bin", "llama-server").is_file()
    assert out.count("RESTART-NOTIFIED") == 1
    text = " ".join(out.split())
    assert f"{other['version']}: host localhost: ROCm0 is AMD Radeon Graphics (98304 MiB)" in text
    assert "main: host localhost: Vulkan0 is AMD Radeon Graphics (RADV GFX1151) (98304 MiB)" in text
    again = run(tmp_path, playbook)
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(r"changed=0\s", recap(again.stdout)), recap(again.stdout)
    assert "RESTART-NOTIFIED" not in again.stdout
    assert len((tmp_path / "builds.log").read_text().splitlines()) == 2


def test_an_also_build_without_its_device_fails_before_current_moves(tmp_path: Path) -> None:
    playbook, data = prepare(tmp_path, listing("cpu-b11434.stdout.txt"))
    cpp = data["llamacpp"]
    out = run(tmp_path, playbook)
    assert out.returncode != 0
    text = " ".join(out.stdout.split())
    other = next(b for b in cpp["builds"] if not b["serves"])
    assert f"{other['version']}: host localhost: llama-server --list-devices does not list ROCm0" in text
    # the serving build never ran and `current` was never made
    assert (tmp_path / "builds.log").read_text().splitlines() == [other["script"]]
    assert not os.path.lexists(cpp["current"])
