"""Rolling upgrade across three real test hosts (opt-in: `make test-upgrade`, ~20-30 min on 2 cores).

1. site.yml provisions all three at build A;
2. playbooks/upgrade.yml moves all three to build B, one at a time;
3. an upgrade back to A, rigged so host 2's binary of A crashes at start (it still answers --help, so the flag
   check passes and only the probes can catch it): host 1 moves to A, host 2 rolls back and serves B,
   host 3 is never touched. Every state is checked with testinfra on every host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra
import yaml

REPO = Path(__file__).resolve().parents[2]
BUILD_A, BUILD_B = 11401, 11434
HOSTS = ["lf-up1", "lf-up2", "lf-up3"]
IMAGE = "localhost/llamafleet-debian13:latest"
PREFIX = "/opt/llamafleet/llama.cpp"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    ccache = Path(os.environ.get("LLAMAFLEET_CCACHE", Path.home() / ".cache/llamafleet/ccache")) / "debian13"
    ccache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", str(REPO / "molecule/images/build-image.sh"), "debian13"], check=True)
    for name in HOSTS:
        podman("rm", "-f", name, check=False)
        podman("run", "-d", "--name", name, "--hostname", name, "--systemd=always",
               "-v", "/sys/fs/cgroup/unified:/sys/fs/cgroup/unified:rw",
               "-v", f"{ccache.resolve()}:/var/cache/llamafleet/ccache:rw", IMAGE, "/sbin/init")
    for name in HOSTS:
        podman("exec", name, "systemctl", "is-system-running", "--wait", check=False)
    spec = yaml.safe_load((REPO / "molecule/shared/group_vars/llamafleet_test.yml").read_text())
    path = tmp_path_factory.mktemp("inv") / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {
        name: {"ansible_connection": "containers.podman.podman", "ansible_python_interpreter": "/usr/bin/python3",
               "llamafleet_test_distro": {"name": "debian", "version": "13"}, **spec} for name in HOSTS}}}))
    yield path
    for name in HOSTS:
        podman("rm", "-f", name, check=False)


def playbook(inventory: Path, play: str, *extra: str, wrap: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).with_name("ansible-playbook")
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    started = time.monotonic()
    result = subprocess.run([*wrap, str(binary), "-i", str(inventory), str(REPO / play), *extra],
                            check=False, capture_output=True, text=True, env=env, cwd=REPO)
    print(f"{play} {' '.join(extra)}: rc={result.returncode} in {time.monotonic() - started:.0f} s")
    log = Path(os.environ.get("LLAMAFLEET_UPGRADE_LOG", "/tmp/llamafleet-upgrade-test.log"))
    with log.open("a") as out:  # the whole output: a rollout's story spans every host
        out.write(f"\n===== {play} {' '.join(extra)}: rc={result.returncode}\n{result.stdout}\n{result.stderr}\n")
    print(result.stdout[-6000:])
    return result


def current(name: str) -> str:
    return testinfra.get_host(f"podman://{name}").file(f"{PREFIX}/current").linked_to


def answers(name: str) -> dict:
    """A chat completion and a required tool call, sent from inside the host."""
    host = testinfra.get_host(f"podman://{name}")
    script = (
        "import json,urllib.request\n"
        "def post(body):\n"
        "    r=urllib.request.Request('http://127.0.0.1:8080/v1/chat/completions',data=json.dumps(body).encode(),"
        "headers={'Content-Type':'application/json'})\n"
        "    return json.load(urllib.request.urlopen(r,timeout=120))['choices'][0]['message']\n"
        "tool={'type':'function','function':{'name':'get_weather','parameters':{'type':'object',"
        "'properties':{'city':{'type':'string'}},'required':['city']}}}\n"
        "text=post({'model':'local','max_tokens':16,'messages':[{'role':'user','content':'Hi'}]})\n"
        "call=post({'model':'local','max_tokens':300,'temperature':0,'tool_choice':'required',"
        "'parallel_tool_calls':False,'tools':[tool],"
        "'messages':[{'role':'user','content':'Call get_weather for Oslo. Reply with JSON only.'}]})\n"
        "print(json.dumps({'text':text.get('content'),'tool':call.get('tool_calls')}))\n"
    )
    out = host.run("python3 -c %s", script)
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def untouched_marks(name: str) -> tuple[str, str]:
    """When `current` last moved and when the server last started: both stay put on an untouched host."""
    host = testinfra.get_host(f"podman://{name}")
    link = host.run(f"stat -c %Y {PREFIX}/current").stdout.strip()
    started = host.run("runuser -u llama -- env XDG_RUNTIME_DIR=/run/user/$(id -u llama) "
                       "systemctl --user show -p ActiveEnterTimestampMonotonic llamafleet-main.service")
    return link, started.stdout.strip()


def serving(name: str) -> None:
    reply = answers(name)
    assert reply["text"].strip()
    assert reply["tool"][0]["function"]["name"] == "get_weather"


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
