"""What a provisioned host must show: verified on every Molecule test host with testinfra."""

import json
import time

import pytest

USER = "llama"
UNIT = "llamafleet-main.service"
PROXY_UNIT = "llamafleet-sse-proxy.service"
PORT = 8080  # the port agents use: the SSE-repair proxy's
UPSTREAM_PORT = 9080  # llama-server's own, behind the proxy (its port + 1000)


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


def get(host, url):
    """GET from inside the host: (status, body); an HTTP error status is an answer too."""
    script = (
        "import urllib.request,urllib.error\n"
        "try:\n"
        f"    r=urllib.request.urlopen({url!r},timeout=30); print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); print(e.read().decode())\n"
    )
    out = host.run("python3 -c %s", script)
    assert out.rc == 0, out.stderr
    status, _, body = out.stdout.partition("\n")
    return int(status), body


def stream(host, body):
    """POST a streamed chat completion from inside the host; the parsed JSON of every data: event."""
    script = (
        "import json,urllib.request\n"
        f"r=urllib.request.Request('http://127.0.0.1:{PORT}/v1/chat/completions',data={json.dumps(body)!r}.encode(),"
        "headers={'Content-Type':'application/json'})\n"
        "events=[]\n"
        "for line in urllib.request.urlopen(r,timeout=120):\n"
        "    line=line.decode().strip()\n"
        "    if line.startswith('data:') and line[5:].strip()!='[DONE]': events.append(json.loads(line[5:]))\n"
        "print(json.dumps(events))\n"
    )
    out = host.run("python3 -c %s", script)
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def test_existing_user_keeps_its_shell_and_comment(host):
    """prepare.yml made the user a person's login (zsh, a GECOS comment); converge only appends groups."""
    entry = host.run("getent passwd %s", USER).stdout.strip().split(":")
    assert entry[6] == "/usr/bin/zsh"
    assert entry[4] == "Lee Llama,Lab 2,,"


def test_user_is_in_the_gpu_device_groups_the_host_has(host):
    """The groups owning /dev/dri/renderD* and /dev/kfd; a container has none, so then no group is demanded
    (tests/roles/test_service_user_account.py proves the append on a real account)."""
    nodes = host.run("sh -c 'ls /dev/dri/renderD* /dev/kfd 2>/dev/null'").stdout.split()
    wanted = {host.run("stat -c %%G %s", node).stdout.strip() for node in nodes}
    groups = set(host.run("id -nG %s", USER).stdout.split())
    assert wanted <= groups


def test_user_lingers(host):
    assert host.file(f"/var/lib/systemd/linger/{USER}").exists


def test_unit_active_and_enabled_as_user_unit(host):
    assert user_systemctl(host, "is-active", UNIT).stdout.strip() == "active"
    assert user_systemctl(host, "is-enabled", UNIT).stdout.strip() == "enabled"
    assert host.file(f"/home/{USER}/.config/systemd/user/{UNIT}").user == USER
    # Not a system unit.
    assert not host.file(f"/etc/systemd/system/{UNIT}").exists


def test_health_is_200(host):
    # llama-server's own /health, and the same through the proxy (it passes every other endpoint through).
    for port in (UPSTREAM_PORT, PORT):
        status, _ = get(host, f"http://127.0.0.1:{port}/health")
        assert status == 200, port


def test_proxy_unit_active_and_enabled_as_user_unit(host):
    assert user_systemctl(host, "is-active", PROXY_UNIT).stdout.strip() == "active"
    assert user_systemctl(host, "is-enabled", PROXY_UNIT).stdout.strip() == "enabled"
    assert host.file(f"/home/{USER}/.config/systemd/user/{PROXY_UNIT}").user == USER
    assert not host.file(f"/etc/systemd/system/{PROXY_UNIT}").exists


def test_proxy_health_reports_upstream_ready(host):
    status, body = get(host, f"http://127.0.0.1:{PORT}/proxy/health")
    report = json.loads(body)
    assert status == 200
    assert report["ready"] is True and report["status"] == 200
    assert report["upstream"] == f"http://127.0.0.1:{UPSTREAM_PORT}"
    assert report["event_loop"] == "uvloop"  # the distribution's python3-uvloop, installed by the role


def test_streamed_completion_through_the_proxy(host):
    events = stream(host, {
        "model": "local", "max_tokens": 24, "temperature": 0, "stream": True,
        "messages": [{"role": "user", "content": "Name a colour."}],
    })
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
    assert len(events) > 1
    assert text.strip()


def test_other_endpoints_pass_through_the_proxy(host):
    status, body = get(host, f"http://127.0.0.1:{PORT}/v1/models")
    assert status == 200 and "local" in body


def test_metrics_of_the_server_and_the_proxy(host):
    # every llama-server runs with --metrics (the fleet status and Prometheus read it), directly and through the
    # proxy; the proxy's own counters saw the streamed completion above. A router answers /metrics per model
    # (HTTP 400 without ?model=): the one the requests above named.
    query = "?model=local" if host.backend.get_hostname() == ROUTER_HOST else ""
    for port in (UPSTREAM_PORT, PORT):
        status, body = get(host, f"http://127.0.0.1:{port}/metrics{query}")
        assert status == 200 and "\nllamacpp:tokens_predicted_total " in body, port
    status, body = get(host, f"http://127.0.0.1:{PORT}/proxy/metrics")
    streams = [line.split()[1] for line in body.splitlines() if line.startswith("llamafleet_proxy_streams_total ")]
    assert status == 200 and streams and int(streams[0]) >= 1, body


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


def listeners(host, port):
    """Local addresses of LISTEN (0A) sockets on a port, from /proc/net/tcp{,6}; 0100007F is 127.0.0.1."""
    listening = host.run("awk '$4 == \"0A\" {print $2}' /proc/net/tcp /proc/net/tcp6").stdout.split()
    return [a for a in listening if a.endswith(f":{port:04X}")]


def socket_owner(host, port):
    """The comm of the service user's process holding the LISTEN socket on a port, matched through
    /proc/<pid>/fd (read as that user: root in a container without CAP_SYS_PTRACE cannot read its fds)."""
    inodes = host.run(f"awk '$4 == \"0A\" && $2 ~ /:{port:04X}$/ {{print $10}}' /proc/net/tcp /proc/net/tcp6")
    inode = inodes.stdout.split()[0]
    found = host.run(f"runuser -u {USER} -- find /proc/[0-9]*/fd -lname 'socket:\\[{inode}\\]' 2>/dev/null")
    fds = found.stdout.split()
    assert fds, f"no process of {USER} holds the socket listening on {port}"
    return host.file(f"/proc/{fds[0].split('/')[2]}/comm").content_string.strip()


def test_listens_on_loopback_only(host):
    # llama-server on 127.0.0.1:9080 only; the proxy on 127.0.0.1:8080 only (the port agents use).
    assert listeners(host, UPSTREAM_PORT) == [f"0100007F:{UPSTREAM_PORT:04X}"]
    assert listeners(host, PORT) == [f"0100007F:{PORT:04X}"]
    assert socket_owner(host, UPSTREAM_PORT) == "llama-server"
    assert socket_owner(host, PORT).startswith("python3")


@pytest.mark.parametrize("path", ["/opt/llamafleet/llama.cpp/current/bin/llama-server"])
def test_current_points_at_versioned_build(host, path):
    current = host.file("/opt/llamafleet/llama.cpp/current")
    assert current.is_symlink and current.linked_to == "/opt/llamafleet/llama.cpp/b11434-cpu"
    assert host.file(path).user == "root"


ROUTER_HOST = "lf-ubuntu2404"  # serve: router (molecule/default/host_vars/lf-ubuntu2404.yml)
PRESET = "/var/lib/llamafleet/presets/llamafleet-main.ini"


def router_status(host):
    status, body = get(host, f"http://127.0.0.1:{UPSTREAM_PORT}/models")
    assert status == 200, body
    return {m["id"]: m["status"]["value"] for m in json.loads(body)["data"]}


def test_router_host_loads_the_model_a_request_names_and_evicts_the_other(host):
    preset = host.file(PRESET)
    if host.backend.get_hostname() != ROUTER_HOST:
        assert not preset.exists  # serve: units (the default) renders no preset
        return
    assert preset.user == "root" and preset.mode == 0o644 and "[tiny]" in preset.content_string
    status, body = get(host, f"http://127.0.0.1:{PORT}/v1/models")
    assert status == 200 and {m["id"] for m in json.loads(body)["data"]} == {"local", "tiny"}
    for model, other in (("tiny", "local"), ("local", "tiny")):
        answer = post(host, "/v1/chat/completions", {
            "model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Say hi."}]})
        assert answer["model"] == model
        wanted = {model: "loaded", other: "unloaded"}  # --models-max 1: the other evicted
        for _ in range(300):  # the router stops the evicted child in the background
            if router_status(host) == wanted:
                break
            time.sleep(0.2)
        assert router_status(host) == wanted
