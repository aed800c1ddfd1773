"""Prometheus scrape configuration and a Grafana dashboard for a whole inventory (issue 17 item 5).

:func:`scrape_files` takes every host's name, address (``ansible_host``) and rendered manifest and returns:

- ``prometheus.yml``: scrape jobs reading ``targets.json`` (file-based service discovery) — one job for the
  targets without an API key, one per server with an ``api_key_file`` (Prometheus sends one key per job:
  ``authorization.credentials_file`` names ``keys/<host>-<server>.key``, which the user copies from the host;
  ``keys/README`` says which file from where);
- ``targets.json``: per llama-server its ``/metrics`` (through the SSE proxy when one fronts it: the proxy
  forwards ``/metrics`` and checks the same key) and per proxy its ``/proxy/metrics``, labelled ``host``,
  ``server``, ``model``, ``backend``, ``component`` (``llama-server`` | ``sse-proxy``);
- ``dashboard.json``: a Grafana dashboard of those metrics (tokens/s generated and prompt tokens/s, requests
  processing and deferred, the largest sequence and prompt cache reuse, the proxy's counters), one series per
  host and server. llama-server b11434 has no KV-cache usage metric (``kv_cache_usage_ratio`` is gone), so the
  dashboard shows what it has: ``llamacpp:n_tokens_max``, the largest sequence (prompt + generation) seen.

A server that listens on loopback only (the default, ``servers[].host: 127.0.0.1``) cannot be scraped from
another machine: it is left out, with one warning naming it (bind it beyond loopback, with an api_key_file, or
run Prometheus on that host: ``local=True`` renders for a Prometheus on the one host given, every target at its
loopback address). Ollama hosts have no Prometheus endpoint: left out.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from generators.errors import Problem, SpecError
from generators.render import RenderedFile

TARGETS = "targets.json"
JOB_LABEL = "__llamafleet_job"  # file_sd label (dropped after relabelling) that sends a target to its job
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")  # a host name (IP addresses are parsed apart)
LABEL_VALUE = re.compile(r"^[A-Za-z0-9._:/-]{1,200}$")
SCRAPE_INTERVAL = "15s"
RATE = "[$__rate_interval]"


@dataclass(frozen=True)
class FleetHost:
    name: str
    address: str
    manifest: Mapping[str, Any]


@dataclass
class Scrape:
    """What :func:`scrape_files` decided: the targets, the jobs and the warnings."""

    targets: list[dict[str, Any]] = field(default_factory=list)
    keyed: dict[str, tuple[str, str]] = field(default_factory=dict)  # job -> (host, api_key_file on the host)
    warnings: list[str] = field(default_factory=list)


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _wildcard(address: str) -> bool:
    return address in ("0.0.0.0", "::")


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _check_address(host: FleetHost) -> str:
    address = host.address.strip("[]")
    try:
        ipaddress.ip_address(address)
        return address
    except ValueError:
        pass
    if not ADDRESS.fullmatch(address):
        raise SpecError(host.name, [Problem("ansible_host", f"{host.address!r} is not a host name or IP address")])
    return address


def _label(host: str, name: str, value: Any) -> str:
    text = str(value)
    if not LABEL_VALUE.fullmatch(text):
        raise SpecError(host, [Problem(name, f"{text!r} cannot be a Prometheus label value here")])
    return text


def plan_scrape(hosts: Iterable[FleetHost], local: bool = False) -> Scrape:
    out = Scrape()
    hosts = list(hosts)
    served = [h.name for h in hosts if h.manifest.get("engine") == "llamacpp"]
    if local and len(served) != 1:
        why = f"renders for a Prometheus on one host, got {len(served)} llama.cpp hosts: pick one with --limit"
        raise SpecError(",".join(served) or "-", [Problem("--local", why)])
    for host in hosts:
        manifest = host.manifest
        if manifest.get("engine") != "llamacpp":
            continue
        address = _check_address(host)
        proxy = manifest.get("sse_proxy")
        for server in manifest.get("servers", []):
            fronted = proxy is not None and proxy.get("server") == server["name"]
            listen = proxy["listen_host"] if fronted else server["host"]
            port = int(proxy["listen_port"] if fronted else server["port"])
            if _loopback(listen) and not local:
                out.warnings.append(
                    f"host {host.name}: server {server['name']} listens on {listen} only: not scraped (bind it beyond "
                    "loopback with an api_key_file, or run Prometheus on that host)")
                continue
            if local:  # a Prometheus on the host itself: a wildcard bind is asked on loopback
                where = ("::1" if listen == "::" else "127.0.0.1") if _wildcard(listen) else listen
            else:
                where = address if _wildcard(listen) else listen
            key = server.get("api_key_file")
            job = f"llamafleet-{host.name}-{server['name']}" if key else "llamafleet"
            if key:
                if job in out.keyed and out.keyed[job][0] != host.name:  # host a-b server c, host a server b-c
                    other = out.keyed[job][0]
                    why = f"{server['name']}: its scrape job {job} is host {other}'s too: rename one"
                    raise SpecError(host.name, [Problem("servers[].name", why)])
                out.keyed[job] = (host.name, str(key))
            labels = {
                "host": _label(host.name, "host", host.name),
                "server": _label(host.name, "servers[].name", server["name"]),
                "model": _label(host.name, "servers[].model", server["model"]),
                "backend": _label(host.name, "llamacpp.backend", server["backend"]),
                JOB_LABEL: job,
            }
            target = _hostport(where, port)
            out.targets.append({"targets": [target], "labels": {**labels, "component": "llama-server",
                                                                "__metrics_path__": "/metrics"}})
            if fronted:
                out.targets.append({"targets": [target], "labels": {**labels, "component": "sse-proxy",
                                                                    "__metrics_path__": "/proxy/metrics"}})
    return out


def prometheus_config(scrape: Scrape) -> dict[str, Any]:
    jobs = sorted({t["labels"][JOB_LABEL] for t in scrape.targets} | {"llamafleet"})
    configs = []
    for job in jobs:
        config: dict[str, Any] = {
            "job_name": job,
            "file_sd_configs": [{"files": [TARGETS], "refresh_interval": "1m"}],
            "relabel_configs": [{"source_labels": [JOB_LABEL], "regex": re.escape(job), "action": "keep"}],
        }
        if job in scrape.keyed:
            key_file = f"keys/{job.removeprefix('llamafleet-')}.key"
            config["authorization"] = {"type": "Bearer", "credentials_file": key_file}
        configs.append(config)
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": configs,
    }


# --- the dashboard ----------------------------------------------------------------------------------------------

SERVER = 'component="llama-server", host=~"$host"'
PROXY = 'component="sse-proxy", host=~"$host"'
#: (title, unit, [(PromQL, legend)]): every metric name here is one the recorded b11434 /metrics or the proxy's
#: /proxy/metrics holds (tests/render/test_prometheus.py checks)
PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("Generation tokens/s (while generating)", "short", (
        (f"rate(llamacpp:tokens_predicted_total{{{SERVER}}}{RATE}) / "
         f"rate(llamacpp:tokens_predicted_seconds_total{{{SERVER}}}{RATE})", "{{host}}/{{server}}"),)),
    ("Prompt tokens/s (while processing prompts)", "short", (
        (f"rate(llamacpp:prompt_tokens_total{{{SERVER}}}{RATE}) / "
         f"rate(llamacpp:prompt_seconds_total{{{SERVER}}}{RATE})", "{{host}}/{{server}}"),)),
    ("Tokens generated per second (throughput)", "short", (
        (f"rate(llamacpp:tokens_predicted_total{{{SERVER}}}{RATE})", "{{host}}/{{server}}"),)),
    ("Requests processing / deferred", "short", (
        (f"llamacpp:requests_processing{{{SERVER}}}", "{{host}}/{{server}} processing"),
        (f"llamacpp:requests_deferred{{{SERVER}}}", "{{host}}/{{server}} deferred"),)),
    ("Largest sequence seen (tokens; b11434 has no KV-cache usage metric)", "short", (
        (f"llamacpp:n_tokens_max{{{SERVER}}}", "{{host}}/{{server}}"),)),
    ("Prompt tokens from the cache / processed, per second", "short", (
        (f"rate(llamacpp:prompt_tokens_cached_total{{{SERVER}}}{RATE})", "{{host}}/{{server}} cached"),
        (f"rate(llamacpp:prompt_tokens_total{{{SERVER}}}{RATE})", "{{host}}/{{server}} processed"),)),
    ("Proxy: streams, repairs, held requests per second", "short", (
        (f"rate(llamafleet_proxy_streams_total{{{PROXY}}}{RATE})", "{{host}} streams"),
        (f"rate(llamafleet_proxy_repaired_streams_total{{{PROXY}}}{RATE})", "{{host}} repaired"),
        (f"rate(llamafleet_proxy_held_requests_total{{{PROXY}}}{RATE})", "{{host}} held"),)),
    ("Proxy: errors per second, by kind", "short", (
        (f"sum by (host, kind) (rate(llamafleet_proxy_errors_total{{{PROXY}}}{RATE}))", "{{host}} {{kind}}"),)),
    ("Proxy: upstream connections per second, upstream ready", "short", (
        (f"rate(llamafleet_proxy_upstream_connects_total{{{PROXY}}}{RATE})", "{{host}} connects"),
        (f"llamafleet_proxy_upstream_ready{{{PROXY}}}", "{{host}} ready"),)),
    ("Up", "short", (
        ('up{job=~"llamafleet.*", host=~"$host"}', "{{host}}/{{server}} {{component}}"),)),
)


def dashboard() -> dict[str, Any]:
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    panels = []
    for i, (title, unit, queries) in enumerate(PANELS):
        panels.append({
            "id": i + 1,
            "type": "timeseries",
            "title": title,
            "datasource": datasource,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
            "targets": [{"refId": chr(ord("A") + j), "datasource": datasource, "expr": expr, "legendFormat": legend}
                        for j, (expr, legend) in enumerate(queries)],
        })
    return {
        "title": "llamafleet",
        "uid": "llamafleet-fleet",
        "tags": ["llamafleet", "llama.cpp"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            {"name": "host", "type": "query", "datasource": datasource, "label": "Host", "multi": True,
             "includeAll": True, "allValue": ".*", "refresh": 2,
             "query": {"query": 'label_values(up{job=~"llamafleet.*"}, host)', "refId": "hosts"},
             "definition": 'label_values(up{job=~"llamafleet.*"}, host)'},
        ]},
        "panels": panels,
    }


def _keys_readme(scrape: Scrape) -> str:
    lines = ["Each scrape job of a server with an API key reads its key from a file here (prometheus.yml names",
             "it). Copy each from its host (mode 0600, readable by Prometheus only); llamafleet never copies keys.", ""]
    for job, (host, path) in sorted(scrape.keyed.items()):
        lines.append(f"keys/{job.removeprefix('llamafleet-')}.key  <-  {host}:{path}")
    return "\n".join(lines) + "\n"


def scrape_files(hosts: Sequence[FleetHost], local: bool = False) -> tuple[list[RenderedFile], list[str]]:
    """The files (prometheus.yml, targets.json, dashboard.json, keys/README when a key is needed) and warnings."""
    scrape = plan_scrape(hosts, local)
    header = "# Managed by llamafleet (python -m generators prometheus): re-render instead of editing.\n"
    files = [
        RenderedFile("prometheus.yml", header + yaml.safe_dump(prometheus_config(scrape), sort_keys=False), "0644"),
        RenderedFile(TARGETS, json.dumps(scrape.targets, indent=2) + "\n", "0644"),
        RenderedFile("dashboard.json", json.dumps(dashboard(), indent=2) + "\n", "0644"),
    ]
    if scrape.keyed:
        files.append(RenderedFile("keys/README", _keys_readme(scrape), "0644"))
    return files, scrape.warnings
