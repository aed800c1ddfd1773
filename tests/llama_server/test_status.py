"""Fleet status against the real llama-server b11434 (SmolLM2, --metrics, an API key) and the real SSE proxy.

The host module (roles/fleet_status/library/llamafleet_status.py) reads the server after a few requests; the
controller's parser (generators/status.py) must find the loaded model, the context per slot, the slots and a
throughput above zero in what llama-server itself answered. A port with nothing listening is "down", not an
exception. Then playbooks/status.yml runs over the local connection under --check, beside a host that cannot be
reached: the table prints, the JSON is written, nothing changes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import llamafleet_status as status_module
import openai
import pytest
import yaml
from proxy_support import LlamaServer, ProxyProcess

from generators.status import host_status, table

REPO = Path(__file__).resolve().parents[2]
SERVER_PORT, PROXY_PORT, PROM_PORT, DEAD_PORT, DEAD_SSH = 18601, 18602, 18605, 18619, 18618
KEY = "sk-status-test-0c55e1"
CTX, SLOTS = 2048, 2




@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "api-key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def served(llama_server_bin: Path, smollm2_gguf: Path, key_file: Path) -> Iterator[LlamaServer]:
    """The real server (--metrics, 2 slots of 1024, the key) after two chat completions."""
    server = LlamaServer(llama_server_bin, smollm2_gguf, port=SERVER_PORT,
                         extra=("--metrics", "--parallel", str(SLOTS), "--api-key-file", str(key_file)))
    server.start()
    try:
        for prompt in ("Count from one to five.", "Name three colours."):
            body = {"model": "local", "messages": [{"role": "user", "content": prompt}], "max_tokens": 24,
                    "temperature": 0}
            req = urllib.request.Request(server.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {KEY}"})
            with urllib.request.urlopen(req, timeout=120) as resp:
                assert resp.status == 200
        yield server
    finally:
        server.stop()


def entry(port: int, key: Path | None) -> dict:
    """A manifest server entry as the preflight render writes it (the fields the module and parser read)."""
    return {"name": "main", "unit": "llamafleet-main.service", "health_url": f"http://127.0.0.1:{port}/health",
            "api_key_file": None if key is None else str(key), "model": "smollm2", "served_model": "local",
            "device": None, "expected_device": None}


def builds_dir(root: Path) -> tuple[str, str]:
    """A prefix root as the rollout role leaves it: the running build, the previous one, `current`."""
    for name, mtime in (("b11000-cpu", 1_000), ("b11434-cpu", 2_000), ("b10405-cpu", 500)):
        (root / name).mkdir()
        os.utime(root / name, (mtime, mtime))
    (root / "current").symlink_to(root / "b11434-cpu")
    return str(root / "current"), str(root)


def test_the_module_reads_the_real_server(served: LlamaServer, key_file: Path, tmp_path: Path) -> None:
    current, prefix_root = builds_dir(tmp_path)
    raw = status_module.gather([entry(SERVER_PORT, key_file)], None, current, prefix_root, 10)
    assert KEY not in json.dumps(raw)  # the key is sent, never returned
    manifest = {"engine": "llamacpp", "llamacpp": {"backend": "cpu", "version": "b11434-cpu"},
                "servers": [entry(SERVER_PORT, key_file)], "sse_proxy": None}
    record = host_status("here", raw, manifest)
    print(table([record]))
    assert record["status"] == "ok", record
    assert record["build"] == {"running": "b11434-cpu", "previous": "b11000-cpu", "expected": "b11434-cpu",
                               "matches": True, "problems": []}
    [server] = record["servers"]
    assert server["health"] == "ok" and server["problems"] == []
    assert server["models"] == ["local"]
    assert server["n_ctx_slot"] == CTX // SLOTS
    assert server["slots"] == SLOTS and server["slots_busy"] == 0
    assert server["build_info"].startswith("b11434")
    assert server["tokens_per_s"] > 0 and server["prompt_tokens_per_s"] > 0  # the first /metrics read since
    assert server["avg_tokens_per_s"] > 0 and server["tokens_predicted"] >= 2
    assert server["requests_processing"] == 0 and server["requests_deferred"] == 0
    again = host_status("here", status_module.gather([entry(SERVER_PORT, key_file)], None, None, None, 10), manifest)
    assert again["servers"][0]["tokens_per_s"] == 0  # the read reset the gauges: nothing ran in between
    assert again["servers"][0]["avg_tokens_per_s"] == server["avg_tokens_per_s"]


def test_without_the_key_the_metrics_are_refused_and_said_so(served: LlamaServer) -> None:
    raw = status_module.gather([entry(SERVER_PORT, None)], None, None, None, 10)
    record = host_status("here", raw, {"engine": "llamacpp", "servers": [entry(SERVER_PORT, None)]})
    [server] = record["servers"]
    assert server["health"] == "ok"  # /health is public; b11434 keeps every other endpoint behind the key
    assert server["problems"] == ["models: HTTP 401", "props: HTTP 401", "slots: HTTP 401", "metrics: HTTP 401"]
    assert server["models"] == [] and server["tokens_per_s"] is None and server["n_ctx_slot"] is None


def test_a_port_with_nothing_listening_is_down(tmp_path: Path) -> None:
    missing = tmp_path / "no-key"
    raw = status_module.gather([entry(DEAD_PORT, missing)], {"health_url": f"http://127.0.0.1:{DEAD_PORT}/proxy/health",
                                                              "api_key_file": None}, None, None, 2)
    record = host_status("here", raw, {"engine": "llamacpp", "servers": [entry(DEAD_PORT, missing)]})
    assert record["status"] == "down"
    [server] = record["servers"]
    assert server["health"] == "down" and server["models"] == [] and server["tokens_per_s"] is None
    assert any("ConnectionRefusedError" in p for p in server["problems"]), server["problems"]
    assert server["problems"][1].startswith(f"api key file {missing}: FileNotFoundError")
    assert record["proxy"]["health"] == "down"
    assert "down" in table([record])


# --- the playbook, over the local connection ---------------------------------------------------------------------


@pytest.fixture
def fronted(served: LlamaServer, key_file: Path) -> Iterator[ProxyProcess]:
    """The real proxy in front of the real server, both with the key, as the inventory below describes them."""
    proxy = ProxyProcess(served.url, ("--api-key-file", str(key_file)), port=PROXY_PORT).start()
    yield proxy
    proxy.stop()


def write_inventory(tmp_path: Path, key_file: Path) -> Path:
    """here: this machine over the local connection (the real server behind the real proxy); gone: nothing there."""
    demo = yaml.safe_load((REPO / "inventories/demo/host_vars/demo.yml").read_text())["llamafleet"]
    demo.pop("distro")  # detected by host_facts
    demo["servers"] = [{**demo["servers"][0], "port": PROXY_PORT, "ctx": CTX, "parallel": SLOTS,
                        "api_key_file": str(key_file)}]
    demo["sse_proxy"] = {"upstream_port": SERVER_PORT}
    inventory = {"all": {"hosts": {
        "here": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "llamafleet": demo},
        "gone": {"ansible_host": "127.0.0.1", "ansible_port": DEAD_SSH, "ansible_user": "nobody",
                 "ansible_connection": "ssh", "llamafleet": demo},
    }}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


@pytest.mark.parametrize("check", [["--check"], []], ids=["check", "plain"])
def test_status_playbook_reads_this_host_and_reports_the_unreachable_one(
    fronted: ProxyProcess, key_file: Path, tmp_path: Path, check: list[str]
) -> None:
    write_inventory(tmp_path, key_file)
    out = tmp_path / "status.json"
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(tmp_path / "hosts.yml"),
         str(REPO / "playbooks/status.yml"), *check, "-e", f"status_json={out}"],
        check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    print(result.stdout[-6000:])
    assert result.returncode == 0, result.stdout[-3000:]  # the unreachable host is reported, not a failure
    assert re.search(r"here\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", result.stdout), result.stdout
    # the unreachable host is ignored (ignore_unreachable), reported, and the run goes on
    assert re.search(r"gone\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0\s.*ignored=1", result.stdout)
    assert KEY not in result.stdout
    records = {r["host"]: r for r in json.loads(out.read_text())}
    assert records["gone"]["status"] == "unreachable"
    assert "Connection refused" in records["gone"]["problems"][0]
    here = records["here"]
    current = Path("/opt/llamafleet/llama.cpp/current")
    if current.is_symlink():
        assert here["build"]["running"] == Path(os.readlink(current)).name
    else:  # no llamafleet build on this machine: the servers answer, the build is missing, said so
        assert here["status"] == "degraded" and here["build"]["running"] is None
        assert here["problems"] == [f"{current}: No such file or directory"]
    [server] = here["servers"]
    assert server["health"] == "ok" and server["models"] == ["local"] and server["n_ctx_slot"] == CTX // SLOTS
    assert server["slots"] == SLOTS
    assert server["avg_tokens_per_s"] > 0
    assert here["proxy"]["health"] == "ok" and here["proxy"]["counters"]["streams"] == 0
    [header] = [line for line in result.stdout.splitlines() if "HOST" in line and "AVG TOK/S" in line]
    assert header.split() == ["HOST", "STATUS", "BUILD", "PREVIOUS", "BACKEND", "SERVER", "DEVICE", "HEALTH",
                              "MODELS", "CTX/SLOT", "BUSY", "TOK/S", "PP", "TOK/S", "AVG", "TOK/S", "PROXY"]


def test_status_cli_prints_the_same_records(fronted: ProxyProcess, key_file: Path, tmp_path: Path) -> None:
    hosts = write_inventory(tmp_path, key_file)
    client = openai.OpenAI(base_url=fronted.url + "/v1", api_key=KEY, max_retries=0)
    stream = client.chat.completions.create(model="local", messages=[{"role": "user", "content": "Say hi."}],
                                            max_tokens=8, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    cmd = [sys.executable, "-m", "generators", "status", "-i", str(hosts), "--json"]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]  # one host unreachable: not every host is ok
    records = {r["host"]: r for r in json.loads(result.stdout)}
    assert records["gone"]["status"] == "unreachable"
    [server] = records["here"]["servers"]
    assert server["models"] == ["local"] and server["tokens_per_s"] > 0  # the stream ran since the last read
    assert records["here"]["proxy"]["counters"]["streams"] == 1
    assert records["here"]["proxy"]["counters"]["errors"] == 0
    text = subprocess.run(cmd[:-1], check=False, capture_output=True, text=True, cwd=REPO, timeout=300).stdout
    print(text)
    assert text.splitlines()[0].split()[:3] == ["HOST", "STATUS", "BUILD"]


def test_prometheus_scrapes_the_real_server_and_proxy(fronted: ProxyProcess, key_file: Path, tmp_path: Path) -> None:
    """The rendered files, as they are, in a real Prometheus (Debian's), on this host (--local)."""
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is missing: apt-get install prometheus"
    hosts = write_inventory(tmp_path, key_file)
    out = tmp_path / "prom"
    cmd = [sys.executable, "-m", "generators", "prometheus", "-i", str(hosts), "-l", "here", "--local", "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO, timeout=120)
    shutil.copy(key_file, out / "keys" / "here-main.key")  # what keys/README tells the user to do
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"  # the test's only change: scrape now, not in 15 s
    (out / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen([prometheus, "--config.file=prometheus.yml", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{PROM_PORT}"], cwd=out, stdout=log, stderr=log)
    try:
        def query(q: str) -> list[dict]:
            url = f"http://127.0.0.1:{PROM_PORT}/api/v1/query?" + urllib.parse.urlencode({"query": q})
            with urllib.request.urlopen(url, timeout=5) as resp:
                return json.loads(resp.read())["data"]["result"]

        up: list[dict] = []
        for _ in range(300):
            try:
                up = query('up{job=~"llamafleet.*"}')
            except OSError:
                up = []
            if len(up) == 2 and all(r["value"][1] == "1" for r in up):
                break
            time.sleep(0.2)
        assert sorted((r["metric"]["component"], r["value"][1]) for r in up) == [("llama-server", "1"),
                                                                                 ("sse-proxy", "1")], up
        [tokens] = query("llamacpp:tokens_predicted_total")
        assert float(tokens["value"][1]) > 0
        assert {k: tokens["metric"][k] for k in ("host", "server", "model", "backend", "job")} == {
            "host": "here", "server": "main", "model": "smollm2", "backend": "cpu", "job": "llamafleet-here-main"}
        [ready] = query("llamafleet_proxy_upstream_ready")
        assert ready["value"][1] == "1" and ready["metric"]["component"] == "sse-proxy"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
