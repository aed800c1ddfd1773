"""Client limits from the plan (issue 15 item 3): the agent minimum, per-model Ollama contexts, the health wait.

Real readers where there are some: the ollama role's drop-in check runs systemd-analyze on the rendered drop-in
(and on a broken one), and the chat unit's ExecStartPre is split as systemd splits it and run against an HTTP
server that answers 503 and then 200, as llama-server's /health does while it loads.
"""

from __future__ import annotations

import http.server
import importlib.util
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from generators.errors import SpecError
from hostsupport import ROOT, parse_tweaked, plan_of, raw_vars, render

_spec = importlib.util.spec_from_file_location("prop", ROOT / "tests" / "spec" / "test_property_strings.py")
assert _spec is not None and _spec.loader is not None
_prop = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_prop)
systemd_words, unit_settings = _prop.systemd_words, _prop.unit_settings  # systemd's splitting, reimplemented

ROLE_VARS = ROOT / "roles" / "ollama" / "vars" / "main.yml"


def test_opencode_below_the_agent_minimum_fails_with_one_line_naming_host_field_and_contexts() -> None:
    with pytest.raises(SpecError) as caught:
        plan_of(parse_tweaked("rtx3070", {"servers": [
            {**raw_vars("rtx3070")["llamafleet"]["servers"][0]},
            {**raw_vars("rtx3070")["llamafleet"]["servers"][1], "ctx": 32768},
        ]}), "rtx3070")
    [line] = str(caught.value).splitlines()
    assert line.startswith("host rtx3070: llamafleet.clients.opencode: no chat server serves 65536 tokens")
    assert "chat 32768" in line and "clients.agent_min_ctx" in line


def test_the_host_may_lower_the_minimum_and_a_bigger_second_chat_server_is_chosen() -> None:
    servers = raw_vars("rtx3070")["llamafleet"]["servers"]
    small = {**servers[1], "ctx": 8192, "kv_offload": True}
    agent = {**servers[1], "name": "agent", "port": 8082, "alias": "agent", "ctx": 65536}
    plan = plan_of(parse_tweaked("rtx3070", {"servers": [servers[0], small, agent]}), "rtx3070")
    assert plan.clients is not None and plan.clients.chat is not None and plan.clients.agent is not None
    assert (plan.clients.chat.model_id, plan.clients.chat.context) == ("qwen2.5-coder-14b", 8192)  # Continue
    assert (plan.clients.agent.model_id, plan.clients.agent.context) == ("agent", 65536)  # OpenCode
    lowered = parse_tweaked("rtx3070", {"servers": [servers[0], small],
                                        "clients": {"opencode": {}, "agent_min_ctx": 8192}})
    low = plan_of(lowered, "rtx3070").clients
    assert low is not None and low.agent is not None and low.agent.context == 8192


def test_outputs_never_exceed_the_context() -> None:
    for host in ("rtx3070", "rtx4060-laptop", "rtx3070-ollama", "strix-halo-ollama", "t1200-laptop", "rtx4090"):
        clients = plan_of(parse_tweaked(host, {}), host).clients
        assert clients is not None
        for endpoint in (clients.chat, clients.agent):
            assert endpoint is not None and endpoint.context is not None
            assert 0 < endpoint.output <= endpoint.context // 2, (host, endpoint)


@pytest.mark.parametrize("key", ["qwen2.5-coder:14b\n", "Qwen:14b", "qwen3:8b", "../x", "a b"])
def test_an_ollama_context_for_a_model_not_served_is_refused(key: str) -> None:
    with pytest.raises(SpecError) as caught:
        plan_of(parse_tweaked("rtx3070-ollama", {"ollama": {**raw_vars("rtx3070-ollama")["llamafleet"]["ollama"],
                                                           "contexts": {key: 65536}}}), "rtx3070-ollama")
    text = str(caught.value)
    assert text.startswith("host rtx3070-ollama: llamafleet.ollama") and "contexts" in text.splitlines()[0], text


# --- the ollama role's drop-in check, with systemd ------------------------------------------------------------


def verify_dropin(tmp_path: Path, dropin: str) -> subprocess.CompletedProcess[str]:
    """The role's validate: command, split as Ansible splits it (shlex), on a stand-in for the package's unit."""
    command = yaml.safe_load(ROLE_VARS.read_text())["__ollama_verify_dropin"]
    unit = tmp_path / "pkg" / "ollama.service"
    unit.parent.mkdir(exist_ok=True)
    unit.write_text("[Unit]\nDescription=Ollama\n[Service]\nExecStart=/bin/true serve\nUser=root\n")
    new = tmp_path / "new.conf"
    new.write_text(dropin)
    argv = shlex.split(f"{command} {shlex.quote(str(unit))} %s" % new)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_the_rendered_dropin_passes_the_roles_systemd_check(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze")
    for host in ("rtx3070-ollama", "strix-halo-ollama"):
        done = verify_dropin(tmp_path, render(host)["ollama/override.conf"].content)
        assert done.returncode == 0, (host, done.stderr)


@pytest.mark.parametrize("bad", ['Environment="A=1"\n',  # outside [Service]
                                 '[Service]\nEnvironment="A=1"\nExecStartPre=+/bin/sh -c id\nBogus=1\n'])
def test_the_roles_systemd_check_refuses_a_broken_dropin(tmp_path: Path, bad: str) -> None:
    done = verify_dropin(tmp_path, bad)
    assert done.returncode != 0 and "override.conf" in done.stderr, done.stderr


# --- the chat unit's wait for the FIM server's /health ---------------------------------------------------------


class Health(http.server.BaseHTTPRequestHandler):
    ready_at = 0.0

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status = 200 if time.monotonic() >= Health.ready_at and self.path == "/health" else 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def wait_argv(port: int, seconds: int) -> list[str]:
    chat = render("rtx3070")["systemd/user/llamafleet-chat.service"].content
    [(_, value)] = [(k, v) for k, v in unit_settings(chat) if k == "ExecStartPre"]
    argv = systemd_words(value.removeprefix("-"), exec_line=True)
    assert argv[0] == "/usr/bin/python3" and argv[-2] == "http://127.0.0.1:8081/health"
    return ["python3", *argv[1:-2], f"http://127.0.0.1:{port}/health", str(seconds)]


def test_the_exec_start_pre_waits_for_health_200_as_systemd_reads_it() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 18521), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        Health.ready_at = time.monotonic() + 3  # 503 while "loading", as llama-server's /health
        done = subprocess.run(wait_argv(18521, 30), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert time.monotonic() >= Health.ready_at  # it did wait for the 200
        Health.ready_at = time.monotonic() + 3600  # never ready: the wait gives up after its timeout, exit 1
        done = subprocess.run(wait_argv(18521, 2), capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "not healthy after 2 s" in done.stderr, done.stderr
    finally:
        server.shutdown()
