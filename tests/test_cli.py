"""``python -m generators render`` end to end: files written atomically with their modes, errors without traces.

The demo and the error run as real processes; the other hosts and the subcommands' --help run the same CLI in
this process (hostsupport.run_cli), which keeps the fast tests fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hostsupport import EXAMPLE_HOSTS, ROOT, render, run_cli


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "generators", *args], capture_output=True, text=True, cwd=ROOT, check=False, timeout=120
    )


def test_render_demo_writes_every_file_with_its_mode(tmp_path: Path) -> None:
    done = run("render", "--inventory", "inventories/demo", "--host", "demo", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(render("demo", ROOT / "inventories" / "demo"))
    assert oct((tmp_path / "build/build-llamacpp.sh").stat().st_mode & 0o777) == "0o755"
    assert oct((tmp_path / "llamafleet/llamafleet-main.env").stat().st_mode & 0o777) == "0o600"
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    # the proxy takes the agents' port 8080 (on by default); llama-server moves behind it to port + 1000
    assert (manifest["sse_proxy"]["listen_port"], manifest["servers"][0]["port"]) == (8080, 9080)


@pytest.mark.parametrize("host", EXAMPLE_HOSTS)
def test_render_every_example_host(host: str, tmp_path: Path) -> None:
    done = run_cli("render", "--inventory", "inventories/example", "--host", host, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "manifest.json").is_file()
    assert done.stdout.splitlines() == [str(tmp_path / p) for p in render(host)]


def test_unknown_host_is_an_error_listing_the_hosts(tmp_path: Path) -> None:
    done = run("render", "--inventory", "inventories/example", "--host", "rtx9090", "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert done.stderr.startswith("host rtx9090: --host: not in inventory inventories/example (hosts: ")
    assert "strix-halo" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_every_command_of_the_old_module_entry_points_is_a_subcommand() -> None:
    """python -m generators.backends/.toolchain/.fit.catalog became render-build, check-devices, toolchain, catalog."""
    for command in ("render", "fit", "catalog", "toolchain", "render-build", "check-devices"):
        done = run_cli(command, "--help")
        assert done.returncode == 0 and done.stdout.startswith("usage: python -m generators " + command), command
    listed = run_cli("catalog", "list")
    assert listed.returncode == 0 and "SmolLM2-135M-Instruct.Q4_1.gguf" in listed.stdout
    probe = run_cli("toolchain", "--print-probe")
    assert probe.returncode == 0 and probe.stdout.startswith("#!")
    bad = run_cli("catalog", "add", "--repo", "org/repo")
    assert bad.returncode == 2 and "add needs --repo and --file, or --path" in bad.stderr
