"""Where a host's GPU toolkits come from: the CUDA toolkit (``llamacpp.cuda_repo``) and ROCm's HIP.

CUDA. ``llamacpp.cuda_repo`` picks the source (``data/distros.yaml`` ``cuda``): ``distro`` (the default), the
distribution's own package (Debian's non-free and Ubuntu's multiverse ``nvidia-cuda-toolkit`` under /usr, Arch's
``cuda`` in /opt/cuda; Fedora has none), or ``nvidia``, NVIDIA's repository (``cuda-toolkit`` in /usr/local/cuda).

* An nvcc the host already has (the probe's, or ``llamacpp.cuda_toolchain``'s) wins: the plan is made for it and
  build_deps installs no toolkit.
* Otherwise the plan is made for the nvcc the chosen package installs, with the older g++ it depends on and the
  GCC and glibc the host has (or, before any probe, its release's): a Debian 13 host plans for nvcc 12.4 and
  /usr/bin/g++-13 before either is there. An architecture that nvcc cannot compile for fails naming
  ``cuda_repo`` and the other source where that one can. build_deps installs the package only when the plan
  builds with it.
* Without a package (Fedora's ``distro``), the plan is the official image's bundle, or a clear failure when that
  cannot run on the host either.

HIP. llama.cpp's HIP backend needs ROCm >= ``data/rocm.yaml`` ``min_hip``. The probe's hipconfig counts first;
else the distribution's own HIP (``hip_version``): Debian's and Ubuntu's (5.x) are refused in one line naming
the field and the fix. A new enough ROCm the host already has where the distribution's own is too old is one
the user installed (AMD's repository): the build uses it and build_deps installs no HIP package.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from packaging.version import Version

from generators import data
from generators.errors import Problem, SpecError
from generators.facts import CudaSource, DistroFacts, HostFacts
from generators.facts.toolchain import HostCompiler, HostToolchain
from generators.plan import toolchain
from generators.plan.toolchain import ToolchainPlan, arch_problems

REPO_FIELD = "llamacpp.cuda_repo"  # relative to the llamafleet key, like every build problem
NO_PROBE_REASON = (
    "the host description has no llamacpp.cuda_toolchain: building with the distro's nvcc and the system GCC "
    "(put the versions build-probe-toolchain.sh prints there to have the plan chosen and checked)"
)


@dataclass(frozen=True)
class Toolkit:
    """The toolkit one backend's build uses: where it is on the host and what build_deps installs for it."""

    backend: str  # cuda | hip
    root: str | None  # CUDAToolkit_ROOT / ROCM_PATH (None: left to the compiler's own idea)
    compiler: str | None = None  # nvcc's path (CUDACXX); cuda only
    packages: tuple[str, ...] = ()  # what build_deps installs for it (none: the host has it, or the bundle)
    source: CudaSource | None = None  # the CUDA package build_deps installs and checks first
    headers_package: str | None = None  # a split toolkit's header package (Debian's layout: headers in /usr/include)


@dataclass(frozen=True)
class CudaPlan:
    toolchain: ToolchainPlan
    toolkit: Toolkit


def _prefixed(plan: ToolchainPlan, notes: list[str]) -> ToolchainPlan:
    return plan if not notes else dataclasses.replace(plan, reasons=(*notes, *plan.reasons))


def _found(facts: HostFacts, source: CudaSource | None) -> Toolkit:
    """The toolkit of an nvcc the host already has: where the probe found it (a known source's root when it is
    one), else where the chosen source puts it (a declared ``cuda_toolchain``). Nothing is installed."""
    distro = facts.distro
    probed = facts.probe.toolchain if facts.probe is not None else None
    path = probed.nvcc_path if probed is not None and probed.nvcc is not None else None
    known = [s for s in (distro.cuda.values() if distro is not None else ()) if s is not None]
    if path is None:
        chosen = source or next(iter(known), None)
        if chosen is None:
            return Toolkit("cuda", None)
        return Toolkit("cuda", chosen.root, chosen.nvcc_path, headers_package=chosen.headers_package)
    match = next((s for s in known if s.nvcc_path == path), None)
    if match is None:  # a wrapper or a private install: CMake asks that nvcc for its root
        return Toolkit("cuda", None, path)
    return Toolkit("cuda", match.root, path, headers_package=match.headers_package)


def _compiler_major(cxx: str) -> int:
    match = re.search(r"(\d+)$", cxx)
    if match is None:
        raise ValueError(f"data/distros.yaml host_cxx {cxx!r} does not end in its GCC major (g++-13)")
    return int(match.group(1))


def _expected(facts: HostFacts, source: CudaSource | None) -> tuple[HostToolchain, list[str]] | None:
    """The toolchain the host will have once build_deps installed ``source`` (its nvcc, and the older g++ it
    depends on) and the ``build`` group (the release's GCC, when the probe found none); None when too little is
    known (no distro row with GCC and glibc, and no probe or declaration that says)."""
    distro = facts.distro
    tc = facts.cuda_toolchain
    notes: list[str] = []
    if tc is not None:
        gcc, glibc, alts, driver = tc.gcc, tc.glibc, tc.alt_gccs, tc.driver
    else:
        if distro is None:
            return None
        probed = facts.probe.toolchain if facts.probe is not None else None
        glibc = (probed.glibc if probed is not None else None) or distro.glibc
        if distro.gcc_major is None or glibc is None:
            return None
        if facts.probe is None:
            notes.append(f"no host probe yet: planned for {distro.name}'s GCC {distro.gcc_major} and glibc {glibc} "
                         "(generators/data/distros.yaml); a run plans again from what the host reports")
            gcc = HostCompiler(Version(str(distro.gcc_major)), "g++")
        else:
            gcc = HostCompiler(Version(str(distro.gcc_major)), "g++",
                               installed_by=f"{distro.name}'s g++, which build_deps installs")
        alts = tuple(HostCompiler(a.version, a.cxx) for a in (probed.alternates if probed else ()) if a.cxx)
        gpus = facts.probe.gpus if facts.probe is not None else ()
        driver = next((g.driver_version for g in gpus if g.driver_version is not None), None)
    if source is not None and source.host_cxx and all(a.cxx != source.host_cxx for a in alts):
        package_gcc = HostCompiler(Version(str(_compiler_major(source.host_cxx))), source.host_cxx,
                                   installed_by="which the package installs")
        alts = (*alts, package_gcc)
    nvcc = None if source is None else source.nvcc
    return HostToolchain(facts.name, gcc, glibc, nvcc=nvcc, alt_gccs=alts, driver=driver), notes


def _arch_problem(distro: DistroFacts, source: CudaSource, arches: tuple[str, ...]) -> Problem | None:
    """An architecture the package's nvcc cannot compile for, naming the other source where its nvcc can."""
    assert source.nvcc is not None
    found = arch_problems(source.nvcc, arches)
    if not found:
        return None
    others = [s for s in distro.cuda.values() if s is not None and s.repo != source.repo and s.nvcc is not None]
    fits = [s for s in others if not arch_problems(s.nvcc, arches)]  # type: ignore[arg-type]
    fix = (f"set llamacpp.cuda_repo: {fits[0].repo} ({fits[0].label} installs nvcc {fits[0].nvcc})" if fits
           else f"no CUDA toolkit llamafleet knows for {distro.name} compiles for it: use backend vulkan")
    return Problem(REPO_FIELD, f"{source.repo}: {source.label} installs nvcc {source.nvcc}, and "
                               f"{'; '.join(found)}: {fix}")


def plan_cuda(facts: HostFacts, repo: str, arches: tuple[str, ...]) -> CudaPlan:
    """How the host gets CUDA and with which toolkit; raises SpecError (fields relative to ``llamafleet``)."""
    distro = facts.distro
    source = distro.cuda_source(repo) if distro is not None else None
    if distro is not None and repo == "nvidia" and source is None:
        own = distro.cuda_source("distro")
        instead = f": {own.label} is llamacpp.cuda_repo: distro" if own is not None else ""
        raise SpecError(facts.name, [Problem(REPO_FIELD, f"nvidia: NVIDIA's repository has no packages for "
                                                         f"{distro.name}{instead}")])
    tc = facts.cuda_toolchain
    if tc is not None and tc.nvcc is not None:  # the host's own nvcc wins
        return CudaPlan(toolchain.resolve(tc), _found(facts, source))
    if distro is None or (source is not None and source.nvcc is None):
        # no distro row, or a package whose release is not recorded (Arch's rolling cuda): nothing to plan for, so
        # the probe's versions decide (a bare probe: the bundle), and without a probe a native build
        plan = toolchain.resolve(tc) if tc is not None else ToolchainPlan(
            "native", (facts.toolchain_note or NO_PROBE_REASON,))
        if source is None:
            return CudaPlan(plan, Toolkit("cuda", None))
        packages = source.packages if plan.builds else ()
        return CudaPlan(plan, Toolkit("cuda", source.root, source.nvcc_path, packages, source if packages else None,
                                      source.headers_package))
    expected = _expected(facts, source)
    if expected is None:
        return CudaPlan(ToolchainPlan("native", (facts.toolchain_note or NO_PROBE_REASON,)), Toolkit("cuda", None))
    host, notes = expected
    if source is None:  # Fedora's own archive has no CUDA toolkit
        why = (f"{distro.name} packages no CUDA toolkit and no nvcc is known on the host (llamacpp.cuda_repo: "
               "nvidia installs NVIDIA's)")
        return CudaPlan(toolchain.bundle(host, [*notes, why]), Toolkit("cuda", None))
    plan = _prefixed(toolchain.resolve(host, toolkit=f"from {source.label}, installed by build_deps"), notes)
    if not plan.builds:  # it could not build here: build_deps leaves it out
        plan = _prefixed(toolchain.resolve(host, toolkit=f"from {source.label} (left out: it cannot build here)"),
                         notes)
        return CudaPlan(plan, Toolkit("cuda", None))
    problem = _arch_problem(distro, source, arches)
    if problem is not None:
        raise SpecError(facts.name, [problem])
    return CudaPlan(plan, Toolkit("cuda", source.root, source.nvcc_path, source.packages, source,
                                  source.headers_package))


def min_hip() -> Version:
    return Version(str(data.rocm()["min_hip"]))


def plan_hip(facts: HostFacts, field: str, gfx_targets: tuple[str, ...]) -> Toolkit:
    """The ROCm a HIP build uses; raises SpecError when it is older than llama.cpp's HIP backend needs."""
    distro = facts.distro
    need = min_hip()
    probed = facts.probe.toolchain if facts.probe is not None else None
    have = probed.hip if probed is not None else None
    fix = (f"install ROCm >= {need} from AMD's repository (repo.radeon.com; llamafleet does not add it) and run "
           "again, or use backend vulkan")
    if have is not None and have < need:
        raise SpecError(facts.name, [Problem(field, f"hip needs ROCm >= {need} (llama.cpp's HIP backend) and the "
                                                    f"host's hipconfig reports {have}: {fix}")])
    own_too_old = distro is not None and distro.hip_version is not None and distro.hip_version < need
    if have is not None and own_too_old:  # the user's own ROCm (AMD's repository): use it, install nothing
        assert probed is not None
        return Toolkit("hip", probed.rocm_path or "/opt/rocm")
    if own_too_old:
        assert distro is not None
        packages = distro.group("hip")[0] if distro.group("hip") else "no package"
        later = "".join(f"; {g} (Strix Halo) needs a much newer ROCm still" for g in gfx_targets if g == "gfx1151")
        raise SpecError(facts.name, [Problem(field, f"hip needs ROCm >= {need} (llama.cpp's HIP backend) and "
                                                    f"{distro.name}'s own HIP is {distro.hip_version} "
                                                    f"({packages}){later}: {fix}")])
    if distro is None:
        return Toolkit("hip", None)
    return Toolkit("hip", distro.rocm_path, packages=distro.group("hip"))


__all__ = ["NO_PROBE_REASON", "REPO_FIELD", "CudaPlan", "Toolkit", "min_hip", "plan_cuda", "plan_hip"]
