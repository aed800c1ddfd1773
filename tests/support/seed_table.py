"""The seeds' measured cases (tests/plan/fit/seed_cases.yaml) planned as the seed ran them, for tests/plan/fit/test_seed_cases.py and bench/planner_vs_seeds.py.

A case is planned with every value the seed's launch set pinned (llama.cpp's own ``--fit`` never touches those),
``gpu_layers: auto`` left to the planner, on the seed's device, with the reservation rules of the seed-era build.
Where the seed's VRAM figure is what llama.cpp reported free after the runtime context was created, the plan's
runtime reserve is added back so it is not taken twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from generators.plan.fit import catalog
from generators.plan.fit.check import MARGIN_MIB
from generators.plan.fit.planner import (
    MIB,
    RUNTIME_RESERVE_MIB,
    UNKNOWN_MIB,
    FitError,
    Plan,
    Request,
    fit,
)

TABLE = Path(__file__).resolve().parents[1] / "plan" / "fit" / "seed_cases.yaml"
#: planned compute buffer within this fraction of what a seed logged (exact MiB figures only, not ~0.1 GB ones)
COMPUTE_MARGIN = 0.05


@dataclass(frozen=True)
class Case:
    id: str
    seed: str
    model: str
    backend: str
    gpu: str
    vram_mib: int
    outcome: str
    quote: str
    raw: dict[str, Any] = field(repr=False)

    @property
    def planned(self) -> bool:
        return bool(self.raw.get("planned", True))

    @property
    def measured(self) -> dict[str, float]:
        return dict(self.raw.get("measured") or {})

    @property
    def approx(self) -> bool:
        return bool(self.raw.get("approx", False))

    def gpu_mib(self) -> int:
        """The GPU memory to plan in: the card's, or the free figure plus the reserve the plan will take again."""
        extra = RUNTIME_RESERVE_MIB[self.backend] if self.raw.get("vram_free") else 0
        return self.vram_mib + extra

    def request(self, n_layer: int) -> Request:
        r = self.raw
        layers = r.get("gpu_layers", "all")
        gpu_layers = None if layers == "auto" else (n_layer + 1 if layers == "all" else int(layers))
        moe = r.get("n_cpu_moe", 0 if gpu_layers is not None else None)
        n_cpu_moe = n_layer if moe == "all" else moe
        return Request(
            ctx=int(r["ctx"]), parallel=int(r.get("parallel", 1)), kv_unified=bool(r.get("kv_unified", False)),
            cache_type_k=r.get("cache_k", "f16"), cache_type_v=r.get("cache_v", "f16"),
            flash_attn=bool(r.get("flash_attn", True)), batch=int(r.get("batch", 2048)),
            ubatch=int(r.get("ubatch", 512)), gpu_layers=gpu_layers, n_cpu_moe=n_cpu_moe,
            no_kv_offload=bool(r.get("no_kv_offload", False)), mmproj=bool(r.get("mmproj", False)),
        )


def load(path: Path = TABLE) -> tuple[int, list[Case]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    cases = [Case(id=c["id"], seed=c["seed"], model=c["model"], backend=c["backend"], gpu=c["gpu"],
                  vram_mib=int(c["vram_mib"]), outcome=c["outcome"], quote=" ".join(c["quote"].split()), raw=c)
             for c in doc["cases"]]
    return int(doc["build"]), cases


@dataclass(frozen=True)
class Result:
    case: Case
    fits: bool
    plan: Plan  # the plan found, or the closest attempt when nothing fits

    def mib(self, name: str, where: str = "gpu") -> float:
        return sum(c.bytes for c in self.plan.components if c.name == name and c.where == where) / MIB

    @property
    def gpu_total(self) -> float:
        return self.plan.used("gpu") / MIB

    @property
    def gpu_compared(self) -> float:
        """The planned GPU figure comparable with the seed's total: everything when the seed read nvidia-smi
        (``measured_by: nvidia-smi``), else the buffers llama.cpp allocates (without the runtime reserve)."""
        if self.case.raw.get("measured_by") == "nvidia-smi":
            return self.gpu_total
        return self.gpu_total - self.mib("runtime reserve")

    @property
    def verdict(self) -> str:
        return "fit" if self.fits else "refuse"

    @property
    def agrees(self) -> bool:
        return self.fits == (self.case.outcome == "runs")


def run(case: Case, build: int, margin_mib: int = MARGIN_MIB) -> Result:
    facts = catalog.lookup(case.model)
    assert facts is not None, f"{case.id}: {case.model} is not in the catalog"
    host = int(case.raw.get("host_mib", UNKNOWN_MIB))
    try:
        found = fit(facts, case.gpu_mib(), host, case.request(facts.n_layer), margin_mib, case.backend,  # type: ignore[arg-type]
                    bool(case.raw.get("unified", False)), build)
    except FitError as exc:
        return Result(case, False, exc.closest)
    return Result(case, True, found)


def describe(r: Result) -> str:
    """One line: the plan against what the seed saw."""
    m = r.case.measured
    parts = [f"{r.case.id}: seed {r.case.outcome}, planner {r.verdict}",
             f"gpu planned {r.gpu_total:.0f} of {r.plan.available('gpu') / MIB:.0f} MiB "
             f"(headroom {r.plan.headroom('gpu') / MIB:.0f} after the {r.plan.margin_mib} MiB margin)",
             f"compute planned {r.mib('compute buffer'):.0f}" + (f" vs seed {m['compute']:.0f}" if "compute" in m else ""),
             f"kv planned {r.mib('kv cache') + r.mib('recurrent state'):.0f}" + (f" vs seed {m['kv']:.0f}" if "kv" in m else ""),
             f"flags {' '.join(r.plan.config.flags())}"]
    return "; ".join(parts)
