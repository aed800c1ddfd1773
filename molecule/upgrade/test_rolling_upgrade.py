"""Rolling upgrade across three real test hosts (opt-in: `make test-upgrade`, ~20-30 min on 2 cores).

1. site.yml provisions all three at build A;
2. playbooks/upgrade.yml moves all three to build B, one at a time;
3. an upgrade back to A, rigged so host 2's binary of A crashes at start (it still answers --help, so the flag
   check passes and only the probes can catch it): host 1 moves to A, host 2 rolls back and serves B,
   host 3 is never touched. Every state is checked with testinfra on every host.
"""

from __future__ import annotations

import json
import sys

import pytest
import testinfra
from upgradesupport import BUILD_A, BUILD_B, PREFIX, REPO, current, playbook, serving, start_hosts, untouched_marks

HOSTS = ["lf-up1", "lf-up2", "lf-up3"]


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    yield from start_hosts(HOSTS, tmp_path_factory.mktemp("inv"))


def test_rolling_upgrade_then_rigged_failure_rolls_back_and_stops(inventory):
    # One host first: the other two then build from its ccache (a cold build on 2 cores takes ~10 min).
    first = playbook(inventory, "site.yml", "-e", f"preflight_llamacpp_build={BUILD_A}", "-l", HOSTS[0])
    assert first.returncode == 0
    rest = playbook(inventory, "site.yml", "-e", f"preflight_llamacpp_build={BUILD_A}", "-l", ",".join(HOSTS[1:]))
    assert rest.returncode == 0
    for name in HOSTS:
        assert current(name) == f"{PREFIX}/b{BUILD_A}-cpu"
        serving(name)

    # The whole rollout, with two clients per host sending all along: straight to llama-server and through
    # the proxy (bench/rollout_window.py prints the windows; the proxy's clients must see no failure).
    window = (sys.executable, str(REPO / "bench/rollout_window.py"), "--hosts", ",".join(HOSTS), "--")
    upgrade = playbook(inventory, "playbooks/upgrade.yml", "-e", f"llamacpp_build={BUILD_B}", wrap=window)
    measured = json.loads(upgrade.stdout.strip().splitlines()[-1])
    assert measured["rc"] == 0
    for name in HOSTS:
        proxy = measured["hosts"][name]["proxy"]
        assert proxy["sent"] > 0 and proxy["failed"] == 0, (name, proxy)
    for name in HOSTS:
        assert current(name) == f"{PREFIX}/b{BUILD_B}-cpu"
        serving(name)

    again = playbook(inventory, "playbooks/upgrade.yml", "-e", f"llamacpp_build={BUILD_B}")
    assert again.returncode == 0
    assert "changed=0" in again.stdout.split("PLAY RECAP")[-1]

    # Rig host 2: its build A crashes at start but answers --help and --list-devices like the real binary, so
    # the flag and device checks pass and only the restart's health check and probes can catch it.
    rigged = f"{PREFIX}/b{BUILD_A}-cpu/bin/llama-server"
    host2 = testinfra.get_host("podman://lf-up2")
    assert host2.run(f"mv {rigged} {rigged}.real && printf '%s\\n' '#!/bin/sh' "
                     f"'case \" $* \" in *\" --help \"*|*\" --list-devices \"*) exec {rigged}.real \"$@\" ;; esac' "
                     f"'exit 1' > {rigged} && chmod 755 {rigged}").rc == 0

    host3_before = untouched_marks("lf-up3")
    rollout = playbook(inventory, "playbooks/upgrade.yml", "-e", f"llamacpp_build={BUILD_A}",
                       "-e", "rollout_health_timeout=60")  # the model loads in seconds: roll back after a minute
    assert rollout.returncode != 0
    assert f"host lf-up2: upgrade to b{BUILD_A}-cpu failed" in rollout.stdout
    assert f"rolled back to b{BUILD_B}-cpu" in rollout.stdout
    assert current("lf-up1") == f"{PREFIX}/b{BUILD_A}-cpu"
    assert current("lf-up2") == f"{PREFIX}/b{BUILD_B}-cpu"
    assert current("lf-up3") == f"{PREFIX}/b{BUILD_B}-cpu"
    assert untouched_marks("lf-up3") == host3_before
    for name in HOSTS:
        serving(name)
