"""Shared by the opt-in upgrade tests: podman test hosts from the Debian 13 image, ansible-playbook runs whose whole
output is kept in a log, and what a test asks a host (its `current` build, a chat answer and a tool call)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import testinfra
import yaml

REPO = Path(__file__).resolve().parents[2]
BUILD_A, BUILD_B = 11401, 11434
IMAGE = "localhost/llamafleet-debian13:latest"
PREFIX = "/opt/llamafleet/llama.cpp"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


def start_hosts(names: list[str], directory: Path, llamafleet: dict | None = None) -> Iterator[Path]:
    """Fresh systemd containers named ``names`` (sharing the Debian 13 ccache) and an inventory of them, described as
    every test host (molecule/shared/group_vars/llamafleet_test.yml) or as ``llamafleet``; removed afterwards."""
    ccache = Path(os.environ.get("LLAMAFLEET_CCACHE", Path.home() / ".cache/llamafleet/ccache")) / "debian13"
    ccache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", str(REPO / "molecule/images/build-image.sh"), "debian13"], check=True)
    for name in names:
        podman("rm", "-f", name, check=False)
        podman("run", "-d", "--name", name, "--hostname", name, "--systemd=always",
               "-v", "/sys/fs/cgroup/unified:/sys/fs/cgroup/unified:rw",
               "-v", f"{ccache.resolve()}:/var/cache/llamafleet/ccache:rw", IMAGE, "/sbin/init")
    for name in names:
        podman("exec", name, "systemctl", "is-system-running", "--wait", check=False)
    spec = {"llamafleet": llamafleet} if llamafleet is not None else shared_description()
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {
        name: {"ansible_connection": "containers.podman.podman", "ansible_python_interpreter": "/usr/bin/python3",
               "llamafleet_test_distro": {"name": "debian", "version": "13"}, **spec} for name in names}}}))
    yield path
    for name in names:
        podman("rm", "-f", name, check=False)


def shared_description() -> dict:
    """The test hosts' variables (``{"llamafleet": ...}``), as every scenario describes them."""
    return yaml.safe_load((REPO / "molecule/shared/group_vars/llamafleet_test.yml").read_text())


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


