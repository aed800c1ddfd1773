"""API keys and secrets, run for real (ansible-playbook on this machine, connection local, as root):

* llama_server's api_keys tasks create a missing key file (0600, the service user's, 43 URL-safe random
  characters) and never overwrite one that exists; preflight's key_files tasks refuse one others can read, in one
  line naming host and file;
* the probe role sends the key to a real llama-server started with --api-key-file, so a keyed server passes its
  own probes, /props and /slots included (and the server does refuse a request without it);
* agent_clients copies the key for the login user and its configs reference that copy;
* at -vvv, with and without --check --diff, neither the server's key nor a key of the user's own config appears
  anywhere in the output, while --check --diff still names what would change.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
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

from hostsupport import ANSIBLE_PLAYBOOK, ROOT, ansible_env, raw_vars

from generators.pipeline import plan_hostvars, render_plan

SERVER_KEY = "sk-test-LEAK-123"
USER_KEY = "sk-USER-LEAK-999"  # another provider's key in the user's own OpenCode config
HOST = "strix-halo"

KEY_PLAY = """---
- name: Server key files
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Create or check the key files
      ansible.builtin.include_role:
        name: llama_server
        tasks_from: api_keys
  handlers:
    - name: Restart (the role notifies it)
      ansible.builtin.debug:
        msg: restart
      listen: llamafleet restart servers
"""

PREFLIGHT_KEY_PLAY = """---
- name: Key file check of preflight
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Check the key files
      ansible.builtin.include_role:
        name: preflight
        tasks_from: key_files
"""

CLIENTS_PLAY = """---
- name: Agent clients
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: agent_clients
"""

PROBE_PLAY = """---
- name: Probe
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: probe
"""


def rendered(tmp_path: Path, key_file: Path, port: int = 8080) -> dict[str, Any]:
    data = copy.deepcopy(raw_vars(HOST))
    data["llamafleet"]["servers"][0]["api_key_file"] = str(key_file)
    data["llamafleet"]["servers"][0]["port"] = port
    data["llamafleet"]["clients"] = {"user": "root", "home": str(tmp_path / "home"), "opencode": {"tools": "lite"},
                                     "claude_code": {}, "continue": {}}
    files, manifest = render_plan(plan_hostvars(HOST, data))
    return {"files": {f.path: {"content": f.content, "mode": f.mode} for f in files}, "manifest": manifest}


class _UnsafeDumper(yaml.SafeDumper):
    """Every string tagged !unsafe: the rendered data reaches the roles untemplated, as the preflight role's
    registered result does (Continue's ${{ secrets.NAME }} is not Jinja)."""


_UnsafeDumper.add_representer(str, lambda d, v: d.represent_scalar("!unsafe", v))


def play(tmp_path: Path, text: str, extra: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "play.yml").write_text(text)
    (tmp_path / "vars.yml").write_text(yaml.dump(extra, Dumper=_UnsafeDumper))
    env = ansible_env(json_results=True)
    playbook = ANSIBLE_PLAYBOOK
    return subprocess.run(
        [str(playbook), "-i", "localhost,", str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.yml'}",
         "-e", f"ansible_python_interpreter={sys.executable}", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=600,
    )


def account(tmp_path: Path) -> dict[str, Any]:
    return {"name": "root", "uid": 0, "home": str(tmp_path), "runtime_dir": "/run/user/0", "running": True}


def recap(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("localhost"))


def test_a_missing_key_file_is_created_once_and_never_replaced(tmp_path: Path) -> None:
    key_file = tmp_path / "etc" / "llamafleet" / "main.key"
    extra = {"preflight_rendered": rendered(tmp_path, key_file), "service_user_account": account(tmp_path)}
    done = play(tmp_path, KEY_PLAY, extra, "-vvv")
    assert done.returncode == 0, done.stdout + done.stderr
    key = key_file.read_text()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}\n", key)
    assert oct(key_file.stat().st_mode & 0o777) == "0o600" and key_file.stat().st_uid == 0
    assert key.strip() not in done.stdout + done.stderr  # created under no_log, even at -vvv
    again = play(tmp_path, KEY_PLAY, extra)
    assert again.returncode == 0 and "changed=0" in recap(again.stdout), again.stdout
    assert key_file.read_text() == key


def test_a_key_file_others_can_read_fails_in_one_line_naming_host_and_file(tmp_path: Path) -> None:
    """The check is preflight's (before any host changes; tests/roles/test_preflight_key_file.py runs site.yml)."""
    key_file = tmp_path / "main.key"
    key_file.write_text(SERVER_KEY + "\n")
    key_file.chmod(0o644)
    extra = {"preflight_rendered": rendered(tmp_path, key_file), "ansible_become_method": "su"}
    done = play(tmp_path, PREFLIGHT_KEY_PLAY, extra)
    assert done.returncode != 0
    line = next(ln for ln in done.stdout.splitlines() if "api_key_file" in ln)
    assert f"host localhost: llamafleet.servers[0].api_key_file: {key_file} is mode 0644 owned by root" in line
    assert key_file.read_text() == SERVER_KEY + "\n" and oct(key_file.stat().st_mode & 0o777) == "0o644"
    kept = play(tmp_path, KEY_PLAY, {**extra, "service_user_account": account(tmp_path)})
    assert kept.returncode == 0, kept.stdout  # llama_server's own tasks leave an existing key file alone
    assert oct(key_file.stat().st_mode & 0o777) == "0o644" and key_file.read_text() == SERVER_KEY + "\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A real llama-server (LLAMAFLEET_LLAMA_SERVER) with --api-key-file, serving SmolLM2 on a free port."""
    binary, model = os.environ.get("LLAMAFLEET_LLAMA_SERVER"), os.environ.get("LLAMAFLEET_SMOLLM2_GGUF")
    assert binary and model, 'needs the host llama-server: eval "$(cat /tmp/host-llama.env)"'
    key_file = tmp_path / "main.key"
    key_file.write_text(SERVER_KEY + "\n")
    key_file.chmod(0o600)
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    template = ROOT / "generators/data/chat_templates/chatml-json-tools.jinja"  # SmolLM2's own has no tool block
    proc = subprocess.Popen([binary, "-m", model, "--host", "127.0.0.1", "--port", str(port), "--api-key-file",
                             str(key_file), "-c", "2048", "--alias", "coder-qwen", "-np", "1", "--jinja",
                             "--chat-template-file", str(template)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):  # /health answers 200 once the model is loaded (it needs no key)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(0.2)
        yield key_file, port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_a_keyed_server_passes_its_probes_and_refuses_requests_without_the_key(
        tmp_path: Path, keyed_server: tuple[Path, int]) -> None:
    """Every probe gets through with the key read on the host, and the same probes without it get 401.

    The server is SmolLM2-135M with a tools template, planned as it runs (2048 context, one slot, alias coder-qwen):
    chat, the forced call and /props, /slots pass; SmolLM2 never calls write_file by itself, so the agent probe
    (agent_probe: warn here) passes with its warning."""
    key_file, port = keyed_server
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    short = ("-e", "probe_max_tokens=8", "-e", "probe_tool_max_tokens=100", "-e", "probe_agent_max_tokens=16")
    keyed = rendered(tmp_path, key_file, port)
    keyed["manifest"]["servers"][0]["probe"] |= {
        "agent_probe": "warn", "slots": 1, "tools_template": True,
        "models": [{"name": "coder-qwen", "n_ctx_slot": 2048, "alias": "coder-qwen"}]}
    done = play(tmp_path, PROBE_PLAY, {"preflight_rendered": keyed}, "-vvv", *short)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "failed=0" in recap(done.stdout), out
    assert "/props n_ctx 2048 x 1 slots, alias coder-qwen" in out and "HTTP 401" not in out, out
    assert SERVER_KEY not in out
    unkeyed = copy.deepcopy(keyed)
    unkeyed["manifest"]["servers"][0]["api_key_file"] = None
    without = play(tmp_path, PROBE_PLAY, {"preflight_rendered": unkeyed}, *short)
    assert without.returncode != 0, without.stdout
    assert "host localhost: server main: chat: HTTP 401: 'Invalid API Key'" in without.stdout, without.stdout


def test_nothing_secret_reaches_the_output_at_vvv_and_check_diff_names_the_change(tmp_path: Path) -> None:
    key_file = tmp_path / "main.key"
    key_file.write_text(SERVER_KEY + "\n")
    key_file.chmod(0o600)
    home = tmp_path / "home"
    opencode = home / ".config/opencode/opencode.json"
    opencode.parent.mkdir(parents=True)
    opencode.write_text(json.dumps({"theme": "x", "provider": {"openai": {"options": {"apiKey": USER_KEY}}}}))
    extra = {"preflight_rendered": rendered(tmp_path, key_file), "service_user_account": account(tmp_path)}

    check = play(tmp_path, CLIENTS_PLAY, extra, "-vvv", "--check", "--diff")
    out = check.stdout + check.stderr
    assert check.returncode == 0, out
    assert SERVER_KEY not in out and USER_KEY not in out
    compact = re.sub(r"\s+", "", out)  # the callback pretty-prints the summary
    assert '"added":["$schema","model","tools"],"changed":["provider"]' in compact  # what would change, by key
    assert '"removed":[]' in compact and '"baseURL":"http://127.0.0.1:8080/v1"' in compact
    assert "<redacted>" in out and json.loads(opencode.read_text())["theme"] == "x"  # check mode wrote nothing

    done = play(tmp_path, CLIENTS_PLAY, extra, "-vvv", "--diff")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert SERVER_KEY not in out and USER_KEY not in out
    copy_ = home / ".config/llamafleet/keys/main.key"
    assert copy_.read_text() == SERVER_KEY + "\n" and oct(copy_.stat().st_mode & 0o777) == "0o600"
    merged = json.loads(opencode.read_text())
    assert merged["provider"]["llamafleet"]["options"]["apiKey"] == "{file:" + str(copy_) + "}"
    assert merged["provider"]["openai"]["options"]["apiKey"] == USER_KEY
    claude = json.loads((home / ".claude/settings.json").read_text())
    assert claude["apiKeyHelper"] == f"cat {copy_}" and "ANTHROPIC_AUTH_TOKEN" not in claude["env"]
    assert SERVER_KEY not in opencode.read_text() + (home / ".claude/settings.json").read_text()
    cont = (home / ".continue/config.yaml").read_text()
    assert "apiKey: ${{ secrets.LLAMAFLEET_MAIN_API_KEY }}" in cont and SERVER_KEY not in cont
    dotenv = home / ".continue/.env"
    assert dotenv.read_text() == f"LLAMAFLEET_MAIN_API_KEY={SERVER_KEY}\n" and oct(dotenv.stat().st_mode & 0o777) == "0o600"

    again = play(tmp_path, CLIENTS_PLAY, extra)
    assert again.returncode == 0 and "changed=0" in recap(again.stdout), again.stdout


def test_an_unreadable_user_file_fails_in_one_line_without_quoting_it(tmp_path: Path) -> None:
    key_file = tmp_path / "main.key"
    key_file.write_text(SERVER_KEY + "\n")
    key_file.chmod(0o600)
    settings = tmp_path / "home/.claude/settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"apiKey": "' + USER_KEY + '",, }')
    extra = {"preflight_rendered": rendered(tmp_path, key_file), "service_user_account": account(tmp_path)}
    done = play(tmp_path, CLIENTS_PLAY, extra, "-vvv")
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"host localhost: {settings} is not valid json: " in out and "never overwrites" in out
    assert USER_KEY not in out and settings.read_text().startswith('{"apiKey"')


@pytest.fixture(autouse=True)
def _root_only() -> None:
    assert os.geteuid() == 0, "the role tests chown files to root: run them as root (this machine's default)"
