"""The Vulkan test host: llama-server built with the Vulkan backend, running every layer on lavapipe (Vulkan0)."""

import json
import re
import time

USER = "llama"
UNIT = "llamafleet-main.service"
PORT = 8080
PREFIX = "/opt/llamafleet/llama.cpp/b11434-vulkan"


def user_systemctl(host, *args):
    """systemctl --user as the service user, against its own systemd instance."""
    uid = host.run("id -u %s", USER).stdout.strip()
    return host.run(f"runuser -u {USER} -- env XDG_RUNTIME_DIR=/run/user/{uid} systemctl --user " + " ".join(args))


def http(host, path, body=None, timeout=300):
    """A request from inside the host (the server binds its loopback); returns (status, text)."""
    script = (
        "import json,sys,urllib.request,urllib.error;"
        "data=sys.argv[1].encode() or None;"
        f"r=urllib.request.Request('http://127.0.0.1:{PORT}{path}',data=data,"
        "headers={'Content-Type':'application/json'});"
        "\ntry:\n"
        f" resp=urllib.request.urlopen(r,timeout={timeout});print(resp.status);print(resp.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        " print(e.code);print(e.read().decode())\n"
    )
    payload = "" if body is None else json.dumps(body)
    out = host.run("python3 -c %s %s", script, payload)
    assert out.rc == 0, out.stderr
    status, _, text = out.stdout.partition("\n")
    return int(status), text


def server_log(host):
    """llama-server's log from the journal (the user's journal, and the system's view of the user unit)."""
    user = host.run("journalctl --user -M %s@ -u llamafleet-main --no-pager -o cat", USER).stdout
    system = host.run("journalctl _SYSTEMD_USER_UNIT=%s --no-pager -o cat", UNIT).stdout
    return user + "\n" + system


def test_the_build_is_the_vulkan_one(host):
    assert host.file("/opt/llamafleet/llama.cpp/current").linked_to == PREFIX
    out = host.run("ldd %s/bin/llama-server", PREFIX)
    assert out.rc == 0 and "libvulkan.so.1" in out.stdout and "not found" not in out.stdout


def test_the_new_build_lists_lavapipe_as_vulkan0(host):
    out = host.run(
        "runuser -u %s -- env GGML_VK_VISIBLE_DEVICES=0 %s/bin/llama-server --list-devices", USER, PREFIX
    )
    assert out.rc == 0, out.stderr
    device = next(line for line in out.stdout.splitlines() if line.startswith("  Vulkan0: "))
    assert "llvmpipe" in device


def test_unit_active_and_enabled_as_user_unit(host):
    assert user_systemctl(host, "is-active", UNIT).stdout.strip() == "active"
    assert user_systemctl(host, "is-enabled", UNIT).stdout.strip() == "enabled"


def test_health_is_200(host):
    status = None
    for _ in range(60):  # the model may still be loading (503) right after a restart; not a timing assertion
        status, _ = http(host, "/health")
        if status == 200:
            break
        time.sleep(5)
    assert status == 200


def test_completion_returns_text(host):
    status, text = http(host, "/v1/chat/completions", {
        "model": "local", "max_tokens": 24, "temperature": 0,
        "messages": [{"role": "user", "content": "Name a colour."}],
    })
    assert status == 200, text
    assert json.loads(text)["choices"][0]["message"]["content"].strip()


def test_the_server_runs_on_vulkan0(host):
    log = server_log(host)
    assert "using device Vulkan0" in log, log[-4000:]
    assert "Vulkan0 model buffer size" in log, log[-4000:]
    assert "llvmpipe" in log
    offloaded = re.findall(r"offloaded (\d+)/(\d+) layers to GPU", log)
    assert offloaded and offloaded[-1][0] == offloaded[-1][1], offloaded  # every layer on Vulkan0


def test_the_cpu_build_stands_beside_and_current_stays_on_vulkan(host):
    cpu = "/opt/llamafleet/llama.cpp/b11434-cpu"
    assert host.file(f"{cpu}/bin/llama-server").is_file and host.file(f"{cpu}/bin/llama-bench").is_file
    assert host.file("/opt/llamafleet/llama.cpp/current").linked_to == PREFIX
    out = host.run(f"{cpu}/bin/llama-server --list-devices")
    assert out.rc == 0 and "Vulkan" not in out.stdout, out.stdout
