"""Shared helpers for the generator tests: render inventory hosts the way the CLI and the playbook do."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from generators.cli import main as cli_main
from generators.facts import HostFacts, facts_from_spec
from generators.inventory import host_vars
from generators.pipeline import plan_hostvars, render_plan
from generators.plan import HostPlan, plan_host
from generators.render import RenderedFile
from generators.spec import Host

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventories" / "example"
DEMO = ROOT / "inventories" / "demo"
GOLDEN = ROOT / "tests" / "render" / "golden"
BAD_HOSTS = ROOT / "tests" / "render" / "bad_hosts"
SEED_HOSTS = ("t1200-laptop", "rtx4090", "rtx3070", "strix-halo", "rtx4060-laptop")
OLLAMA_HOSTS = ("rtx3070-ollama", "strix-halo-ollama")
VARIANT_HOSTS = ("rtx4090-debian13",)  # not seeds: a seed's host on another distro
EXAMPLE_HOSTS = SEED_HOSTS + OLLAMA_HOSTS + VARIANT_HOSTS
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def ansible_env(json_results: bool = False) -> dict[str, str]:
    """The environment of a test's ansible-playbook: this checkout's roles, config and generators, no colours;
    ``json_results`` prints each task's result as JSON."""
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PYTHONPATH": str(ROOT),
    }
    if json_results:
        env |= {"ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    return env


def raw_vars(host: str, inventory: Path = EXAMPLE) -> dict[str, Any]:
    """A host's llamafleet variables straight from its host_vars file (for tests that tweak them)."""
    return yaml.safe_load((inventory / "host_vars" / f"{host}.yml").read_text())


def parse(host: str, inventory: Path = EXAMPLE) -> Host:
    """A host's typed description, after every check the render runs (SpecError otherwise)."""
    return plan_hostvars(host, host_vars(inventory, host)).spec


def facts_of(spec: Host, name: str = "host") -> HostFacts:
    return facts_from_spec(spec, name)


def plan_of(spec: Host, name: str = "host") -> HostPlan:
    """The plan of a typed description (raises SpecError for problems across fields)."""
    return plan_host(spec, facts_from_spec(spec, name), name)


def parse_tweaked(host: str, change: dict[str, Any], inventory: Path = EXAMPLE) -> Host:
    """Parse a host after a deep update of its llamafleet mapping."""
    data = copy.deepcopy(raw_vars(host, inventory))

    def deep(base: dict[str, Any], upd: dict[str, Any]) -> None:
        for key, value in upd.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                deep(base[key], value)
            else:
                base[key] = value

    deep(data["llamafleet"], change)
    return plan_hostvars(host, data).spec


def render_spec(spec: Host, name: str = "host") -> dict[str, RenderedFile]:
    """Every file of a typed description, the manifest included."""
    files, _ = render_plan(plan_of(spec, name))
    return {f.path: f for f in files}


def render(host: str, inventory: Path = EXAMPLE) -> dict[str, RenderedFile]:
    return render_spec(parse(host, inventory), host)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m generators ARGS`` from the repository root, run in this process (fast: no interpreter start and
    no imports per call). Its exit status and both streams come back as from a subprocess; what only a real
    process shows (tracebacks, files written with their modes) is tests/test_cli.py's."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(ROOT):
        try:
            code = cli_main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["python", "-m", "generators", *args], code, out.getvalue(), err.getvalue())
