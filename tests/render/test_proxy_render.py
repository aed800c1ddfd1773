"""The proxy's user unit and how it is deployed: exact renders, errors, systemd's verdict, the stand-alone package."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from llamafleet_sseproxy import FILES
from llamafleet_sseproxy.__main__ import parse_args
from proxy_support import PACKAGE_ROOT, REPO, free_port, http_get

from generators.errors import SpecError
from generators.inventory import host_vars
from generators.pipeline import render_hostvars
from generators.plan.proxy import UNIT_NAME, ProxyUnit, proxy_argv
from generators.render.units import render_proxy_unit

EXPECTED = """\
# Managed by llamafleet: edits here are overwritten; change the inventory and re-run the playbook.
[Unit]
Description=llamafleet SSE-repair proxy on 127.0.0.1:8080 for llama-server at http://127.0.0.1:8081
Documentation=https://github.com/ggml-org/llama.cpp/issues/22722
After=llamafleet-main.service

[Service]
Type=exec
Environment=PYTHONPATH=/opt/llamafleet/sseproxy
Environment=PYTHONUNBUFFERED=1
Environment=PYTHONDONTWRITEBYTECODE=1
ExecStart=/usr/bin/python3 -m llamafleet_sseproxy \\
    --listen 127.0.0.1:8080 \\
    --upstream http://127.0.0.1:8081 \\
    --keepalive drop \\
    --wait-timeout 90 \\
    --split-open-brace \\
    --api-key-file /home/dev/.config/llamafleet/api-key
Restart=always
RestartSec=1
TimeoutStopSec=30
# The proxy faces the agents (beyond loopback too): room for its connections (it keeps them under the limit
# itself), no privileges, a service's native system calls, IPv4/IPv6 and local sockets only.
LimitNOFILE=65536
NoNewPrivileges=yes
UMask=0077
LockPersonality=yes
RestrictRealtime=yes
RestrictNamespaces=yes
RestrictSUIDSGID=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
# Mount sandboxing: it reads its package and the key file and writes nothing. A user unit gets these through a
# user namespace systemd (>= 253) sets up by itself; where unprivileged user namespaces are not allowed (AppArmor's
# restriction on Ubuntu 24.04) systemd skips them and the proxy still starts. llama-server's unit has none of them:
# a namespace around the GPU driver (/proc/driver, device node groups) is not tried there.
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
KeyringMode=private
# 64 requests in flight of at most 16 MiB each, and the event loop's few threads
MemoryMax=2G
TasksMax=64

[Install]
WantedBy=default.target
"""

UNIT = ProxyUnit(
    "ws1",
    keepalive="drop",
    split_open_brace=True,
    wait_timeout=90,
    upstream_unit="llamafleet-main.service",
    api_key_file="/home/dev/.config/llamafleet/api-key",
)


def test_unit_renders_exactly() -> None:
    assert render_proxy_unit(UNIT) == EXPECTED


def test_defaults_render_without_optional_lines() -> None:
    text = render_proxy_unit(ProxyUnit("ws1"))
    assert "After=" not in text
    assert "--split-open-brace" not in text
    assert "--keepalive pass \\\n    --wait-timeout 120\nRestart=always" in text


def test_ipv6_listen_address_is_bracketed() -> None:
    assert '--listen "[::1]:8080"' in render_proxy_unit(ProxyUnit("ws1", listen_host="::1"))
    assert parse_args(proxy_argv(ProxyUnit("ws1", listen_host="::1"))[3:]).listen_host == "::1"


def test_every_problem_is_reported_at_once_naming_host_and_field() -> None:
    bad = ProxyUnit(
        "ws1",
        listen_port=70000,
        listen_host="example",
        upstream_url="http://192.168.1.5:8081",
        keepalive="keep",
        wait_timeout=0,
        python="python3",
        install_dir="/opt/../etc",
        upstream_unit="llama server",
    )
    with pytest.raises(SpecError) as err:
        render_proxy_unit(bad)
    lines = str(err.value).splitlines()
    assert all(line.startswith("host ws1: sse_proxy.") for line in lines)
    fields = [line.split(": ")[1] for line in lines]
    assert fields == [
        "sse_proxy.listen_port",
        "sse_proxy.listen_host",
        "sse_proxy.upstream_url",
        "sse_proxy.keepalive",
        "sse_proxy.wait_timeout",
        "sse_proxy.python",
        "sse_proxy.install_dir",
        "sse_proxy.upstream_unit",
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://127.0.0.1:8081", "must be http://HOST:PORT"),
        ("http://127.0.0.1", "must be http://HOST:PORT"),
        ("http://127.0.0.1:8081/v1", "must be http://HOST:PORT"),
        ("http://127.0.0.1:8080", "the proxy's own listen port"),
    ],
)
def test_bad_upstream_urls(url: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        render_proxy_unit(ProxyUnit("ws1", upstream_url=url))


def test_rendered_command_line_is_accepted_by_the_proxy(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text("sk-rendered\n")
    unit = dataclasses.replace(UNIT, api_key_file=str(key))
    text = render_proxy_unit(unit)
    exec_start = text.split("ExecStart=", 1)[1].split("\nRestart=", 1)[0].replace("\\\n", " ")
    argv = shlex.split(exec_start)
    assert argv == proxy_argv(unit)
    cfg = parse_args(argv[3:])
    assert (cfg.listen_host, cfg.listen_port, cfg.upstream) == ("127.0.0.1", 8080, "http://127.0.0.1:8081")
    assert (cfg.keepalive, cfg.split_open_brace, cfg.wait_timeout) == ("drop", True, 90.0)
    assert cfg.api_key == "sk-rendered"


@pytest.mark.integration  # systemd-analyze
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    src = tmp_path / "unit"
    src.write_text(render_proxy_unit(UNIT))
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    res = subprocess.run(
        ["systemd-analyze", "verify", "--user", "--man=no", f"{src}:{UNIT_NAME}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (res.returncode, res.stderr) == (0, "")


def test_role_copies_exactly_the_package_files() -> None:
    role_vars = yaml.safe_load((REPO / "roles/sse_proxy/vars/main.yml").read_text())
    assert tuple(role_vars["__sse_proxy_files"]) == FILES
    on_disk = {p.name for p in (PACKAGE_ROOT / "llamafleet_sseproxy").glob("*.py")}
    assert on_disk == set(FILES)


def test_role_installs_the_package_where_the_unit_runs_it_and_retires_the_old_tree() -> None:
    """The manifest names install_dir and package; the role copies files/<package> there, the unit runs -m
    <package> with PYTHONPATH=<install_dir>, and the old <install_dir>/generators tree goes."""
    rendered = render_hostvars("t1200-laptop", host_vars(REPO / "inventories/example", "t1200-laptop"))
    proxy = rendered.manifest["sse_proxy"]
    assert (proxy["install_dir"], proxy["package"]) == ("/opt/llamafleet/sseproxy", "llamafleet_sseproxy")
    assert (PACKAGE_ROOT / proxy["package"] / "__main__.py").is_file()
    unit = render_proxy_unit(ProxyUnit("t1200-laptop", install_dir=proxy["install_dir"]))
    assert f"Environment=PYTHONPATH={proxy['install_dir']}\n" in unit
    assert f"-m {proxy['package']} " in unit
    role_vars = yaml.safe_load((REPO / "roles/sse_proxy/vars/main.yml").read_text())
    assert role_vars["__sse_proxy_install_dir"] == "{{ preflight_rendered.manifest.sse_proxy.install_dir }}"
    assert role_vars["__sse_proxy_package"] == "{{ preflight_rendered.manifest.sse_proxy.package }}"
    tasks = yaml.safe_load((REPO / "roles/sse_proxy/tasks/main.yml").read_text())
    copy = next(t for t in tasks if "ansible.builtin.copy" in t and "loop" in t)["ansible.builtin.copy"]
    assert copy["src"] == "{{ __sse_proxy_package }}/{{ item }}"  # from the role's own files/
    assert copy["dest"] == "{{ __sse_proxy_package_dir }}/{{ item }}"
    removed = [t["ansible.builtin.file"] for t in tasks if t.get("ansible.builtin.file", {}).get("state") == "absent"]
    assert removed == [{"path": "{{ __sse_proxy_install_dir }}/generators", "state": "absent"}]


def test_llama_server_role_retires_the_unit_the_proxy_is_installed_as() -> None:
    # the role reads the manifest's sse_proxy_unit, present on every host, proxy or not
    role_vars = yaml.safe_load((REPO / "roles/llama_server/vars/main.yml").read_text())
    assert role_vars["__llama_server_proxy_unit"] == "{{ preflight_rendered.manifest.sse_proxy_unit }}"
    for host in ("demo", "strix-halo"):
        golden = json.loads((REPO / "tests/render/golden" / host / "manifest.json").read_text())
        assert golden["sse_proxy_unit"] == UNIT_NAME


def test_package_imports_only_the_standard_library_and_aiohttp_and_uvloop_only_if_present() -> None:
    allowed = set(sys.stdlib_module_names) | {"aiohttp", "yarl"}  # yarl is aiohttp's own URL type
    for name in FILES:
        tree = ast.parse((PACKAGE_ROOT / "llamafleet_sseproxy" / name).read_text())
        guarded = {  # imports inside `try: ... except ImportError:` (optional speed-ups)
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.Try)
            and any(isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in node.handlers)
            for stmt in node.body
            for inner in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                if mod == "uvloop":
                    assert id(node) in guarded, f"{name}: uvloop must stay optional"
                    continue
                assert mod.split(".")[0] in allowed or mod.startswith("llamafleet_sseproxy"), (name, mod)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_package_runs_on_its_own_as_installed(tmp_path: Path, loop: str) -> None:
    """The files the role copies, alone under a PYTHONPATH root, run and answer /proxy/health, with or without uvloop."""
    pkg = tmp_path / "llamafleet_sseproxy"
    pkg.mkdir(parents=True)
    for name in FILES:
        shutil.copy(PACKAGE_ROOT / "llamafleet_sseproxy" / name, pkg / name)
    if loop == "asyncio":  # a host without uvloop
        (tmp_path / "uvloop.py").write_text("raise ImportError('no uvloop on this host')\n")
    port = free_port()
    cmd = [sys.executable, "-m", "llamafleet_sseproxy", "--listen", f"127.0.0.1:{port}"]
    cmd += ["--upstream", f"http://127.0.0.1:{free_port()}", "--wait-timeout", "1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)}, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                status, body = http_get(f"http://127.0.0.1:{port}/proxy/health")
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert status == 503
        assert b'"ready": false' in body
        assert f'"event_loop": "{loop}"'.encode() in body
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_fronted_servers_key_file_reaches_the_proxy_unit_and_the_manifest() -> None:
    raw = host_vars(REPO / "inventories/example", "t1200-laptop")
    key = "/home/dev/.config/llamafleet/api-key"
    for server in raw["llamafleet"]["servers"]:
        server["api_key_file"] = key
    rendered = render_hostvars("t1200-laptop", raw)
    assert rendered.manifest["sse_proxy"]["api_key_file"] == key
    unit = next(f for f in rendered.files if f.path == "systemd/user/llamafleet-sse-proxy.service").content
    assert f"    --api-key-file {key}\n" in unit
    without = render_hostvars("t1200-laptop", host_vars(REPO / "inventories/example", "t1200-laptop"))
    assert without.manifest["sse_proxy"]["api_key_file"] is None


@pytest.mark.parametrize("bad", ["relative/key", "/a/../etc/key", "/home/dev/key\nExecStartPre=/bin/true"])
def test_bad_key_file_paths_are_refused(bad: str) -> None:
    with pytest.raises(SpecError, match="sse_proxy.api_key_file"):
        render_proxy_unit(ProxyUnit("ws1", api_key_file=bad))
