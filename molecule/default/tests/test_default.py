"""What a provisioned host must show: verified on every Molecule test host with testinfra."""

import json

import pytest

USER = "llama"
UNIT = "llamafleet-main.service"
PORT = 8080


def user_systemctl(host, *args):
    """systemctl --user as the service user, against its own systemd instance."""
    uid = host.run("id -u %s", USER).stdout.strip()
    return host.run(f"runuser -u {USER} -- env XDG_RUNTIME_DIR=/run/user/{uid} systemctl --user " + " ".join(args))


def post(host, path, body):
    """POST JSON from inside the host (the server binds its loopback)."""
    script = (
        "import urllib.request;"
        f"r=urllib.request.Request('http://127.0.0.1:{PORT}{path}',data={json.dumps(body)!r}.encode(),"
        "headers={'Content-Type':'application/json'});"
        "print(urllib.request.urlopen(r,timeout=120).read().decode())"
    )
    out = host.run("python3 -c %s", script)
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def test_user_lingers(host):
    assert host.file(f"/var/lib/systemd/linger/{USER}").exists


def test_unit_active_and_enabled_as_user_unit(host):
    assert user_systemctl(host, "is-active", UNIT).stdout.strip() == "active"
    assert user_systemctl(host, "is-enabled", UNIT).stdout.strip() == "enabled"
    assert host.file(f"/home/{USER}/.config/systemd/user/{UNIT}").user == USER
    # Not a system unit.
    assert not host.file(f"/etc/systemd/system/{UNIT}").exists


def test_health_is_200(host):
    out = host.run(f"python3 -c \"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{PORT}/health').status)\"")
    assert out.stdout.strip() == "200"


def test_completion_returns_text(host):
    reply = post(host, "/v1/chat/completions", {
        "model": "local", "max_tokens": 24, "temperature": 0,
        "messages": [{"role": "user", "content": "Name a colour."}],
    })
    assert reply["choices"][0]["message"]["content"].strip()


def test_tool_call_returns_tool_calls(host):
    reply = post(host, "/v1/chat/completions", {
        "model": "local", "max_tokens": 300, "temperature": 0, "tool_choice": "required",
        "parallel_tool_calls": False,
        "messages": [{"role": "user", "content": "Call get_weather for Oslo. Reply with JSON only."}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                 "required": ["city"]}}}],
    })
    calls = reply["choices"][0]["message"]["tool_calls"]
    assert calls[0]["function"]["name"] == "get_weather"
    assert isinstance(json.loads(calls[0]["function"]["arguments"]), dict)


def server_uids(host):
    """Real and effective uid of every llama-server process, read from /proc (no procps on minimal hosts)."""
    out = host.run("grep -l '^llama-server$' /proc/[0-9]*/comm")
    pids = [line.split("/")[2] for line in out.stdout.split()]
    assert pids, "llama-server is not running"
    return [host.run("awk '/^Uid:/ {print $2, $3}' /proc/%s/status", pid).stdout.split() for pid in pids]


def test_server_process_is_not_root(host):
    uid = host.run("id -u %s", USER).stdout.strip()
    for real, effective in server_uids(host):
        assert real == effective == uid != "0"


def test_listens_on_loopback_only(host):
    # /proc/net/tcp: local address of LISTEN (0A) sockets; 0100007F is 127.0.0.1.
    listening = host.run(f"awk '$4 == \"0A\" {{print $2}}' /proc/net/tcp /proc/net/tcp6").stdout.split()
    port_hex = f"{PORT:04X}"
    ours = [a for a in listening if a.endswith(":" + port_hex)]
    assert ours == ["0100007F:" + port_hex]


@pytest.mark.parametrize("path", ["/opt/llamafleet/llama.cpp/current/bin/llama-server"])
def test_current_points_at_versioned_build(host, path):
    current = host.file("/opt/llamafleet/llama.cpp/current")
    assert current.is_symlink and current.linked_to == "/opt/llamafleet/llama.cpp/b11434-cpu"
    assert host.file(path).user == "root"
