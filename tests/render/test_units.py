"""Every rendered user unit passes ``systemd-analyze verify --user``, and every rendered llama-server flag is
one the real binary's ``--help`` lists.

systemd-analyze checks that ExecStart's binary exists and is executable; the units name the host's install path
(/opt/llamafleet/llama.cpp/current/bin/llama-server), so the test points ExecStart at a stand-in executable in a
temporary directory and changes nothing else. Warnings (unknown keys, bad values) count as failures.

The flag test needs a built llama-server: LLAMAFLEET_LLAMA_SERVER=/path/to/llama-server (b11434, the build
every example host runs). It fails, not skips, when the variable is unset.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hostsupport import DEMO, EXAMPLE, EXAMPLE_HOSTS, parse, plan_of, render


HOSTS = [(h, EXAMPLE) for h in EXAMPLE_HOSTS] + [("demo", DEMO)]
UNITS = [
    (host, inventory, path)
    for host, inventory in HOSTS
    for path in sorted(render(host, inventory))
    if path.startswith(("systemd/user/", "ollama/"))
]


@pytest.fixture(scope="module")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is required for this test (apt-get install systemd)"
    return found


@pytest.mark.integration  # systemd-analyze
@pytest.mark.parametrize(("host", "inventory", "path"), UNITS, ids=[f"{h}:{p}" for h, _, p in UNITS])
def test_unit_passes_systemd_analyze_verify(
    host: str, inventory: Path, path: str, analyze: str, tmp_path: Path
) -> None:
    content = render(host, inventory)[path].content
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    if path.startswith("ollama/"):
        # a drop-in is verified together with a unit it extends
        unit = tmp_path / "ollama.service"
        unit.write_text(f"[Service]\nExecStart={shutil.which('true')}\n")
        dropin_dir = tmp_path / "ollama.service.d"
        dropin_dir.mkdir()
        (dropin_dir / "override.conf").write_text(content)
        args = [analyze, "verify", "--man=no", str(unit)]
    else:
        stand_in = tmp_path / "llama-server"
        stand_in.write_text("#!/bin/sh\nexit 0\n")
        stand_in.chmod(0o755)
        unit = tmp_path / Path(path).name
        unit.write_text(content.replace("/opt/llamafleet/llama.cpp/current/bin/llama-server", str(stand_in)))
        args = [analyze, "verify", "--user", "--man=no", str(unit)]
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


@pytest.mark.integration  # systemd-analyze
def test_a_broken_unit_is_caught(analyze: str, tmp_path: Path) -> None:
    """The check above can fail: an unknown key and a bad Type= show up on stderr."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    unit = tmp_path / "broken.service"
    unit.write_text(f"[Service]\nType=bogus\nFrobnicate=yes\nExecStart={shutil.which('true')}\n")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    done = subprocess.run(
        [analyze, "verify", "--user", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert "Frobnicate" in done.stderr and "bogus" in done.stderr


@pytest.fixture(scope="module")
def help_text(llama_server_bin: Path) -> str:
    done = subprocess.run([llama_server_bin, "--help"], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def _known(help_text: str) -> set[str]:
    known: set[str] = set()
    for line in help_text.splitlines():
        for token in line.replace(",", " ").split():
            if token.startswith("-") and len(token) > 1:
                known.add(token)
    return known


@pytest.mark.parametrize("host", [h for h in EXAMPLE_HOSTS if not h.endswith("-ollama")] + ["demo"])
def test_every_rendered_flag_is_in_the_binary_help(host: str, help_text: str) -> None:
    spec = parse(host, DEMO if host == "demo" else EXAMPLE)
    assert spec.llamacpp is not None and spec.llamacpp.build == 11434
    known = _known(help_text)
    variants = [spec]
    for raw in spec.servers:  # every preset, not only the active one
        for name in raw.presets:
            variants.append(
                spec.model_copy(
                    update={
                        "servers": tuple(
                            s.model_copy(update={"preset": name}) if s.name == raw.name else s for s in spec.servers
                        )
                    }
                )
            )
    for variant in variants:
        for server in plan_of(variant).servers:
            flags = server.flags
            unknown = [f for f in flags if f not in known]
            assert not unknown, f"{host}/{server.name}: not in llama-server --help: {unknown}"


def test_the_help_check_rejects_a_removed_flag(help_text: str) -> None:
    """b11434 dropped --no-mmap (data/flag_renames.yaml): the check above would catch it."""
    assert "--no-mmap" not in _known(help_text)
    assert "--load-mode" in _known(help_text)
