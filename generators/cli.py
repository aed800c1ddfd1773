"""``python -m generators``: render a host's files for reading before deploying, and the tools around it.

Commands:

- ``render``: write the files the roles install for one host (every check first, memory fit included);
- ``fit``: each server's memory plan (MiB per component, headroom), as a table or JSON;
- ``catalog``: the offline model header facts (``list``, ``refresh``, ``add``);
- ``toolchain``: the CUDA toolchain plan for given versions, or the host probe script (``--print-probe``);
- ``render-build``: one backend's build script from explicit settings;
- ``check-devices``: whether ``llama-server --list-devices`` output lists the expected device;
- ``status``: the fleet's state (``playbooks/status.yml``, read-only), as a table or JSON;
- ``prometheus``: a Prometheus scrape configuration (file-based targets) and a Grafana dashboard for an inventory;
- ``bench-report``: the host's bench records as a Markdown table and a PNG chart, the choice, the tuned file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleError
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible.vars.manager import VariableManager

from generators import bench
from generators.errors import Problem, SpecError
from generators.facts.devices import check_device
from generators.facts.toolchain import HostCompiler, HostToolchain, from_probe, parse_compiler, parse_version
from generators.inventory import error_problem, host_vars
from generators.pipeline import plan_hostvars, render_hostvars
from generators.plan.backends import BACKENDS, BuildPaths, BuildTarget, cuda_arches_from_probe
from generators.plan.fit import catalog
from generators.plan.fit.gguf_facts import hub_facts, read_facts
from generators.plan.fit.planner import Plan
from generators.plan.fit.servers import plan_servers
from generators.plan.toolchain import resolve
from generators.prometheus import FleetHost, scrape_files
from generators.render import RenderedFile
from generators.render.builds import render_build, render_probe
from generators.status import table
from generators.tuned import read_tuned, tuned_path


def write_atomic(root: Path, item: RenderedFile) -> None:
    """Write one file via a temporary name, fsync, rename: never a half-written file."""
    target = root / item.path
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(item.content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, int(item.mode, 8))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- render ---------------------------------------------------------------------------------------------------


def read_facts_file(host: str, path: str | None) -> Any:
    """A recorded host probe (``raw.json``: the host_facts module's ``raw``), or None."""
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SpecError(host, [Problem("--facts", f"{path}: {exc}")]) from None


def cmd_render(args: argparse.Namespace) -> int:
    probe = read_facts_file(args.host, args.facts)
    tuned = read_tuned(args.host, tuned_path(args.inventory, args.host))  # <inventory>/tuned/<host>.yml, if any
    rendered = render_hostvars(args.host, host_vars(args.inventory, args.host), probe=probe, tuned=tuned)
    for warning in rendered.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    out = Path(args.out)
    for item in rendered.files:
        write_atomic(out, item)
        print(out / item.path)
    return 0


# --- fit ------------------------------------------------------------------------------------------------------

FIT_HELP = """Model facts come from the offline catalog (generators/data/model_facts.yaml) by GGUF file name, or from a
GGUF on this machine (--gguf NAME=PATH). The GPU's memory comes from the host description when it names a GPU
with vram_gb; --vram-mib / --ram-mib override it and the host's RAM (for an APU, --vram-mib is its GTT pool).
Unknown host RAM is shown but not checked. Servers on one host share its memory: each is planned in what the ones
before it left. Exit status: 0 when every server fits, 3 when one does not (the table says what and by how much),
2 for a bad host description."""


def _fit_text(results: list[dict[str, Any]]) -> str:
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
    local: dict[str, str] = {}
    for item in args.gguf:
        name, sep, path = item.partition("=")
        if not sep:
            raise SpecError(args.host, [Problem("--gguf", f"{item!r}: expected FILENAME=PATH")])
        local[name] = path
    plan = plan_hostvars(args.host, host_vars(args.inventory, args.host), read_facts_file(args.host, args.facts))
    results = plan_servers(plan, args.vram_mib, args.ram_mib, args.margin_mib, local, args.launch)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "plan"} for r in results], indent=2))
    else:
        print(_fit_text(results))
    return 0 if all(r["fits"] for r in results) else 3


def _add_fit(sub: Any) -> None:
    p = sub.add_parser("fit", help="plan each server's memory (MiB per component, headroom) for one host",
                       description=FIT_HELP)
    p.add_argument("--inventory", required=True, help="inventory directory or file, e.g. inventories/demo")
    p.add_argument("--host", required=True, help="inventory host name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--facts", metavar="RAW_JSON", help="a recorded host probe (host_facts raw.json) to plan with")
    p.add_argument("--vram-mib", type=int, help="GPU memory to plan for (an APU: its GTT pool); overrides the host")
    p.add_argument("--ram-mib", type=int, help="host RAM to plan for; overrides the host description")
    p.add_argument("--margin-mib", type=int, default=256, help="headroom to keep free on each device (default 256)")
    p.add_argument("--gguf", action="append", default=[], metavar="FILENAME=PATH",
                   help="read a model's facts from a local GGUF instead of the catalog (repeatable)")
    p.add_argument("--launch", action="store_true",
                   help="plan the command line render writes (its defaults pinned: -ngl 99, f16 KV, 2048/512), "
                        "which is what render checks, instead of choosing the values the host leaves free")
    p.set_defaults(func=cmd_fit)


# --- catalog --------------------------------------------------------------------------------------------------


def cmd_catalog(args: argparse.Namespace) -> int:
    if args.catalog_command == "list":
        for name, entry in catalog.entries().items():
            print(f"{name:<60} {entry.get('provenance', '?'):<9} {entry.get('architecture')}")
        return 0
    if args.catalog_command == "refresh":
        entry = catalog.entries().get(args.filename)
        if entry is None or "hub" not in entry.get("source", {}):
            print(f"{args.filename}: not in the catalog with a hub source", file=sys.stderr)
            return 2
        hub = entry["source"]["hub"]
        # a host may keep the file under a local name; hub.file is then the name on the hub
        facts = hub_facts(hub["repo"], hub.get("file", args.filename), hub.get("mmproj"), hub.get("revision"))
        catalog.store(dataclasses.replace(facts, name=args.filename), entry["source"])
        return 0
    if args.path:
        facts = read_facts(args.path, args.mmproj_path)
        catalog.store(facts, {"path": str(args.path)})
        return 0
    if not (args.repo and args.file):
        args.catalog_parser.error("add needs --repo and --file, or --path")
    facts = hub_facts(args.repo, args.file, args.mmproj, args.revision)
    hub = {"repo": args.repo, **({"mmproj": args.mmproj} if args.mmproj else {}),
           **({"revision": args.revision} if args.revision else {})}
    catalog.store(facts, {"hub": hub})
    return 0


def _add_catalog(sub: Any) -> None:
    top = sub.add_parser("catalog", help="the offline model header facts the fit plans with",
                         description=catalog.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    inner = top.add_subparsers(dest="catalog_command", required=True)
    ref = inner.add_parser("refresh", help="re-read an entry's header from its source on the hub")
    ref.add_argument("filename")
    add = inner.add_parser("add", help="add an entry from the hub's header or a local file")
    add.add_argument("--repo")
    add.add_argument("--file")
    add.add_argument("--mmproj")
    add.add_argument("--revision")
    add.add_argument("--path", help="a GGUF on this machine instead of the hub")
    add.add_argument("--mmproj-path")
    add.set_defaults(catalog_parser=add)
    inner.add_parser("list", help="the catalog's entries and their provenance")
    top.set_defaults(func=cmd_catalog)


# --- toolchain ------------------------------------------------------------------------------------------------


def cmd_toolchain(args: argparse.Namespace) -> int:
    if args.print_probe:
        sys.stdout.write(render_probe())
        return 0
    if args.probe_json:
        host = from_probe(args.host, json.loads(args.probe_json.read_text(encoding="utf-8")))
    else:
        if not (args.gcc and args.glibc):
            args.toolchain_parser.error("give --probe-json, or at least --gcc and --glibc")
        host = HostToolchain(
            host=args.host,
            gcc=HostCompiler(parse_version(args.host, "gcc", args.gcc), "g++"),
            glibc=parse_version(args.host, "glibc", args.glibc),
            nvcc=None if args.nvcc is None else parse_version(args.host, "nvcc", args.nvcc),
            alt_gccs=tuple(parse_compiler(args.host, spec) for spec in args.alt_gcc),
            driver=None if args.driver is None else parse_version(args.host, "driver", args.driver),
        )
    plan = resolve(host)
    print(json.dumps(plan.as_dict(), indent=2) if args.json else plan.describe())
    return 0


def _add_toolchain(sub: Any) -> None:
    p = sub.add_parser("toolchain", help="choose how a host gets a CUDA llama.cpp from its toolchain versions",
                       description="CUDA toolchain resolution: from the versions a host reports, choose how that "
                                   "host gets a CUDA llama.cpp.")
    p.add_argument("--host", default="localhost", help="host name used in messages")
    p.add_argument("--probe-json", type=Path, help="the probe script's output (instead of the flags below)")
    p.add_argument("--nvcc", help="nvcc version (omit when the host has none)")
    p.add_argument("--gcc", help="system GCC version")
    p.add_argument("--glibc", help="glibc version")
    p.add_argument("--driver", help="NVIDIA driver version")
    p.add_argument("--alt-gcc", action="append", default=[], metavar="VERSION[:CXX]", help="another GCC")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--print-probe", action="store_true", help="print the host probe script and exit")
    p.set_defaults(func=cmd_toolchain, toolchain_parser=p)


# --- render-build and check-devices ---------------------------------------------------------------------------


def cmd_render_build(args: argparse.Namespace) -> int:
    plan = None
    arches = tuple(args.cuda_arch)
    if args.backend == "cuda":
        if args.probe_json is None:
            print(f"host {args.host}: --probe-json is needed for the cuda backend", file=sys.stderr)
            return 2
        probe = json.loads(args.probe_json.read_text(encoding="utf-8"))
        plan = resolve(from_probe(args.host, probe))
        arches = arches or cuda_arches_from_probe(probe)
        print(plan.describe(), file=sys.stderr)  # the plan and its reasons, before anything builds
    target = BuildTarget(
        host=args.host,
        backend=args.backend,
        build=args.build,
        native=args.native,
        targets=tuple(args.target or ["llama-server"]),
        cuda_arch=arches,
        gfx_targets=tuple(args.gfx_target),
        toolchain=plan,
    )
    text = render_build(target, BuildPaths(args.source_dir, args.prefix_root, args.cache_root))
    args.out.write_text(text, encoding="utf-8")
    args.out.chmod(0o755)
    return 0


def _add_render_build(sub: Any) -> None:
    p = sub.add_parser("render-build", help="render one backend's build script")
    p.add_argument("--host", default="localhost", help="host name used in messages")
    p.add_argument("--backend", required=True, choices=BACKENDS)
    p.add_argument("--build", required=True, type=int)
    p.add_argument("--source-dir", required=True)
    p.add_argument("--prefix-root", default=BuildPaths.prefix_root)
    p.add_argument("--cache-root", default=BuildPaths.cache_root)
    p.add_argument("--target", action="append", default=[], help="repeat; default llama-server")
    p.add_argument("--no-native", dest="native", action="store_false")
    p.add_argument("--cuda-arch", action="append", default=[], help="repeat; default: the probe's GPUs")
    p.add_argument("--gfx-target", action="append", default=[])
    p.add_argument("--probe-json", type=Path, help="build-probe-toolchain.sh output (cuda)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_render_build)


def cmd_check_devices(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if str(args.listing) == "-" else args.listing.read_text(encoding="utf-8")
    result = check_device(args.host, text, None if args.expected == "none" else args.expected)
    print(result.message, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def _add_check_devices(sub: Any) -> None:
    p = sub.add_parser("check-devices", help="does `llama-server --list-devices` output list the expected device?")
    p.add_argument("--host", default="localhost", help="host name used in messages")
    p.add_argument("--expected", required=True, help="CUDA0, Vulkan1, ROCm0, ...; 'none' for a CPU build")
    p.add_argument("listing", type=Path, help="file holding the output ('-': stdin)")
    p.set_defaults(func=cmd_check_devices)


# --- status and prometheus: the whole inventory ---------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
STATUS_PLAYBOOK = REPO / "playbooks" / "status.yml"


def inventory_hosts(inventory: str, limit: str | None = None) -> list[tuple[str, str]]:
    """Every host of the inventory (matching ``limit``, Ansible's pattern syntax) and its address: its
    ``ansible_host``, else its name."""
    if not Path(inventory).exists():
        raise SpecError("-", [Problem("--inventory", f"{inventory} does not exist")])
    loader = DataLoader()
    try:
        manager = InventoryManager(loader=loader, sources=[str(inventory)])
        variables = VariableManager(loader=loader, inventory=manager)
        found = manager.get_hosts(limit or "all")
        out = []
        for host in found:
            hv = variables.get_vars(host=host, include_hostvars=False)
            address = Templar(loader=loader, variables=hv).template(hv.get("ansible_host", host.name))
            out.append((host.name, str(address)))
    except AnsibleError as exc:
        raise SpecError("-", [error_problem(exc, "--inventory")]) from None
    return out


def cmd_prometheus(args: argparse.Namespace) -> int:
    hosts = []
    for name, address in inventory_hosts(args.inventory, args.limit):
        manifest = render_hostvars(name, host_vars(args.inventory, name), check_fit=False).manifest
        hosts.append(FleetHost(name, address, manifest))
    files, warnings = scrape_files(hosts, args.local)  # every host rendered and checked before any write
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    out = Path(args.out)
    for item in files:
        write_atomic(out, item)
        print(out / item.path)
    return 0


def _add_prometheus(sub: Any) -> None:
    p = sub.add_parser("prometheus", help="a Prometheus scrape configuration and a Grafana dashboard for an inventory",
                       description="Write prometheus.yml (file_sd jobs), targets.json (every server's /metrics and "
                                   "every proxy's /proxy/metrics, labelled host/server/model/backend) and "
                                   "dashboard.json (Grafana) for every host of the inventory.")
    p.add_argument("--inventory", "-i", required=True, help="inventory directory or file")
    p.add_argument("--limit", "-l", help="only these hosts (an Ansible host pattern)")
    p.add_argument("--out", "-o", required=True, help="directory to write into (created if absent)")
    p.add_argument("--local", action="store_true",
                   help="for a Prometheus running on the one host --limit picks: its loopback servers included")
    p.set_defaults(func=cmd_prometheus)


def _print_records(records: list[dict[str, Any]], as_json: bool) -> None:
    sys.stdout.write(json.dumps(records, indent=2, sort_keys=True) + "\n" if as_json else table(records))


def cmd_status(args: argparse.Namespace) -> int:
    if args.from_json:
        records = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        _print_records(records, args.json)
        return 0
    if not args.inventory:
        args.status_parser.error("give --inventory (or --from-json)")
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
    with tempfile.TemporaryDirectory(prefix="llamafleet-status-") as tmp:
        out = Path(tmp) / "status.json"
        cmd = [playbook, "-i", args.inventory, str(STATUS_PLAYBOOK), "-e", json.dumps({"status_json": str(out)})]
        cmd += ["--check"] + (["--limit", args.limit] if args.limit else [])
        run = subprocess.run(cmd, check=False, capture_output=not args.verbose, text=True, cwd=REPO)
        if not out.is_file():  # the playbook stopped before its summary: show why
            print((run.stdout or "")[-4000:] + (run.stderr or "")[-2000:], file=sys.stderr)
            print(f"status: ansible-playbook exited {run.returncode} before the summary", file=sys.stderr)
            return 2
        records = json.loads(out.read_text(encoding="utf-8"))
    _print_records(records, args.json)
    return 0 if all(r["status"] in ("ok", "ollama") for r in records) else 1


def _add_status(sub: Any) -> None:
    p = sub.add_parser("status", help="every host's builds, models, slots, tokens/s, health and proxy counters",
                       description="Runs playbooks/status.yml (read-only, under --check) and prints its records as "
                                   "a table or JSON. Exit status 0 when every host is ok, 1 when one is degraded, "
                                   "down, unreachable or failed, 2 when the playbook stopped before its summary.")
    p.add_argument("--inventory", "-i", help="inventory directory or file")
    p.add_argument("--limit", "-l", help="only these hosts (an Ansible host pattern)")
    p.add_argument("--json", action="store_true", help="the records as JSON")
    p.add_argument("--from-json", metavar="FILE", help="print records saved before (-e status_json=FILE) instead")
    p.add_argument("--verbose", "-v", action="store_true", help="show the playbook's own output")
    p.set_defaults(func=cmd_status, status_parser=p)


# --- bench-report ---------------------------------------------------------------------------------------------

BENCH_HELP = """Reads the host's bench records (<inventory>/bench/<host>.jsonl, appended by playbooks/bench.yml), writes
<out>/<host>.md (the table: prefill and generation per build and flags at each depth, generation as a fraction of
the host's bandwidth ceiling) and <out>/<host>.png (the chart), and says per server which configuration wins and
why. With --write-tuned the winners go to <inventory>/tuned/<host>.yml, which every render of the host then applies
(review it; `ansible-playbook site.yml -l HOST --check --diff` shows the unit flags it changes)."""


def cmd_bench_report(args: argparse.Namespace) -> int:
    hostvars = host_vars(args.inventory, args.host)
    path = Path(args.records) if args.records else bench.records_path(args.inventory, args.host)
    records = bench.read_records(args.host, path)
    choices = bench.choose(args.host, hostvars, records, read_facts_file(args.host, args.facts), args.min_gain)
    out = Path(args.out) if args.out else path.parent
    text = bench.report(args.host, records, choices)
    write_atomic(out, RenderedFile(f"{args.host}.md", text, "0644"))
    png = bench.chart(args.host, records, out / f"{args.host}.png")
    print(text + f"\ntable: {out / (args.host + '.md')}\nchart: {png}")
    if args.write_tuned:
        tuned = bench.tuned_text(args.host, choices)
        target = tuned_path(args.inventory, args.host)
        if tuned is None:
            print(f"no server changes: {target} not written")
        else:
            write_atomic(target.parent, RenderedFile(target.name, tuned, "0644"))
            print(f"tuned: {target} (review it; every render of {args.host} applies it)")
    return 0


def _add_bench_report(sub: Any) -> None:
    p = sub.add_parser("bench-report", help="report a host's bench records (table, chart, choice, tuned file)",
                       description=BENCH_HELP)
    p.add_argument("--inventory", required=True, help="inventory directory or file, e.g. inventories/demo")
    p.add_argument("--host", required=True, help="inventory host name")
    p.add_argument("--records", help="the records file (default <inventory>/bench/<host>.jsonl)")
    p.add_argument("--out", help="where the table and chart go (default: beside the records)")
    p.add_argument("--facts", metavar="RAW_JSON", help="a recorded host probe (host_facts raw.json) to plan with")
    p.add_argument("--min-gain", type=float, default=bench.MIN_GAIN,
                   help=f"how much faster a variant must be to win (default {bench.MIN_GAIN})")
    p.add_argument("--write-tuned", action="store_true", help="write the winners to <inventory>/tuned/<host>.yml")
    p.set_defaults(func=cmd_bench_report)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m generators", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="write the files the roles install for one host")
    render.add_argument("--inventory", required=True, help="inventory directory or file, e.g. inventories/demo")
    render.add_argument("--host", required=True, help="inventory host name")
    render.add_argument("--out", required=True, help="directory to write into (created if absent)")
    render.add_argument("--facts", metavar="RAW_JSON",
                        help="a recorded host probe (the host_facts module's raw output, e.g. "
                             "tests/facts/fixtures/<host>/raw.json): render as if the host had been asked")
    render.set_defaults(func=cmd_render)
    _add_fit(sub)
    _add_catalog(sub)
    _add_toolchain(sub)
    _add_render_build(sub)
    _add_check_devices(sub)
    _add_status(sub)
    _add_prometheus(sub)
    _add_bench_report(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # a file given on the command line is unreadable
        where = getattr(exc, "filename", None) or "input"
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"host {getattr(args, 'host', None) or '-'}: {where}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
