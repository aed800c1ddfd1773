"""CUDA toolchain resolution: from the versions a host reports, choose how that host gets a CUDA llama.cpp.

The host probe (``python -m generators toolchain --print-probe`` prints the script) reports nvcc's, GCC's (and
any other installed GCC's), glibc's and the NVIDIA driver's versions as JSON, typed by
:mod:`generators.facts.toolchain`. From those and the support data in ``generators/data/cuda_toolchains.yaml``
:func:`resolve` picks one plan:

* ``native``: the system GCC is one nvcc accepts and no glibc declaration clashes with nvcc's headers;
* ``alt-gcc``: the system GCC is too new for nvcc, an older installed GCC is not (``CMAKE_CUDA_HOST_COMPILER``);
* ``patch``: glibc declares math functions that nvcc's ``crt/math_functions.h`` declares without ``noexcept``;
  the build uses a private copy of the toolkit headers with llama.cpp's documented ``noexcept (true)`` fix
  (never the system toolkit);
* ``alt-gcc+patch``: both of the above;
* ``bundle``: nothing above works (no nvcc, or no accepted GCC: seed 000's Fedora 44 with GCC 16); the CUDA
  build is extracted from the official llama.cpp image (the bundle extractor the llamacpp role installs).

The plan and every reason for it print before anything builds::

    python -m generators toolchain --nvcc 13.0 --gcc 16.1 --glibc 2.43 --alt-gcc 14.2:/usr/bin/g++-14
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from packaging.version import Version

from generators import data
from generators.errors import Problem, SpecError
from generators.facts.toolchain import HostCompiler, HostToolchain

FIELD = "llamacpp.backend"  # the field a toolchain problem is reported against


@dataclass(frozen=True)
class GlibcConflict:
    functions: tuple[str, ...]
    glibc: Version
    fixed_in: Version | None
    source: str


@dataclass(frozen=True)
class BundleFlavour:
    cuda_major: int
    tag: str
    min_driver: Version


@dataclass(frozen=True)
class SupportMatrix:
    """The data file, typed."""

    host_compilers: tuple[tuple[Version, int], ...]  # (first nvcc, max gcc major), ascending
    known_through: Version  # newest nvcc release line the host_compilers data was checked against
    glibc_conflicts: tuple[GlibcConflict, ...]
    bundle_min_glibc: Version
    bundle_flavours: tuple[BundleFlavour, ...]  # preferred first
    architectures: tuple[tuple[str, Version, Version | None], ...] = ()  # (arch, min nvcc, max nvcc or None)


@dataclass(frozen=True)
class ToolchainPlan:
    """How this host gets CUDA: build (with which host compiler, whether headers are patched) or bundle."""

    kind: str  # native | alt-gcc | patch | alt-gcc+patch | bundle
    reasons: tuple[str, ...]
    host_cxx: str | None = None  # set for alt-gcc plans
    patch_functions: tuple[str, ...] = ()  # declarations that get noexcept (true) in the private headers
    bundle_tag: str | None = None  # image flavour for bundle plans (cuda13, cuda)
    nvcc: str | None = None

    @property
    def builds(self) -> bool:
        return self.kind != "bundle"

    def describe(self) -> str:
        lines = [f"CUDA toolchain plan: {self.kind}"]
        if self.host_cxx:
            lines.append(f"  host compiler: {self.host_cxx}")
        if self.patch_functions:
            lines.append(f"  private header patch: noexcept (true) on {', '.join(self.patch_functions)}")
        if self.bundle_tag:
            lines.append(f"  bundle image flavour: {self.bundle_tag}")
        lines += [f"  because {reason}" for reason in self.reasons]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "reasons": list(self.reasons),
            "host_cxx": self.host_cxx,
            "patch_functions": list(self.patch_functions),
            "bundle_tag": self.bundle_tag,
            "nvcc": self.nvcc,
        }


def parse_matrix(raw: dict) -> SupportMatrix:
    compilers = tuple(sorted((Version(str(e["nvcc"])), int(e["max_gcc"])) for e in raw["host_compilers"]))
    conflicts = tuple(
        GlibcConflict(
            functions=tuple(e["functions"]),
            glibc=Version(str(e["glibc"])),
            fixed_in=None if e["fixed_in"] is None else Version(str(e["fixed_in"])),
            source=str(e["source"]),
        )
        for e in raw["glibc_conflicts"]
    )
    bundle = raw["bundle"]
    flavours = tuple(
        BundleFlavour(int(f["cuda_major"]), str(f["tag"]), Version(str(f["min_driver"]))) for f in bundle["flavours"]
    )
    arches = tuple(
        (str(a["arch"]), Version(str(a["min_nvcc"])), None if a["max_nvcc"] is None else Version(str(a["max_nvcc"])))
        for a in raw.get("architectures", [])
    )
    return SupportMatrix(
        compilers, Version(str(raw["known_through"])), conflicts, Version(str(bundle["min_glibc"])), flavours, arches
    )


@functools.cache
def support_matrix() -> SupportMatrix:
    return parse_matrix(data.cuda_toolchains())


def max_gcc_for(nvcc: Version, matrix: SupportMatrix) -> tuple[int | None, bool]:
    """The newest GCC major this nvcc accepts, and whether that came from beyond the data (a guess)."""
    release = Version(f"{nvcc.major}.{nvcc.minor}")
    known = [(first, gcc) for first, gcc in matrix.host_compilers if first <= release]
    if not known:
        return None, False
    beyond = release > matrix.known_through
    return known[-1][1], beyond


def arch_problems(nvcc: Version, arches: tuple[str, ...], matrix: SupportMatrix | None = None) -> list[str]:
    """Why this nvcc cannot compile for some of ``arches`` (``"89"``, ``"120a"``); empty when it can."""
    matrix = matrix or support_matrix()
    release = Version(f"{nvcc.major}.{nvcc.minor}")
    table = {arch: (low, high) for arch, low, high in matrix.architectures}
    problems = []
    for arch in arches:
        base = arch.rstrip("af")
        if base not in table:
            problems.append(f"compute capability {arch} is not in the support data")
            continue
        low, high = table[base]
        if release < low:
            problems.append(f"nvcc {nvcc} cannot compile for {arch} (needs nvcc >= {low})")
        elif high is not None and release > high:
            problems.append(f"nvcc {nvcc} no longer compiles for {arch} (last nvcc: {high})")
    return problems


def header_conflicts(nvcc: Version, glibc: Version, matrix: SupportMatrix) -> tuple[GlibcConflict, ...]:
    """glibc declarations that clash with this nvcc's crt/math_functions.h."""
    return tuple(c for c in matrix.glibc_conflicts if glibc >= c.glibc and (c.fixed_in is None or nvcc < c.fixed_in))


def bundle(host: HostToolchain, why: list[str], matrix: SupportMatrix | None = None) -> ToolchainPlan:
    """The bundle plan for a host that cannot build (``why``), or SpecError when the official image cannot run there
    either (glibc older than the image's, or a driver too old for every flavour)."""
    return _bundle(host, matrix or support_matrix(), why)


def _bundle(host: HostToolchain, matrix: SupportMatrix, why: list[str]) -> ToolchainPlan:
    problems = []
    if host.glibc < matrix.bundle_min_glibc:
        problems.append(
            f"the official CUDA image's binaries need glibc >= {matrix.bundle_min_glibc} (Ubuntu 24.04), "
            f"this host has {host.glibc}"
        )
    flavour = next((f for f in matrix.bundle_flavours if host.driver is None or host.driver >= f.min_driver), None)
    if flavour is None:
        need = ", ".join(f"CUDA {f.cuda_major} needs >= {f.min_driver}" for f in matrix.bundle_flavours)
        problems.append(f"the NVIDIA driver {host.driver} is too old for every official CUDA image ({need})")
    if problems:
        raise SpecError(host.host, [Problem(FIELD, "no way to get a CUDA build: " + "; ".join(why + problems))])
    assert flavour is not None
    driver = "driver version not known" if host.driver is None else f"driver {host.driver}"
    reasons = (
        *why,
        f"the official CUDA {flavour.cuda_major} image's build can run here (glibc {host.glibc} >= {matrix.bundle_min_glibc}, {driver})",
    )
    return ToolchainPlan("bundle", reasons, bundle_tag=flavour.tag, nvcc=None if host.nvcc is None else str(host.nvcc))


def _compiler(c: HostCompiler) -> str:
    """How a reason names a GCC: the one installed, or the one something installs."""
    return f"{c.cxx}, {c.installed_by}" if c.installed_by else f"the installed GCC {c.version} ({c.cxx})"


def resolve(host: HostToolchain, matrix: SupportMatrix | None = None, toolkit: str | None = None) -> ToolchainPlan:
    """Choose the plan for one host; raises SpecError naming the host when no plan exists.

    ``toolkit`` says where an nvcc the host does not have yet comes from (``from Debian 13's nvidia-cuda-toolkit
    (non-free), installed by build_deps``): ``host.nvcc`` is then the version that package installs, and the
    reasons say so."""
    matrix = matrix or support_matrix()
    if host.nvcc is None:
        return _bundle(host, matrix, ["no nvcc was found on the host"])
    nvcc = host.nvcc
    who = f"nvcc {nvcc}" if toolkit is None else f"nvcc {nvcc} {toolkit}; it"
    max_gcc, guessed = max_gcc_for(nvcc, matrix)
    if max_gcc is None:
        return _bundle(host, matrix, [f"{who} is older than any toolkit in the support data"])
    reasons: list[str] = []
    if guessed:
        reasons.append(
            f"nvcc {nvcc} is newer than the support data; assuming it accepts GCC <= {max_gcc} like the last"
        )
    host_cxx: str | None = None
    system = f"{host.gcc.version}" + (f" ({host.gcc.installed_by})" if host.gcc.installed_by else "")
    if host.gcc.version.major <= max_gcc and host.gcc.installed_by:
        reasons.append(f"{who} accepts GCC <= {max_gcc}: the system GCC {system}")
    elif host.gcc.version.major <= max_gcc:
        reasons.append(f"{who} accepts the system GCC {system} (GCC <= {max_gcc})")
    else:
        fitting = sorted((c for c in host.alt_gccs if c.version.major <= max_gcc), key=lambda c: c.version)
        too_new = f"{who} accepts GCC <= {max_gcc}, the system GCC is {system}"
        if not fitting:
            others = ", ".join(str(c.version) for c in host.alt_gccs) or "none"
            return _bundle(
                host,
                matrix,
                [
                    (
                        f"{too_new} and no other installed GCC fits (others: {others}); "
                        "-allow-unsupported-compiler does not help: nvcc cannot parse newer libstdc++ headers"
                    )
                ],
            )
        host_cxx = fitting[-1].cxx
        reasons.append(f"{too_new}; building with {_compiler(fitting[-1])}")
    conflicts = header_conflicts(nvcc, host.glibc, matrix)
    functions = tuple(f for c in conflicts for f in c.functions)
    for c in conflicts:
        fixed = "no fixed nvcc known" if c.fixed_in is None else f"fixed in nvcc {c.fixed_in}"
        reasons.append(
            f"glibc {host.glibc} (>= {c.glibc}) declares {', '.join(c.functions)} with noexcept and nvcc {nvcc}'s "
            f"crt/math_functions.h does not ({fixed}): patching a private copy of the headers"
        )
    if not conflicts:
        reasons.append(f"glibc {host.glibc} has no declaration that clashes with nvcc {nvcc}'s headers")
    kind = "+".join(k for k, on in (("alt-gcc", host_cxx is not None), ("patch", bool(functions))) if on) or "native"
    return ToolchainPlan(kind, tuple(reasons), host_cxx=host_cxx, patch_functions=functions, nvcc=str(nvcc))


__all__ = [
    "SupportMatrix",
    "ToolchainPlan",
    "arch_problems",
    "bundle",
    "header_conflicts",
    "max_gcc_for",
    "parse_matrix",
    "resolve",
    "support_matrix",
]
