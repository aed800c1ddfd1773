"""``python -m generators fit`` on the demo inventory (offline: the catalog knows its model)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hostsupport import run_cli

ROOT = Path(__file__).resolve().parents[3]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("fit", "--inventory", "inventories/demo", "--host", "demo", *args)


def test_demo_host_plans_as_a_table() -> None:
    done = _run("--ram-mib", "4096")
    assert done.returncode == 0, done.stderr
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in done.stdout
    for word in ("weights", "kv cache", "compute buffer", "headroom", "--ctx-size"):
        assert word in done.stdout


def test_demo_host_plans_as_json() -> None:
    done = _run("--ram-mib", "4096", "--json")
    assert done.returncode == 0, done.stderr
    (server,) = json.loads(done.stdout)
    assert server["fits"] is True and server["headroom_mib"]["host"] > 0
    assert {c["name"] for c in server["components"]} >= {"weights", "kv cache", "compute buffer"}


def test_too_little_ram_fails_with_the_table() -> None:
    done = _run("--ram-mib", "1300")
    assert done.returncode == 3
    assert "no configuration fits" in done.stdout and "headroom" in done.stdout


def test_unknown_host_names_the_field() -> None:
    done = _run("--ram-mib", "4096", "--host", "nosuchhost")
    assert done.returncode == 2 and "nosuchhost" in done.stderr


def test_require_fit_names_the_server_field() -> None:
    from generators.errors import SpecError
    from generators.inventory import host_vars
    from generators.pipeline import plan_hostvars
    from generators.plan.fit.servers import require_fit

    plan = plan_hostvars("demo", host_vars(ROOT / "inventories" / "demo", "demo"))
    assert require_fit(plan, ram_mib=4096)[0]["fits"]
    try:
        require_fit(plan, ram_mib=1300)
    except SpecError as exc:
        assert "llamafleet.servers[0].ctx" in str(exc) and "host demo" in str(exc)
    else:
        raise AssertionError("1300 MiB of RAM cannot hold the demo server")
