"""Benchmarks on the controller: plan a host's sweep, keep its records, report them, choose the tuned flags.

- :func:`plan_sweep`: the host's sweep (``generators/plan/bench.py``) from its variables, as the bench role's action
  plugin and ``bench_vs_deployed.py`` take it (a table to show and the llama-bench runs);
- :func:`records_from_results`: the host module's results as records, one per host × build × backend × model ×
  flags (its prefill and generation tests at each depth inside), keyed by GPU, driver, build and quantization;
  :func:`append_records` appends them as JSON lines to ``<inventory_dir>/bench/<host>.jsonl`` (never rewritten);
- :func:`report`: a Markdown table and a PNG chart comparing backends and flags, generation as a fraction of the
  host's ceiling (bandwidth / bytes read per token: the active weights plus the KV cache at that depth);
- :func:`choose`: per server, the fastest configuration on the serving build that the memory planner accepts
  (the host rendered with it), and why; :func:`tuned_text` writes it as the host's tuned file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generators.errors import Problem, SpecError
from generators.inventory import check_bounded, plain
from generators.pipeline import hostvars_of, plan_hostvars, render_hostvars
from generators.plan.bench import DEFAULT_BUDGET_S, DEPTH_CAP, HostSweep, active_bytes, bench_env, host_sweep
from generators.plan.fit.check import model_facts
from generators.plan.fit.planner import Config, kv_cache_layers
from generators.plan.host import HostPlan
from generators.tuned import Tuned, dump_tuned, parse_tuned, read_tuned, tuned_path

SCHEMA = 1
BENCH_DIR = "bench"
BENCH, BATCHED = "llama-bench", "llama-batched-bench"  # a record's tool (records without one are llama-bench's)
#: a variant must beat the deployed configuration by this much (geometric mean of prefill and generation at the
#: configured depth) to be chosen: run-to-run noise is a few percent
MIN_GAIN = 0.03


def records_path(inventory: str | Path, host: str) -> Path:
    root = Path(inventory)
    return (root if root.is_dir() else root.parent) / BENCH_DIR / f"{host}.jsonl"


# --- the sweep --------------------------------------------------------------------------------------------------


def plan_sweep(host: str, hostvars: dict[str, Any], probe: Any = None, tuned: Tuned | None = None,
               cores: int | None = None, budget_s: int = DEFAULT_BUDGET_S, depth_cap: int = DEPTH_CAP,
               measured_gbs: float | None = None) -> tuple[HostPlan, HostSweep]:
    plan = plan_hostvars(host, hostvars, probe, tuned)
    return plan, host_sweep(plan, cores, budget_s, depth_cap, measured_gbs)


def sweep_json(sweep: HostSweep, bench_bin: str = "bin/llama-bench") -> dict[str, Any]:
    return {"host": sweep.host, "budget_s": sweep.budget_s, "estimate_s": round(sweep.estimate_s, 1),
            "table": sweep.table(), "runs": sweep.runs(bench_bin), "trimmed": list(sweep.trimmed)}


# --- records ------------------------------------------------------------------------------------------------------


def quantization(model_type: str) -> str:
    """The quantization llama-bench names last in ``model_type`` (``llama 256M Q4_1`` -> ``Q4_1``)."""
    parts = str(model_type).split()
    return parts[-1] if parts else "?"


def kv_bytes(plan: HostPlan, server_name: str, flags: dict[str, Any], depth: int) -> int | None:
    """Bytes of KV cache a token reads at ``depth`` (the planner's KV model), None without model facts."""
    server = next((s for s in plan.servers if s.name == server_name), None)
    facts = None if server is None else model_facts(server.model)
    if facts is None:
        return None
    if depth <= 0:
        return 0
    cfg = Config(ctx=depth, cache_type_k=flags["cache_k"], cache_type_v=flags["cache_v"],
                 flash_attn=bool(flags["flash_attn"]))
    full = sum(size for _, size in kv_cache_layers(facts, cfg))
    cells = -(-depth // 256) * 256
    return full * depth // cells


def weight_bytes(plan: HostPlan, server_name: str, model_size: int) -> tuple[int, str]:
    server = next((s for s in plan.servers if s.name == server_name), None)
    facts = None if server is None else model_facts(server.model)
    if facts is None:
        return model_size, "llama-bench model_size"
    return active_bytes(facts), "active weights (model facts)"


def _ceiling_gbs(plan: HostPlan, server_name: str, backend: str, measured: float | None) -> tuple[float | None, str]:
    server = next((s for s in plan.servers if s.name == server_name), None)
    if backend != "cpu" and server is not None and server.gpu is not None and server.gpu.bandwidth_gbs:
        return float(server.gpu.bandwidth_gbs), "GPU catalog bandwidth_gbs"
    if measured:
        return float(measured), "measured on the host (memory copy)"
    return None, "not measured"


def records_from_results(plan: HostPlan, output: dict[str, Any]) -> list[dict[str, Any]]:
    """The host module's output as records (failed runs are kept too, with their error)."""
    bw = output.get("bandwidth") or {}
    measured = bw.get("gbs")
    driver = None
    toolchain = plan.facts.cuda_toolchain
    if toolchain is not None and getattr(toolchain, "driver", None) is not None:
        driver = str(toolchain.driver)
    records: list[dict[str, Any]] = []
    batched: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for run in output.get("results", []):
        meta = {k: run.get(k) for k in ("server", "model", "version", "backend", "build", "deployed", "label")}
        flags = dict(run.get("config") or {})
        base = {"schema": SCHEMA, "host": plan.name, **meta, "tool": run.get("tool") or BENCH, "flags": flags,
                "args": run.get("args", []), "seconds": run.get("seconds")}
        if not run.get("ok"):
            records.append({**base, "ok": False, "error": run.get("error"), "tests": []})
            continue
        if base["tool"] == BATCHED:
            batched.append((base, run))
            continue
        raw = run.get("records") or []
        first = raw[0] if raw else {}
        gpu = first.get("gpu_info") or f"cpu: {first.get('cpu_info', '?')}"
        ceiling, source = _ceiling_gbs(plan, str(meta["server"]), str(meta["backend"]), measured)
        weights, weights_source = weight_bytes(plan, str(meta["server"]), int(first.get("model_size") or 0))
        tests = []
        for r in raw:
            test = "pp" if int(r.get("n_prompt") or 0) > 0 else "tg"
            depth = int(r.get("n_depth") or 0)
            entry: dict[str, Any] = {"test": test, "n_depth": depth, "n_prompt": r.get("n_prompt"),
                                     "n_gen": r.get("n_gen"), "avg_ts": r.get("avg_ts"),
                                     "stddev_ts": r.get("stddev_ts"), "samples_ts": r.get("samples_ts")}
            if test == "tg":
                kv = kv_bytes(plan, str(meta["server"]), flags, depth)
                per_token = weights + (kv or 0)
                entry.update(bytes_per_token=per_token, kv_bytes=kv)
                if ceiling:
                    entry["ceiling_ts"] = ceiling * 1e9 / per_token
                    entry["fraction_of_ceiling"] = float(r["avg_ts"]) / entry["ceiling_ts"]
            tests.append(entry)
        key = {"gpu": gpu, "driver": driver, "build": first.get("build_number", meta["build"]),
               "quantization": quantization(first.get("model_type", ""))}
        records.append({
            **base, "ok": True, "key": key, "time": first.get("test_time"), "backends": first.get("backends"),
            "model_type": first.get("model_type"), "model_size": first.get("model_size"),
            "model_n_params": first.get("model_n_params"), "bandwidth_gbs": ceiling, "bandwidth_source": source,
            "bandwidth_probe": bw or None, "weights_bytes": weights, "weights_source": weights_source,
            "tests": tests,
        })
    for base, run in batched:  # keyed like the same build's llama-bench records (batched-bench prints no device)
        twin = next((r for r in records if r.get("ok") and r["version"] == base["version"]
                     and r["server"] == base["server"]), None)
        key = dict(twin["key"]) if twin else {"gpu": None, "driver": driver, "build": base["build"],
                                               "quantization": None}
        tests = [{"test": "pl", "pl": int(r["pl"]), "pp": r.get("pp"), "tg": r.get("tg"), "n_kv": r.get("n_kv"),
                  "speed_pp": r.get("speed_pp"), "speed_tg": r.get("speed_tg"), "speed": r.get("speed")}
                 for r in run.get("records") or []]
        records.append({**base, "ok": True, "key": key, "tests": tests})
    return records


def append_records(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records as JSON lines (the file is never rewritten); the count appended."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("a", encoding="utf-8") as handle:
        for r in records:
            handle.write(json.dumps(r, sort_keys=True) + "\n")
            n += 1
        handle.flush()
    return n


def read_records(host: str, path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise SpecError(host, [Problem(str(path), "no bench records: run `ansible-playbook playbooks/bench.yml -l "
                                                  f"{host}` first")])
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise SpecError(host, [Problem(f"{path}:{n}", f"not a JSON record ({exc})")]) from None
        if rec.get("host") == host and rec.get("schema") == SCHEMA:
            out.append(rec)
    return out


# --- the report ---------------------------------------------------------------------------------------------------


def speed(record: dict[str, Any], test: str, depth: int) -> float | None:
    for t in record.get("tests", []):
        if t["test"] == test and t["n_depth"] == depth:
            return float(t["avg_ts"])
    return None


def fraction(record: dict[str, Any], depth: int) -> float | None:
    for t in record.get("tests", []):
        if t["test"] == "tg" and t["n_depth"] == depth:
            return t.get("fraction_of_ceiling")
    return None


def depths_of(records: Sequence[dict[str, Any]]) -> list[int]:
    return sorted({t["n_depth"] for r in records for t in r.get("tests", [])})


def latest(records: Sequence[dict[str, Any]], tool: str = BENCH) -> list[dict[str, Any]]:
    """The newest record of ``tool`` for each (build version, server, flags): a rerun replaces older ones in the
    report."""
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        if not r.get("ok") or r.get("tool", BENCH) != tool:
            continue
        seen[json.dumps([r["version"], r["server"], r["model"], r["flags"]], sort_keys=True)] = r
    return list(seen.values())


def score(record: dict[str, Any], base: dict[str, Any], depth: int) -> float | None:
    """Geometric mean of prefill and generation speed at ``depth`` relative to ``base``."""
    ratios = []
    for test in ("pp", "tg"):
        a, b = speed(record, test, depth), speed(base, test, depth)
        if a is None or not b:
            return None
        ratios.append(a / b)
    return math.sqrt(ratios[0] * ratios[1])


def markdown(host: str, records: Sequence[dict[str, Any]]) -> str:
    rows = latest(records)
    depths = depths_of(rows)
    head = ["build", "server", "flags", *[f"pp t/s d{d}" for d in depths], *[f"tg t/s d{d}" for d in depths],
            *[f"tg/ceiling d{d}" for d in depths]]
    lines = [f"### bench: {host}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (r["version"], r["server"], not r["deployed"], r["label"])):
        cells = [r["version"], r["server"], r["label"] + (" (deployed)" if r["deployed"] else "")]
        for test in ("pp", "tg"):
            cells += [_num(speed(r, test, d)) for d in depths]
        cells += [_pct(fraction(r, d)) for d in depths]
        lines.append("| " + " | ".join(cells) + " |")
    first = rows[0] if rows else {}
    if first:
        lines += ["", f"key: {json.dumps(first.get('key'), sort_keys=True)}; ceiling: {first.get('bandwidth_gbs')} "
                      f"GB/s ({first.get('bandwidth_source')}) / bytes read per token ({first.get('weights_source')} "
                      "+ KV at that depth)"]
    lines += slots_markdown(records)
    return "\n".join(lines) + "\n"


def slots_markdown(records: Sequence[dict[str, Any]]) -> list[str]:
    """The llama-batched-bench table: per parallel sequences, the aggregate generation speed, what one sequence
    gets, and the aggregate against one sequence alone (how much each added slot adds)."""
    rows = latest(records, BATCHED)
    if not rows:
        return []
    lines = ["", "### slots (llama-batched-bench, deployed flags)", "",
             "| build | server | parallel | pp t/s (all) | tg t/s (all) | tg t/s per sequence | tg vs 1 sequence |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["version"], r["server"])):
        tests = sorted(r["tests"], key=lambda t: t["pl"])
        alone = next((t["speed_tg"] for t in tests if t["pl"] == 1), None)
        for t in tests:
            gain = f"{t['speed_tg'] / alone:.2f}x" if alone else "-"
            lines.append(f"| {r['version']} | {r['server']} | {t['pl']} | {_num(t['speed_pp'])} | "
                         f"{_num(t['speed_tg'])} | {_num(t['speed_tg'] / t['pl'])} | {gain} |")
    return lines


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def series(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the chart plots: per record label, the speeds by test and depth (written into the PNG as text)."""
    rows = latest(records)
    out = []
    for r in sorted(rows, key=lambda r: (r["version"], r["server"], not r["deployed"], r["label"])):
        out.append({"label": f"{r['version']} {r['server']} {r['label']}", "deployed": r["deployed"],
                    "tests": [{"test": t["test"], "n_depth": t["n_depth"], "avg_ts": t["avg_ts"]}
                              for t in r["tests"]]})
    return {"depths": depths_of(rows), "series": out}


def chart(host: str, records: Sequence[dict[str, Any]], out: Path) -> Path:
    """A PNG: prefill and generation speed per configuration (one bar per depth), the deployed one marked; the
    plotted numbers are written into the PNG as the ``llamafleet-series`` text chunk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = series(records)
    labels = [s["label"] + (" *" if s["deployed"] else "") for s in data["series"]]
    depths = data["depths"]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.0 * len(labels) + 4), 5 + 0.12 * len(labels)))
    width = 0.8 / max(1, len(depths))
    for ax, test, title in ((axes[0], "pp", "prefill (tokens/s)"), (axes[1], "tg", "generation (tokens/s)")):
        for j, d in enumerate(depths):
            values = [next((t["avg_ts"] for t in s["tests"] if t["test"] == test and t["n_depth"] == d), 0.0)
                      for s in data["series"]]
            ax.barh([i + j * width for i in range(len(labels))], values, height=width, label=f"depth {d}")
        ax.set_yticks([i + width * (len(depths) - 1) / 2 for i in range(len(labels))], labels, fontsize=7)
        ax.set_title(title)
        ax.invert_yaxis()
        ax.legend(fontsize=7)
    axes[1].set_yticklabels([])
    fig.suptitle(f"llama-bench on {host} (* deployed)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=90, bbox_inches="tight",
                metadata={"llamafleet-series": json.dumps(data, sort_keys=True)})
    plt.close(fig)
    return out


# --- the choice ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    server: str
    winner: dict[str, Any] | None  # the record chosen (None: the deployed configuration stays)
    deployed: dict[str, Any] | None
    why: str
    fields: dict[str, Any]  # the tuned file's fields for this server ({} when nothing changes)


def tuned_fields(flags: dict[str, Any], deployed: dict[str, Any], backend: str) -> dict[str, Any]:
    """The host_vars fields of the flags that differ from the deployed ones (the tuned file changes only those)."""
    def spelled(f: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"batch": int(f["batch"]), "ubatch": int(f["ubatch"]),
                               "flash_attn": "on" if f["flash_attn"] else "off",
                               "cache_type_k": f["cache_k"], "cache_type_v": f["cache_v"]}
        if backend == "cpu" and f.get("threads"):
            out["threads"] = int(f["threads"])
        return out

    now, then = spelled(flags), spelled(deployed)
    return {k: v for k, v in now.items() if then.get(k) != v}


def choose(host: str, hostvars: dict[str, Any], records: Sequence[dict[str, Any]], probe: Any = None,
           min_gain: float = MIN_GAIN) -> list[Choice]:
    """Per server of the serving build, the fastest measured configuration the planner accepts (the host renders
    with it as its tuned file), or the deployed one when none beats it by ``min_gain``."""
    plan = plan_hostvars(host, hostvars, probe)
    assert plan.llamacpp is not None
    version = plan.llamacpp.serving.version
    rows = [r for r in latest(records) if r["version"] == version]
    out: list[Choice] = []
    for server in plan.servers:
        mine = [r for r in rows if r["server"] == server.name and r["model"] == server.model.name]
        deployed = next((r for r in mine if r["deployed"]), None)
        if deployed is None:
            out.append(Choice(server.name, None, None, f"no record of the deployed configuration on {version}", {}))
            continue
        depth = max(t["n_depth"] for t in deployed["tests"])
        ranked = sorted(((score(r, deployed, depth), r) for r in mine if not r["deployed"]),
                        key=lambda p: -(p[0] or 0.0))
        chosen: Choice | None = None
        refused: list[str] = []
        for s, r in ranked:
            if s is None or s < 1 + min_gain:
                break
            if int(r["flags"].get("n_cpu_moe") or 0):
                continue  # no host_vars field carries -ncmoe: reported, not tuned
            fields = tuned_fields(r["flags"], deployed["flags"], plan.backend)
            try:
                tuned = parse_tuned(host, "(candidate)", {"host": host, "servers": {server.name: fields}})
                render_hostvars(host, hostvars, probe=probe, tuned=tuned)
            except SpecError as exc:
                refused.append(f"{r['label']} refused by the render ({str(exc).splitlines()[0]})")
                continue
            why = (f"{r['label']} beats the deployed {deployed['label']} by {100 * (s - 1):.1f} % at depth {depth}: "
                   f"prefill {speed(r, 'pp', depth):.2f} vs {speed(deployed, 'pp', depth):.2f} t/s, generation "
                   f"{speed(r, 'tg', depth):.2f} vs {speed(deployed, 'tg', depth):.2f} t/s; the memory planner "
                   f"accepts it at the server's context")
            chosen = Choice(server.name, r, deployed, why, fields)
            break
        if chosen is None:
            best = ranked[0] if ranked else (None, None)
            note = (f"best variant {best[1]['label']} scores {best[0]:.3f}" if best[1] is not None and best[0]
                    else "no variant measured")
            chosen = Choice(server.name, None, deployed,
                            f"the deployed {deployed['label']} stays: {note} (needs > {1 + min_gain:.2f} and the "
                            "planner's acceptance)" + "".join(f"; {x}" for x in refused), {})
        out.append(chosen)
    return out


def tuned_text(host: str, choices: Sequence[Choice]) -> str | None:
    servers = {c.server: c.fields for c in choices if c.fields}
    if not servers:
        return None
    return dump_tuned(host, servers, {c.server: c.why for c in choices if c.fields})


def report(host: str, records: Sequence[dict[str, Any]], choices: Sequence[Choice]) -> str:
    lines = [markdown(host, records), "### choice", ""]
    lines += [f"- {c.server}: {c.why}" for c in choices]
    return "\n".join(lines) + "\n"


# --- the upgrade gate -------------------------------------------------------------------------------------------

#: the regression the gate refuses by default: 10 % slower prefill or generation than the running build's record
GATE_THRESHOLD = 0.10


def gate_runs(host: str, records: Sequence[dict[str, Any]], previous: str, plan: HostPlan) -> list[dict[str, Any]]:
    """The upgrade gate's runs: each server's stored deployed record of the running build (``previous``,
    ``b<build>-<backend>``) again, with the same arguments, on the new serving build (raises SpecError naming the
    servers that have no record: bench them first)."""
    assert plan.llamacpp is not None
    serving = plan.llamacpp.serving
    rows = latest(records)
    runs, missing = [], []
    for server in plan.servers:
        base = [r for r in rows if r["version"] == previous and r["server"] == server.name
                and r["model"] == server.model.name and r["deployed"]]
        if not base:
            missing.append(server.name)
            continue
        b = base[-1]
        runs.append({"id": f"{serving.version}/{server.name}/gate", "server": server.name, "model": server.model.name,
                     "version": serving.version, "backend": serving.backend, "build": plan.llamacpp.spec.build,
                     "deployed": True, "config": b["flags"], "label": b["label"],
                     "binary": f"{serving.paths.prefix}/bin/llama-bench", "args": list(b["args"]),
                     "env": bench_env(server), "estimate_s": b.get("seconds") or 60})
    if missing:
        raise SpecError(host, [Problem("bench", f"no stored bench record of {previous} for server(s) "
                                                f"{', '.join(missing)}: run `ansible-playbook playbooks/bench.yml -l "
                                                f"{host}` before an upgrade with the bench gate")])
    return runs


def gate(records: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]], previous: str,
         threshold: float = GATE_THRESHOLD) -> tuple[bool, list[str]]:
    """Whether the new build's records keep prefill and generation within ``threshold`` of the running build's
    stored records (same server, model and flags), and one line per server, test and depth saying so."""
    ok, lines = True, []
    rows = latest(records)
    for n in new:
        if not n.get("ok"):
            ok = False
            lines.append(f"{n['server']}: the gate's run on {n['version']} failed ({n.get('error')})")
            continue
        base = [r for r in rows if r["version"] == previous and r["server"] == n["server"] and r["model"] == n["model"]
                and r["flags"] == n["flags"]]
        if not base:
            ok = False
            lines.append(f"{n['server']}: no record of {previous} with {n['label']} to compare with")
            continue
        b = base[-1]
        for t in n["tests"]:
            was = speed(b, t["test"], t["n_depth"])
            if not was:
                continue
            change = t["avg_ts"] / was - 1
            bad = change < -threshold
            ok = ok and not bad
            name = "prefill" if t["test"] == "pp" else "generation"
            lines.append(f"{n['server']} {name} d{t['n_depth']}: {t['avg_ts']:.2f} t/s on {n['version']} vs "
                         f"{was:.2f} on {previous} ({100 * change:+.1f} %){' REGRESSION' if bad else ''}")
    return ok, lines


def task_plan(host: str, spec: Any, probe: Any, inventory_dir: str | Path, build: object = None) -> HostPlan:
    """The host's plan as the bench role's controller tasks see it: the play's description (alias bombs refused
    before it is expanded), the host's probe and its tuned file beside the inventory, for ``build`` if given."""
    check_bounded(host, spec)
    tuned = read_tuned(host, tuned_path(inventory_dir, host))
    return plan_hostvars(host, hostvars_of(None if spec is None else plain(spec), build),
                         None if probe is None else plain(probe), tuned)
