"""``python -m generators fit``: the memory plan of each server of a host, as a table or JSON.

Model facts come from the offline catalog (``generators/data/model_facts.yaml``) by GGUF file name, or from a GGUF on
this machine (``--gguf NAME=PATH``). The GPU's memory comes from the host description when it names a GPU with
``vram_gb`` (``flags.server_gpu``); host RAM from a ``ram_gb`` / ``ram_mib`` field when the description has one.
``--vram-mib`` / ``--ram-mib`` override both (for an APU, ``--vram-mib`` is its GTT pool). Unknown host RAM is shown
but not checked. Servers on one host share its memory: each is planned in what the ones before it left.

Exit status: 0 when every server fits, 3 when one does not (the table says what and by how much), 2 for a bad
host description.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from generators.errors import Problem, SpecError
from generators.fit import catalog
from generators.fit.gguf_facts import ModelFacts, read_facts
from generators.fit.planner import MIB, UNKNOWN_MIB, Backend, ConfigError, FitError, Memory, Plan, Request, fit

_BACKENDS: dict[str, Backend] = {"cpu": "cpu", "cuda": "cuda", "vulkan": "vulkan", "hip": "rocm", "rocm": "rocm",
                                 "metal": "metal"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``fit`` on ``python -m generators``' subcommands."""
    p = subparsers.add_parser("fit", help="plan each server's memory (MiB per component, headroom) for one host")
    p.add_argument("--inventory", required=True, help="inventory directory or file, e.g. inventories/demo")
    p.add_argument("--host", required=True, help="inventory host name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--vram-mib", type=int, help="GPU memory to plan for (an APU: its GTT pool); overrides the host")
    p.add_argument("--ram-mib", type=int, help="host RAM to plan for; overrides the host description")
    p.add_argument("--margin-mib", type=int, default=256, help="headroom to keep free on each device (default 256)")
    p.add_argument("--gguf", action="append", default=[], metavar="FILENAME=PATH",
                   help="read a model's facts from a local GGUF instead of the catalog (repeatable)")
    p.add_argument("--launch", action="store_true",
                   help="plan the command line render writes (its defaults pinned: -ngl 99, f16 KV, 2048/512), "
                        "which is what render checks, instead of choosing the values the host leaves free")
    p.set_defaults(func=cmd_fit)
    return p


def _facts(host: str, index: int, filename: str, local: dict[str, str]) -> ModelFacts:
    if filename in local:
        return read_facts(local[filename])
    found = catalog.lookup(filename)
    if found is None:
        raise SpecError(host, [Problem(f"llamafleet.models[{index}]",
                                       f"no header facts for {filename}: add them with `python -m generators.fit."
                                       f"catalog add --repo ORG/REPO --file {filename}` (online) or --gguf")])
    return found


def _gpu(spec: Any, server: Any) -> Any:
    try:
        from generators.flags import server_gpu
    except ImportError:  # pragma: no cover - older spec without a hardware description
        return None
    try:
        return server_gpu(spec, server)
    except (AttributeError, StopIteration):
        return None


def memory_for(spec: Any, server: Any, vram_mib: int | None, ram_mib: int | None) -> tuple[Memory, bool]:
    """The memory a server may use, and whether host RAM is known."""
    backend = _BACKENDS.get(str(getattr(spec, "backend", "cpu")), "cpu")
    gpu = _gpu(spec, server) if backend != "cpu" else None
    unified = bool(getattr(gpu, "unified", False))
    if vram_mib is None and gpu is not None and getattr(gpu, "vram_gb", None):
        vram_mib = int(float(gpu.vram_gb) * 1024)
    if ram_mib is None:
        if getattr(spec, "ram_mib", None):
            ram_mib = int(spec.ram_mib)
        elif getattr(spec, "ram_gb", None):
            ram_mib = int(float(spec.ram_gb) * 1024)
    known = ram_mib is not None
    gpu_mib = (vram_mib or 0) if backend != "cpu" else 0
    return Memory(gpu_mib, ram_mib or UNKNOWN_MIB, backend, unified), known


def request_for(server: Any, facts: ModelFacts) -> Request:
    """What a server pins (set in the inventory) and what it leaves to the planner."""
    ctx = server.ctx if isinstance(server.ctx, int) else facts.n_ctx_train
    parallel = getattr(server, "parallel", 1)
    unified = getattr(server, "sessions", None) == "shared"
    if parallel == "auto":  # llama-server's own auto: 4 slots sharing one unified KV pool
        parallel, unified = 4, True
    k = getattr(server, "cache_type_k", None) or getattr(server, "kv_cache", None)
    v = getattr(server, "cache_type_v", None) or getattr(server, "kv_cache", None)
    fa = {"on": True, "off": False}.get(str(getattr(server, "flash_attn", None)))
    layers = getattr(server, "gpu_layers", None)
    if layers == "all":
        layers = facts.n_layer + 1
    elif not isinstance(layers, int):
        layers = None
    kv_offload = getattr(server, "kv_offload", True)
    return Request(
        ctx=ctx, parallel=int(parallel), kv_unified=unified, cache_type_k=k, cache_type_v=v, flash_attn=fa,
        batch=getattr(server, "batch", None), ubatch=getattr(server, "ubatch", None), gpu_layers=layers,
        no_kv_offload=True if kv_offload is False else None, mmproj=bool(getattr(server, "mmproj", None)),
    )


def _servers(spec: Any) -> tuple[Any, ...]:
    return tuple(getattr(spec, "active_servers", None) or spec.servers)


def plan_host(spec: Any, host: str, vram_mib: int | None, ram_mib: int | None, margin_mib: int,
              local: dict[str, str], launch: bool = False) -> list[dict[str, Any]]:
    """Plan every server in order, each in the memory the previous ones left. Pure apart from reading facts.

    ``launch``: plan the rendered command line (generators.fit.check.launch_request) rather than free choices.
    """
    from generators.fit.check import launch_request  # late: check builds on this module
    names = [m.name for m in spec.models]
    used = {"gpu": 0, "host": 0}
    results: list[dict[str, Any]] = []
    for server in _servers(spec):
        index = names.index(server.model)
        model = spec.models[index]
        facts = _facts(host, index, model.filename, local)
        memory, ram_known = memory_for(spec, server, vram_mib, ram_mib)
        left = replace(memory, gpu_mib=max(0, memory.gpu_mib - used["gpu"] // MIB),  # unknown RAM stays unknown
                       host_mib=max(0, memory.host_mib - used["host"] // MIB) if ram_known else memory.host_mib)
        entry: dict[str, Any] = {"server": server.name, "model": model.filename, "ram_known": ram_known}
        try:
            wanted = launch_request(spec, server, facts) if launch else request_for(server, facts)
            plan = fit(facts, left.gpu_mib, left.host_mib, wanted, margin_mib, left.backend, left.unified)
        except FitError as exc:
            entry.update(fits=False, error=str(exc), closest=exc.closest.to_json(),
                         nearest=exc.nearest.to_json() if exc.nearest else None)
            results.append(entry)
            continue
        except ConfigError as exc:
            raise SpecError(host, [Problem(f"llamafleet.servers[{server.name}]", str(exc))]) from None
        for where in ("gpu", "host"):
            used[where] += sum(c.bytes for c in plan.components if c.where == where)
        entry.update(plan=plan, **plan.to_json())
        results.append(entry)
    return results


def require_fit(spec: Any, host: str, vram_mib: int | None = None, ram_mib: int | None = None,
                margin_mib: int = 256) -> list[dict[str, Any]]:
    """Plan the host's free choices and raise :class:`SpecError` naming each server that does not fit.

    A server's model that the catalog does not know is a problem too (the plan cannot be checked offline). Render
    does not call this: it checks the command line it writes, with its own policy, in
    :func:`generators.fit.check.check_host_fits`.
    """
    results = plan_host(spec, host, vram_mib, ram_mib, margin_mib, {})
    servers = _servers(spec)
    problems = []
    for i, r in enumerate(results):
        if r["fits"]:
            continue
        near = r["nearest"]
        hint = f"; nearest that fits: {' '.join(near['flags'])}" if near else "; nothing fits this host"
        short = max(-v for v in r["closest"]["headroom_mib"].values())
        problems.append(Problem(f"llamafleet.servers[{i}].ctx",
                                f"{servers[i].name}: {r['model']} at this context does not fit "
                                f"({short:.0f} MiB short){hint}"))
    if problems:
        raise SpecError(host, problems)
    return results


def _text(results: list[dict[str, Any]]) -> str:
    if not results:
        return "no llama-server on this host (no servers, or engine: ollama): nothing to plan"
    out = []
    for r in results:
        out.append(f"== server {r['server']} ({r['model']})")
        if r["fits"]:
            plan: Plan = r["plan"]
            out.append("flags: " + " ".join(plan.config.flags()))
            out.append(plan.table())
            if not r["ram_known"]:
                out.append("(host RAM not described: pass --ram-mib to check it)")
        else:
            out.append(r["error"])
    return "\n".join(out)


def cmd_fit(args: argparse.Namespace) -> int:
    from generators.inventory import host_vars
    from generators.spec import parse_host

    local: dict[str, str] = {}
    for item in args.gguf:
        name, sep, path = item.partition("=")
        if not sep:
            raise SpecError(args.host, [Problem("--gguf", f"{item!r}: expected FILENAME=PATH")])
        local[name] = path
    spec = parse_host(args.host, host_vars(args.inventory, args.host))
    results = plan_host(spec, args.host, args.vram_mib, args.ram_mib, args.margin_mib, local, args.launch)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "plan"} for r in results], indent=2))
    else:
        print(_text(results))
    return 0 if all(r["fits"] for r in results) else 3


if __name__ == "__main__":  # pragma: no cover
    top = argparse.ArgumentParser(prog="python -m generators.fit.cli")
    add_parser(top.add_subparsers(dest="command", required=True))
    parsed = top.parse_args()
    try:
        sys.exit(parsed.func(parsed))
    except SpecError as error:
        print(error, file=sys.stderr)
        sys.exit(2)
