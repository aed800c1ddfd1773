"""Deployed flags against the best swept configuration, on this machine, with the real llama-bench and SmolLM2.

Plans the demo host's sweep (inventories/demo: SmolLM2 on the CPU backend, its model path pointed at the local
GGUF) with this machine's cores, runs it with the bench role's host module (the same code playbooks/bench.yml
runs on a host: the bandwidth probe, then one llama-bench invocation per configuration), turns the output into
records as the controller does, and prints the table, then for prefill and generation at each depth:

- deployed / best: the deployed flags' throughput over the best swept configuration's (goal >= 0.95: the
  deployed flags leave little on the table; lower means bench-report --write-tuned would change them);
- generation as a fraction of the bandwidth ceiling (measured copy bandwidth / bytes read per token).

The sweep is made short for this machine (-p 64 -n 16 -r 1, depths 0 and 256, at most --configs
configurations); ratios come from the same run, never from a stored baseline.

    eval "$(bash .ci/host-llama.sh)"; python bench/bench_vs_deployed.py [--configs 4] [--chart /tmp/x.png]

With ``--records FILE --version V`` it prints the same ratios for a test host instead, from the records one
`playbooks/bench.yml` run on that host stored (``<inventory_dir>/bench/<host>.jsonl``; ``make test-gate`` prints
them for its host): deployed and best come from that one sweep, on the host's own build ``V`` (``b11401-cpu``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "roles" / "bench" / "library")]

import llamafleet_bench  # noqa: E402  (the host module, run in-process)

from generators import bench  # noqa: E402
from generators.inventory import host_vars  # noqa: E402
from generators.plan.bench import HostSweep  # noqa: E402


def print_ratios(records: list[dict], depths: list[int]) -> bool:
    """deployed / best for prefill and generation at each depth, and generation against the ceiling; False when
    the deployed configuration has no measurement."""
    ok = [r for r in records if r["ok"]]
    deployed = next((r for r in ok if r["deployed"]), None)
    if deployed is None:
        return False
    for test, name in (("pp", "prefill"), ("tg", "generation")):
        for depth in depths:
            best = max(ok, key=lambda r: bench.speed(r, test, depth) or 0.0)
            ratio = (bench.speed(deployed, test, depth) or 0.0) / (bench.speed(best, test, depth) or 1.0)
            print(f"{name} d{depth}: deployed/best = {ratio:.3f} (goal >= 0.95; best: {best['label']})")
    for depth in depths:
        frac = bench.fraction(deployed, depth)
        best = max((bench.fraction(r, depth) or 0.0) for r in ok)
        print(f"generation d{depth}: deployed at {100 * (frac or 0):.1f} % of the bandwidth ceiling "
              f"(best swept: {100 * best:.1f} %)")
    return True


def from_records(path: Path, version: str) -> int:
    stored = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in bench.latest(stored) if r["version"] == version]
    if not rows:
        print(f"no llama-bench records of {version} in {path}", file=sys.stderr)
        return 1
    seconds = sum(r.get("seconds") or 0.0 for r in rows)
    print(f"{path.stem}: {len(rows)} configurations of {version}, {seconds:.0f} s of llama-bench; ceiling "
          f"{rows[0].get('bandwidth_gbs')} GB/s ({rows[0].get('bandwidth_source')})")
    return 0 if print_ratios(rows, bench.depths_of(rows)) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", type=int, default=4, help="configurations benched, the deployed one first")
    ap.add_argument("--chart", default=None, help="write the chart here too")
    ap.add_argument("--records", type=Path, default=None, help="a test host's stored records instead of a run here")
    ap.add_argument("--version", default=None, help="with --records: the build, b<N>-<backend>")
    args = ap.parse_args()
    if args.records is not None:
        if not args.version:
            ap.error("--records needs --version")
        return from_records(args.records, args.version)
    binary, model = os.environ.get("LLAMAFLEET_LLAMA_BENCH"), os.environ.get("LLAMAFLEET_SMOLLM2_GGUF")
    if not (binary and model):
        print("set LLAMAFLEET_LLAMA_BENCH and LLAMAFLEET_SMOLLM2_GGUF (eval \"$(cat /tmp/host-llama.env)\")",
              file=sys.stderr)
        return 2
    hostvars = copy.deepcopy(host_vars(REPO / "inventories" / "demo", "demo"))
    hostvars["llamafleet"]["models"][0] = {"name": hostvars["llamafleet"]["models"][0]["name"], "path": model}
    cores = os.cpu_count() or 1
    plan, sweep = bench.plan_sweep("demo", hostvars, cores=cores)
    s = sweep.sweeps[0]
    small = replace(s, configs=s.configs[: args.configs], n_prompt=64, n_gen=16, repetitions=1, depths=(0, 256))
    runs = HostSweep("demo", sweep.budget_s, (small,), ()).runs()
    for run in runs:
        run["binary"] = binary
    print(HostSweep("demo", sweep.budget_s, (small,), ()).table())
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        out = llamafleet_bench.sweep(runs, f"{tmp}/bench.log", 900, 128, 3)
    took = time.monotonic() - start
    records = bench.records_from_results(plan, out)
    print()
    print(bench.markdown("demo", records))
    if args.chart:
        print("chart:", bench.chart("demo", records, Path(args.chart)))
    ok = [r for r in records if r["ok"]]
    print(f"bandwidth {out['bandwidth']['gbs']} GB/s ({out['bandwidth']['method']}); sweep {took:.1f} s "
          f"for {len(runs)} configurations on {cores} cores")
    if not print_ratios(records, [0, 256]):
        print("the deployed configuration's run failed:", json.dumps(out["results"][0].get("error")))
        return 1
    for c in bench.choose("demo", hostvars, records):
        print(f"choice {c.server}: {c.why}")
        if c.winner is not None:  # what the tuned file would deploy, measured in this same run
            for test, name in (("pp", "prefill"), ("tg", "generation")):
                ratios = [(bench.speed(c.winner, test, d) or 0.0)
                          / (max(bench.speed(r, test, d) or 0.0 for r in ok) or 1.0) for d in (0, 256)]
                print(f"with the tuned file ({', '.join(f'{k}: {v}' for k, v in c.fields.items())}): {name} "
                      f"deployed/best = {ratios[0]:.3f} (d0), {ratios[1]:.3f} (d256)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
