"""Fleet status: what each host's ``llamafleet_status`` module read (raw answers), parsed and shown.

Pure functions, no I/O: :func:`host_status` turns one host's raw reading and its manifest into a record (plain
JSON data: the ``-e status_json=PATH`` file and ``status --json`` print a list of them), :func:`table` lays
records out one row per server. ``playbooks/status.yml`` calls them through the fleet_status role's filter
plugin; ``python -m generators status`` runs that playbook and prints the same.

What a record says (every number read from an answer, none guessed; None when the answer lacked it):

- ``status``: ``ok`` (every server and the proxy healthy), ``degraded`` (some are not, or the build running is
  not the inventory's or cannot be read), ``down`` (none of the
  servers answers), ``unreachable`` (Ansible could not reach the host), ``failed`` (a task failed on the host
  before it could be read: its message), ``ollama`` (an Ollama host: not read);
- ``build``: ``running`` (what the ``current`` symlink points at), ``previous`` (the newest other build kept
  beside it, the one a rollback would return to), ``expected`` (the inventory's), ``matches``;
- per server: its models (``/v1/models``; ``loaded_models`` and ``model_states``: a router's state of each,
  ``loaded``, ``loading``, ``unloaded``; a plain server's one model is loaded), context per slot and slots
  (``/slots``, else ``/props``), slots busy, requests processing and deferred, throughput (``/metrics``):
  ``tokens_per_s`` and ``prompt_tokens_per_s`` are llama-server's gauges, covering the time since the previous
  ``/metrics`` read (0 when nothing ran in between: Prometheus scraping the same server resets them too),
  ``avg_tokens_per_s`` / ``avg_prompt_tokens_per_s`` the totals' ratio since the server started;
- the proxy's health and counters (``/proxy/metrics``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

STATES = ("ok", "degraded", "down", "unreachable", "failed", "ollama")
PROXY_COUNTERS = {
    "streams": "llamafleet_proxy_streams_total",
    "repaired_streams": "llamafleet_proxy_repaired_streams_total",
    "held_requests": "llamafleet_proxy_held_requests_total",
    "upstream_connects": "llamafleet_proxy_upstream_connects_total",
    "requests": "llamafleet_proxy_requests_total",
}


def parse_metrics(text: str) -> dict[str, float]:
    """A Prometheus text page as ``name`` (or ``name{k="v",...}``, labels sorted) -> value.

    prometheus_client's parser; a page it refuses is a ValueError. It names a counter's sample ``..._total``
    even where the page does not (b11434's ``llamacpp:n_tokens_max`` is read as ``llamacpp:n_tokens_max_total``);
    every counter read here is written with its ``_total``.
    """
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[sample.name + (f"{{{labels}}}" if labels else "")] = float(sample.value)
    return out


def _json(answer: Mapping[str, Any] | None) -> Any:
    """The answer's JSON body when it was a 200, else None."""
    if not answer or answer.get("status") != 200:
        return None
    try:
        return json.loads(answer.get("body") or "")
    except ValueError:
        return None


def _problem(name: str, answer: Mapping[str, Any] | None) -> str | None:
    """Why an endpoint gave nothing usable, one short phrase (None when it answered 200)."""
    if not answer:
        return f"{name}: not asked"
    if answer.get("status") == 200:
        return None
    if answer.get("status") is None:
        return f"{name}: {answer.get('error') or 'no answer'}"
    return f"{name}: HTTP {answer['status']}"


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return round(num / den, 2)


def _state(status: Any) -> str:
    return str(status.get("value", "loaded")) if isinstance(status, dict) else "loaded"


def health_of(answer: Mapping[str, Any] | None) -> str:
    """ok (200), loading (503: the model is loading), down (no answer), else ``http <status>``."""
    if not answer or answer.get("status") is None:
        return "down"
    if answer["status"] == 200:
        return "ok"
    if answer["status"] == 503:
        return "loading"
    return f"http {answer['status']}"


def server_status(raw: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """One server's record from its raw answers and its manifest entry."""
    ends = raw.get("endpoints") or {}
    problems = [p for p in (_problem(n, ends.get(n)) for n in ("models", "props", "slots", "metrics")) if p]
    if raw.get("key_error"):
        problems.insert(0, str(raw["key_error"]))
    models_doc = _json(ends.get("models"))
    listed = [m for m in (models_doc or {}).get("data", []) if isinstance(m, dict)]
    models = [str(m.get("id")) for m in listed]
    # a router lists every model of its preset with its state ({"status": {"value": "loaded"}}); a plain server
    # lists the one it serves, without a state: loaded
    states = {str(m.get("id")): _state(m.get("status")) for m in listed}
    props = _json(ends.get("props")) or {}
    slots_doc = _json(ends.get("slots"))
    slots = [s for s in slots_doc if isinstance(s, dict)] if isinstance(slots_doc, list) else []
    settings = props.get("default_generation_settings") or {}
    n_ctx = slots[0].get("n_ctx") if slots else settings.get("n_ctx")
    metrics: dict[str, float] = {}
    metrics_answer = ends.get("metrics") or {}
    if metrics_answer.get("status") == 200:
        try:
            metrics = parse_metrics(str(metrics_answer.get("body") or ""))
        except ValueError as exc:
            problems.append(f"metrics: unparsable ({exc})")
    m = metrics.get
    health = health_of(ends.get("health"))
    return {
        "name": entry.get("name", raw.get("name")),
        "unit": entry.get("unit"),
        "health": health,
        "model": entry.get("model"),
        "expected_model": entry.get("served_model"),
        "models": models,
        "loaded_models": [name for name in models if states[name] == "loaded"],
        "model_states": states,
        "device": entry.get("device") or entry.get("expected_device"),
        "build_info": props.get("build_info"),
        "n_ctx_slot": n_ctx,
        "slots": len(slots) if slots else props.get("total_slots"),
        "slots_busy": sum(1 for s in slots if s.get("is_processing")) if slots else None,
        "requests_processing": m("llamacpp:requests_processing"),
        "requests_deferred": m("llamacpp:requests_deferred"),
        "tokens_per_s": m("llamacpp:predicted_tokens_seconds"),
        "prompt_tokens_per_s": m("llamacpp:prompt_tokens_seconds"),
        "avg_tokens_per_s": _ratio(m("llamacpp:tokens_predicted_total"), m("llamacpp:tokens_predicted_seconds_total")),
        "avg_prompt_tokens_per_s": _ratio(m("llamacpp:prompt_tokens_total"), m("llamacpp:prompt_seconds_total")),
        "tokens_predicted": m("llamacpp:tokens_predicted_total"),
        "problems": problems if health == "ok" else [f"health: {health}"] + problems,
    }


def proxy_status(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    problems = [p for p in (_problem("proxy metrics", raw.get("metrics")),) if p]
    if raw.get("key_error"):
        problems.insert(0, str(raw["key_error"]))
    metrics: dict[str, float] = {}
    if (raw.get("metrics") or {}).get("status") == 200:
        try:
            metrics = parse_metrics(str(raw["metrics"].get("body") or ""))
        except ValueError as exc:
            problems.append(f"proxy metrics: unparsable ({exc})")
    counters: dict[str, float | None] = {k: metrics.get(v) for k, v in PROXY_COUNTERS.items()}
    errors = [v for k, v in metrics.items() if k.startswith("llamafleet_proxy_errors_total")]
    counters["errors"] = sum(errors) if errors else None
    return {"health": health_of(raw.get("health")), "counters": counters, "problems": problems}


def _build_of(name: str | None) -> str | None:
    """``b11434`` of ``b11434-cpu`` (or of a path ending in it)."""
    if not name:
        return None
    return name.rstrip("/").rsplit("/", 1)[-1].split("-", 1)[0]


def builds_status(raw: Mapping[str, Any] | None, expected: str | None) -> dict[str, Any]:
    raw = raw or {}
    target = raw.get("target")
    running = target.rstrip("/").rsplit("/", 1)[-1] if target else None
    backend = running.split("-", 1)[1] if running and "-" in running else None
    others = [
        e["name"] for e in raw.get("entries") or []
        if _build_of(e.get("name")) != _build_of(running) and (backend is None or e["name"].endswith("-" + backend))
    ]
    return {
        "running": running,
        "previous": others[0] if others else None,
        "expected": expected,
        "matches": running == expected if running and expected else None,
        "problems": [str(raw["error"])] if raw.get("error") else [],
    }


def host_status(host: str, raw: Mapping[str, Any] | None, manifest: Mapping[str, Any] | None,
                reach: str | None = None) -> dict[str, Any]:
    """One host's record. ``reach``: why the host could not be read (``unreachable: ...``, ``failed: ...``)."""
    manifest = manifest or {}
    cpp = manifest.get("llamacpp") or {}
    record: dict[str, Any] = {
        "host": host,
        "status": "ok",
        "engine": manifest.get("engine"),
        "backend": cpp.get("backend"),
        "devices": sorted({s.get("device") or s.get("expected_device") or "cpu" for s in manifest.get("servers", [])}),
        "build": None,
        "servers": [],
        "proxy": None,
        "problems": [],
    }
    if reach is not None:
        state, _, why = reach.partition(": ")
        record.update(status=state if state in STATES else "failed", problems=[why or reach])
        return record
    if manifest.get("engine") == "ollama":
        record["status"] = "ollama"
        return record
    raw = raw or {}
    record["build"] = builds_status(raw.get("builds"), cpp.get("version"))
    entries = {s.get("name"): s for s in manifest.get("servers", [])}
    record["servers"] = [server_status(s, entries.get(s.get("name"), {})) for s in raw.get("servers") or []]
    record["proxy"] = proxy_status(raw.get("proxy"))
    healths = [s["health"] for s in record["servers"]]
    if record["proxy"] is not None:
        healths.append(record["proxy"]["health"])
    if healths and all(h == "down" for h in healths):
        record["status"] = "down"
    elif any(h != "ok" for h in healths) or record["build"]["matches"] is False or record["build"]["problems"]:
        record["status"] = "degraded"
    record["problems"] = record["build"]["problems"] + (
        [f"running {record['build']['running']}, the inventory says {record['build']['expected']}"]
        if record["build"]["matches"] is False else []
    )
    return record


# --- the table ---------------------------------------------------------------------------------------------------

COLUMNS = ("HOST", "STATUS", "BUILD", "PREVIOUS", "BACKEND", "SERVER", "DEVICE", "HEALTH", "MODELS", "CTX/SLOT",
           "BUSY", "TOK/S", "PP TOK/S", "AVG TOK/S", "PROXY")


def _num(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, int) or float(value).is_integer() else f"{value:.1f}"


def _proxy_cell(proxy: Mapping[str, Any] | None) -> str:
    if proxy is None:
        return "-"
    c = proxy["counters"]
    return (f"{proxy['health']} streams={_num(c['streams'])} repaired={_num(c['repaired_streams'])} "
            f"held={_num(c['held_requests'])} errors={_num(c['errors'])}")


def _models_cell(server: Mapping[str, Any]) -> str:
    """The loaded models, and how many more the server could load (a router's unloaded ones)."""
    loaded = ",".join(server["loaded_models"]) or "-"
    others = len(server["models"]) - len(server["loaded_models"])
    return f"{loaded} (+{others} unloaded)" if others else loaded


def rows(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """One row per server (a host without any: one row); host columns on its first row only."""
    out: list[tuple[str, ...]] = []
    for r in records:
        build = r.get("build") or {}
        head = (r["host"], r["status"], build.get("running") or "-", build.get("previous") or "-",
                r.get("backend") or "-")
        servers = r.get("servers") or []
        if not servers:
            out.append((*head, "-", ",".join(r.get("devices") or []) or "-", "-", "-", "-", "-", "-", "-", "-",
                        _proxy_cell(r.get("proxy"))))
        for i, s in enumerate(servers):
            slots = f"{_num(s['slots_busy'])}/{_num(s['slots'])}"
            out.append((*(head if i == 0 else ("",) * len(head)), s["name"], s.get("device") or "cpu", s["health"],
                        _models_cell(s), _num(s["n_ctx_slot"]), slots, _num(s["tokens_per_s"]),
                        _num(s["prompt_tokens_per_s"]), _num(s["avg_tokens_per_s"]),
                        _proxy_cell(r.get("proxy")) if i == 0 else ""))
    return out


def table(records: Sequence[Mapping[str, Any]]) -> str:
    """The records as an aligned text table, then one line per problem (``host/server: what``)."""
    body = [COLUMNS, *rows(records)]
    widths = [max(len(row[i]) for row in body) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in body]
    for r in records:
        lines += [f"{r['host']}: {p}" for p in r.get("problems") or []]
        for s in r.get("servers") or []:
            lines += [f"{r['host']}/{s['name']}: {p}" for p in s.get("problems") or []]
        lines += [f"{r['host']}/proxy: {p}" for p in ((r.get("proxy") or {}).get("problems") or [])]
    return "\n".join(lines) + "\n"
