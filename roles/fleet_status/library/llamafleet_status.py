#!/usr/bin/python3
# -*- coding: utf-8 -*-
# Copyright: llamafleet contributors
# Apache-2.0
"""Read what a llamafleet host is serving, raw and read-only, for the controller to parse (generators/status.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: llamafleet_status
short_description: Read a llamafleet host's builds and each llama-server's and proxy's state, changing nothing
description:
  - Reads the llama.cpp C(current) symlink and the builds kept beside it, and asks every llama-server (on its
    own address, behind any proxy) for C(/health), C(/v1/models), C(/props), C(/slots) and C(/metrics), and the
    SSE-repair proxy for C(/proxy/health) and C(/proxy/metrics). Answers come back raw (status, body, error); the
    controller parses them (C(generators/status.py)).
  - A server's API key is read from its O(servers[].api_key_file) and sent as a Bearer token; it is never
    returned. Nothing on the host changes, so check mode runs it the same way; a server or proxy that does not
    answer is reported (its error), never a failure.
  - "Reading /metrics resets llama-server's throughput gauges (llamacpp:*_tokens_seconds cover the time since
    the previous read, by this module or by Prometheus)."
options:
  servers:
    description: The manifest's C(servers) entries; C(name), C(health_url) (the server's own /health, whose
      base the other endpoints share) and C(api_key_file) are read.
    type: list
    elements: dict
    default: []
  proxy:
    description: The manifest's C(sse_proxy) entry (C(health_url), C(api_key_file)), or null.
    type: dict
  current:
    description: The symlink the units run llama-server from (the manifest's C(llamacpp.current)), or null.
    type: str
  prefix_root:
    description: Where every build's prefix lives (the manifest's C(llamacpp.prefix_root)), or null.
    type: str
  timeout:
    description: Seconds each request may take.
    type: float
    default: 5
author: llamafleet
"""

RETURN = r"""
raw:
  description: "{version, builds: {current, target, entries: [{name, mtime}]}, servers: [{name, endpoints:
    {health, models, props, slots, metrics}}], proxy: {health, metrics} or null}; each endpoint {status, body,
    error}."
  returned: always
  type: dict
"""

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request

from ansible.module_utils.basic import AnsibleModule

STATUS_VERSION = 1
MAX_BODY = 256 << 10  # bytes kept of each answer (a /props carries the chat template)
SERVER_ENDPOINTS = {"health": "/health", "models": "/v1/models", "props": "/props", "slots": "/slots",
                    "metrics": "/metrics"}
BUILD_DIR = re.compile(r"^b[0-9]+-[a-z0-9]+$")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect would carry the key elsewhere
        return None


OPENER = urllib.request.build_opener(NoRedirect, urllib.request.ProxyHandler({}))


def read_key(path):
    """(the key, None) or (None, why not): the file's first line, as llama-server and the proxy read it."""
    if not path:
        return None, None
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"api key file {path}: {type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
    return (lines[0].strip() if lines else None), None


def fetch(url, key, timeout):
    """{status, body, error}: the answer whatever its status; error (and no status) when none came."""
    headers = {"Accept": "application/json, text/plain"}
    if key:
        headers["Authorization"] = "Bearer " + key
    try:
        with OPENER.open(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            return {"status": resp.status, "body": resp.read(MAX_BODY).decode("utf-8", "replace"), "error": None}
    except urllib.error.HTTPError as exc:
        body = exc.read(MAX_BODY).decode("utf-8", "replace") if exc.fp is not None else ""
        return {"status": exc.code, "body": body, "error": None}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return {"status": None, "body": "", "error": f"{type(reason).__name__}: {reason}"}


def base_of(url, suffix):
    return url[: -len(suffix)] if url.endswith(suffix) else url.rstrip("/")


def loaded_model(answer):
    """The first model a router's /v1/models lists as loaded (None: none, or not a router's answer)."""
    try:
        data = json.loads(answer.get("body") or "").get("data") or []
    except (ValueError, AttributeError):
        return None
    for entry in data:
        status = entry.get("status") if isinstance(entry, dict) else None
        if isinstance(status, dict) and status.get("value") == "loaded" and isinstance(entry.get("id"), str):
            return entry["id"]
    return None


def read_server(server, timeout):
    """Every endpoint's answer; a router (manifest ``router``) answers /props, /slots and /metrics per model, so
    they name its loaded one (``?model=``), and are not read while none is loaded."""
    key, key_error = read_key(server.get("api_key_file"))
    base = base_of(str(server.get("health_url") or ""), "/health")
    endpoints = {}
    query = ""
    for name, path in SERVER_ENDPOINTS.items():
        if server.get("router") is not None and name in ("props", "slots", "metrics"):
            model = loaded_model(endpoints.get("models") or {})
            if model is None:
                endpoints[name] = {"status": None, "body": "", "error": "no model loaded (router)"}
                continue
            query = "?" + urllib.parse.urlencode({"model": model})
        endpoints[name] = fetch(base + path + query, None if name == "health" else key, timeout)
    return {"name": server.get("name"), "key_error": key_error, "endpoints": endpoints}


def read_proxy(proxy, timeout):
    if not proxy:
        return None
    key, key_error = read_key(proxy.get("api_key_file"))
    health = str(proxy.get("health_url") or "")
    base = base_of(health, "/proxy/health")
    return {
        "key_error": key_error,
        "health": fetch(health, key, timeout),
        "metrics": fetch(base + "/proxy/metrics", key, timeout),
    }


def read_builds(current, prefix_root):
    """The symlink's target and the build directories beside it (name, mtime), newest first."""
    out = {"current": current, "target": None, "error": None, "entries": []}
    if current:
        try:
            out["target"] = os.readlink(current)
        except OSError as exc:
            out["error"] = f"{current}: {exc.strerror or exc}"
    if prefix_root:
        try:
            names = [n for n in os.listdir(prefix_root) if BUILD_DIR.match(n)]
        except OSError:
            names = []
        entries = []
        for name in names:
            path = os.path.join(prefix_root, name)
            if os.path.isdir(path) and not os.path.islink(path):
                entries.append({"name": name, "mtime": os.stat(path).st_mtime})
        out["entries"] = sorted(entries, key=lambda e: e["mtime"], reverse=True)
    return out


def gather(servers, proxy, current, prefix_root, timeout):
    return {
        "version": STATUS_VERSION,
        "builds": read_builds(current, prefix_root),
        "servers": [read_server(s, timeout) for s in servers],
        "proxy": read_proxy(proxy, timeout),
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "servers": {"type": "list", "elements": "dict", "default": []},
            "proxy": {"type": "dict"},
            "current": {"type": "str"},
            "prefix_root": {"type": "str"},
            "timeout": {"type": "float", "default": 5},
        },
        supports_check_mode=True,
    )
    p = module.params
    module.exit_json(changed=False, raw=gather(p["servers"], p["proxy"], p["current"], p["prefix_root"],
                                                p["timeout"]))


if __name__ == "__main__":
    main()
