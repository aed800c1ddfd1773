"""The memory planner against every case the seeds measured (tests/plan/fit/seed_cases.yaml).

    python bench/planner_vs_seeds.py [--build N]

Per case: the planner's verdict (fit / refuse) against what the seed saw (runs / oom), planned compute buffer, KV
cache (+ recurrent state) and GPU total against the seed's logged MiB where it logged them, with planned/measured
ratios, and the GPU memory planned in. "gpu tot" is what the seed's total counts: every planned GPU component where
the seed read nvidia-smi (seed 001), the buffers without the runtime reserve where it summed llama.cpp's buffers. Cases the seed reports without a plannable launch are listed with why.
Ends with a summary: every OOM refused? every running case accepted? ``--build`` plans with another build's
reservation rules (default: the seed-era build the table names).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from seed_table import load, run  # noqa: E402

from generators.plan.fit.planner import MIB  # noqa: E402


def _ratio(planned: float, measured: float | None) -> str:
    return f"{planned / measured:5.2f}" if measured else "    -"


def _cell(value: float | None, approx: bool = False) -> str:
    if value is None:
        return "-"
    return f"~{value:.0f}" if approx else f"{value:.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", type=int, help="plan with this llama.cpp build's reservation rules")
    args = ap.parse_args()
    build, cases = load()
    build = args.build or build
    head = (f"{'case':<34} {'seed':>4} {'plan':>6} {'ok':>3} {'compute':>8} {'seed':>6} {'ratio':>5} {'kv':>7} "
            f"{'seed':>6} {'ratio':>5} {'gpu tot':>8} {'seed':>6} {'ratio':>5} {'gpu MiB':>8} {'headroom':>8}")
    print(f"planned with build {build}'s reservation rules; margin 256 MiB as render's check")
    print(head)
    print("-" * len(head))
    results, skipped = [], []
    for case in cases:
        if not case.planned:
            skipped.append(case)
            continue
        r = run(case, build)
        results.append(r)
        m, approx = case.measured, case.approx
        compute = r.mib("compute buffer")
        kv = r.mib("kv cache") + r.mib("recurrent state")
        total = r.gpu_compared
        print(f"{case.id:<34} {case.outcome:>4} {r.verdict:>6} {'yes' if r.agrees else 'NO':>3} "
              f"{compute:8.0f} {_cell(m.get('compute'), approx):>6} {_ratio(compute, m.get('compute'))} "
              f"{kv:7.0f} {_cell(m.get('kv'), approx):>6} {_ratio(kv, m.get('kv'))} "
              f"{total:8.0f} {_cell(m.get('total'), approx):>6} {_ratio(total, m.get('total'))} "
              f"{r.plan.available('gpu') / MIB:8.0f} {r.plan.headroom('gpu') / MIB:8.0f}")
    print()
    for r in results:
        print(f"{r.case.id}: {' '.join(r.plan.config.flags())}")
    print()
    for case in skipped:
        print(f"not planned: {case.id} (seed {case.outcome}): {case.raw['why']}")
    ooms = [r for r in results if r.case.outcome == "oom"]
    runs = [r for r in results if r.case.outcome == "runs"]
    refused = sum(not r.fits for r in ooms)
    accepted = sum(r.fits for r in runs)
    print()
    print(f"OOM cases refused: {refused}/{len(ooms)} {'(all)' if refused == len(ooms) else '(NOT all)'}")
    print(f"running cases accepted: {accepted}/{len(runs)} {'(all)' if accepted == len(runs) else '(NOT all)'}")
    print(f"not plannable: {len(skipped)} (listed above)")
    return 0 if refused == len(ooms) and accepted == len(runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
