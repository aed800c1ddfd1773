"""``python -m generators prometheus``: the scrape configuration, its file-based targets and the dashboard.

The configuration goes through ``promtool check config`` (Debian's prometheus package) and a structural check of
its own; the targets through the file_sd schema; the dashboard's queries may only name metrics that the real
llama-server b11434 (tests/status/fixtures/b11434/metrics.txt) or the real proxy (its /proxy/metrics) exposes.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hostsupport import run_cli

from generators.errors import SpecError
from generators.prometheus import JOB_LABEL, PANELS, FleetHost, plan_scrape
from generators.status import parse_metrics
from llamafleet_sseproxy.server import ProxyMetrics, UpstreamState

FIXTURES = Path(__file__).parent / "fixtures" / "b11434"
REPO = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((REPO / "inventories/demo/host_vars/demo.yml").read_text())["llamafleet"]
TARGET = re.compile(r"^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")


def inventory(tmp_path: Path) -> Path:
    """lan: a server on the LAN behind the proxy, with a key; box: loopback only, no proxy; ollama: no metrics."""
    lan = {**DEMO, "servers": [{**DEMO["servers"][0], "host": "0.0.0.0", "port": 18610,
                                "api_key_file": "/home/llama/.config/llamafleet/main.key"}],
           "sse_proxy": {"upstream_port": 18611}}
    box = {**DEMO, "servers": [{**DEMO["servers"][0], "name": "chat"}], "sse_proxy": False}
    ollama = {"engine": "ollama", "distro": DEMO["distro"], "ollama": {"models": ["qwen2.5-coder:7b"]}}
    hosts = {"all": {"hosts": {"lan": {"ansible_host": "10.0.0.7", "llamafleet": lan},
                               "box": {"llamafleet": box}, "oll": {"llamafleet": ollama}}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(hosts))
    return path


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[Path, str]:
    out = tmp_path / "prom"
    result = run_cli("prometheus", "-i", str(inventory(tmp_path)), "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out, result.stderr


def test_targets_are_file_sd_with_the_labels(rendered: tuple[Path, str]) -> None:
    out, warnings = rendered
    targets = json.loads((out / "targets.json").read_text())
    assert isinstance(targets, list)
    for group in targets:  # the file_sd schema: a list of {targets: [host:port], labels: {name: string}}
        assert set(group) == {"targets", "labels"}
        assert all(isinstance(t, str) and TARGET.fullmatch(t) for t in group["targets"])
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in group["labels"].items())
    assert [(g["targets"], g["labels"]["component"], g["labels"]["__metrics_path__"]) for g in targets] == [
        (["10.0.0.7:18610"], "llama-server", "/metrics"),  # through the proxy, which forwards /metrics
        (["10.0.0.7:18610"], "sse-proxy", "/proxy/metrics"),
    ]
    labels = targets[0]["labels"]
    assert {k: labels[k] for k in ("host", "server", "model", "backend")} == {
        "host": "lan", "server": "main", "model": "smollm2", "backend": "cpu"}
    assert warnings.splitlines() == [
        "warning: host box: server chat listens on 127.0.0.1 only: not scraped (bind it beyond loopback with an "
        "api_key_file, or run Prometheus on that host)"]


def test_the_keyed_server_gets_its_own_job_and_a_key_file(rendered: tuple[Path, str]) -> None:
    out, _ = rendered
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"llamafleet", "llamafleet-lan-main"}
    keyed = jobs["llamafleet-lan-main"]
    assert keyed["authorization"] == {"type": "Bearer", "credentials_file": "keys/lan-main.key"}
    assert keyed["relabel_configs"] == [{"source_labels": [JOB_LABEL], "regex": "llamafleet\\-lan\\-main",
                                         "action": "keep"}]
    assert "authorization" not in jobs["llamafleet"]
    for job in jobs.values():
        assert job["file_sd_configs"] == [{"files": ["targets.json"], "refresh_interval": "1m"}]
    readme = (out / "keys/README").read_text()
    assert "keys/lan-main.key  <-  lan:/home/llama/.config/llamafleet/main.key" in readme
    assert "sk-" not in readme


@pytest.mark.integration  # runs promtool (Debian's prometheus package, .ci/install-deps)
def test_promtool_accepts_the_configuration(rendered: tuple[Path, str]) -> None:
    out, _ = rendered
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (Debian 12: 2.42)"
    (out / "keys/lan-main.key").write_text("sk-placeholder\n")  # what the user copies there
    result = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=out, capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_local_renders_loopback_targets_for_one_host(tmp_path: Path) -> None:
    hosts = inventory(tmp_path)
    out = tmp_path / "local"
    result = run_cli("prometheus", "-i", str(hosts), "-l", "box", "--local", "-o", str(out))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    [group] = json.loads((out / "targets.json").read_text())
    assert group["targets"] == ["127.0.0.1:8080"] and group["labels"]["host"] == "box"
    both = run_cli("prometheus", "-i", str(hosts), "--local", "-o", str(tmp_path / "x"))
    assert both.returncode == 2
    assert both.stderr.strip().endswith("--local: renders for a Prometheus on one host, got 2 llama.cpp hosts: "
                                        "pick one with --limit")
    assert not (tmp_path / "x").exists()


def test_a_bad_address_is_one_line(tmp_path: Path) -> None:
    path = inventory(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["all"]["hosts"]["lan"]["ansible_host"] = "10.0.0.7 evil"
    path.write_text(yaml.safe_dump(doc))
    result = run_cli("prometheus", "-i", str(path), "-o", str(tmp_path / "bad"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "host lan: ansible_host: '10.0.0.7 evil' is not a host name or IP address"]
    assert not (tmp_path / "bad").exists()


def exposed(text: str) -> set[str]:
    """The sample names of a page as Prometheus stores them: as written (prometheus_client's parser, which must
    accept the page, would call the counter ``llamacpp:n_tokens_max`` ``llamacpp:n_tokens_max_total``)."""
    assert parse_metrics(text)
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def real_metric_names() -> set[str]:
    """Every metric name the real llama-server and the real proxy expose, and Prometheus' own ``up``."""

    async def proxy_page() -> str:
        return ProxyMetrics().text(UpstreamState(), 0, None)

    return exposed((FIXTURES / "metrics.txt").read_text()) | exposed(asyncio.run(proxy_page())) | {"up"}


def test_the_dashboard_asks_only_for_metrics_that_exist(rendered: tuple[Path, str]) -> None:
    out, _ = rendered
    board = json.loads((out / "dashboard.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert len(exprs) == sum(len(q) for _, _, q in PANELS) and len({p["id"] for p in board["panels"]}) == len(PANELS)
    real = real_metric_names()
    used = set()
    for expr in exprs:
        # metric names: identifiers followed by a selector, not label names, functions or keywords
        used |= set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))
    assert used - real == set(), f"the dashboard asks for metrics nobody exposes: {sorted(used - real)}"
    for needed in ("llamacpp:tokens_predicted_total", "llamacpp:prompt_tokens_total", "llamacpp:requests_processing",
                   "llamacpp:requests_deferred", "llamacpp:n_tokens_max", "llamafleet_proxy_streams_total",
                   "llamafleet_proxy_repaired_streams_total", "llamafleet_proxy_held_requests_total",
                   "llamafleet_proxy_errors_total"):
        assert needed in used, needed
    assert board["templating"]["list"][0] == {"name": "datasource", "type": "datasource", "query": "prometheus",
                                              "label": "Prometheus"}


def test_two_keyed_servers_with_one_job_name_are_refused() -> None:
    def keyed(server: str) -> dict:
        return {"engine": "llamacpp", "sse_proxy": None, "servers": [
            {"name": server, "host": "0.0.0.0", "port": 8080, "api_key_file": "/k", "model": "m", "backend": "cpu"}]}

    with pytest.raises(SpecError) as err:
        plan_scrape([FleetHost("a-b", "10.0.0.1", keyed("c")), FleetHost("a", "10.0.0.2", keyed("b-c"))])
    assert str(err.value) == ("host a: servers[].name: b-c: its scrape job llamafleet-a-b-c is host a-b's too: "
                              "rename one")
