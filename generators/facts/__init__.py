"""The facts layer: what a host is and reports about itself, typed: its GPUs, distro, CUDA toolchain, memory.

This is the seam between what the inventory says and what the host has. For now :func:`facts_from_spec` builds
the facts from the inventory (GPUs resolved through the catalog, the distro's table, the toolchain versions written
under ``llamacpp.cuda_toolchain``); a probe on the host can fill the same :class:`HostFacts` later. What a host
prints (``llama-server --list-devices``, the toolchain probe's JSON) is parsed here too
(:mod:`~generators.facts.devices`, :mod:`~generators.facts.toolchain`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging.version import Version

from generators import data
from generators.errors import Problem, SpecError
from generators.facts.probe import ProbedFacts, ProbedGpu
from generators.facts.toolchain import HostCompiler, HostToolchain, from_probe
from generators.spec import CudaToolchain, GpuDecl, Host
from generators.spec.types import GPU_VENDOR_BACKENDS


@dataclass(frozen=True)
class Gpu:
    """One GPU of the host: a catalog entry, or a custom declaration, with the host's overrides applied."""

    key: str
    display: str
    vendor: str
    vram_gb: float | None
    bandwidth_gbs: float
    cuda_cc: str | None
    gfx: str | None
    tensor_cores: bool
    unified: bool
    custom: bool
    quirks: dict[str, Any] = field(default_factory=dict, compare=False)
    vulkan_index: int | None = field(default=None, compare=False)  # vulkaninfo's GPU<n>, when a probe listed it

    @property
    def backends(self) -> tuple[str, ...]:
        """The llama.cpp backends this GPU's devices appear in."""
        return GPU_VENDOR_BACKENDS[self.vendor]

    def env(self, backend: str) -> dict[str, str]:
        """The catalog's environment quirks for this GPU under one backend."""
        return dict(self.quirks.get("env", {}).get(backend, {}))

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "display": self.display,
            "vendor": self.vendor,
            "vram_gb": self.vram_gb,
            "bandwidth_gbs": self.bandwidth_gbs,
            "cuda_cc": self.cuda_cc,
            "gfx": self.gfx,
            "tensor_cores": self.tensor_cores,
            "unified": self.unified,
            "custom": self.custom,
        }


@dataclass(frozen=True)
class CudaSource:
    """One way a distro gets the CUDA toolkit (a row's ``cuda.distro`` or ``cuda.nvidia`` in ``data/distros.yaml``):
    the packages build_deps installs, the nvcc release they bring, and where the toolkit lands."""

    repo: str  # the llamacpp.cuda_repo value that picks it: distro | nvidia
    label: str  # "Debian 13's nvidia-cuda-toolkit (non-free)", "NVIDIA's repository (cuda-toolkit)"
    packages: tuple[str, ...]
    nvcc: Version | None  # the release it installs (None: not recorded, a rolling release)
    root: str  # the toolkit root (CUDAToolkit_ROOT); nvcc is <root>/bin/nvcc
    host_cxx: str | None = None  # the older g++ the package depends on (installed with it)
    headers_package: str | None = None  # split layout: the package whose headers lie in /usr/include (dpkg)
    component: str | None = None  # the apt component the package is in
    enable: str | None = None  # how to enable that component
    repo_url: str | None = None  # NVIDIA's repository for this distro
    repo_file: str | None = None  # what adds it: the cuda-keyring .deb (apt), the .repo file (dnf)

    @property
    def nvcc_path(self) -> str:
        return f"{self.root}/bin/nvcc"


@dataclass(frozen=True)
class DistroFacts:
    """The host's distribution and its row of ``data/distros.yaml``: package groups and toolkit paths."""

    key: str
    family: str
    package_manager: str
    packages: Mapping[str, tuple[str, ...]]  # group (build, cpu, vulkan, hip, ollama, sse_proxy, hub) -> names
    rocm_path: str
    name: str = ""  # "Debian 13"
    gcc_major: int | None = None  # the release's system GCC
    glibc: Version | None = None  # the release's glibc (None: a rolling release)
    cuda: Mapping[str, CudaSource | None] = field(default_factory=dict)  # cuda_repo value -> source (None: none)
    hip_version: Version | None = None  # the distribution's own HIP (None: not recorded)

    def group(self, name: str) -> tuple[str, ...]:
        """One package group (empty when the table has none)."""
        return tuple(self.packages.get(name) or ())

    def cuda_source(self, repo: str) -> CudaSource | None:
        """Where ``llamacpp.cuda_repo: <repo>`` gets the CUDA toolkit on this distro (None: nowhere)."""
        return self.cuda.get(repo)


@dataclass(frozen=True)
class HostFacts:
    """What the host has: its GPUs in device order, its distro, its CUDA toolchain, its memory (None: unknown)."""

    name: str
    gpus: tuple[Gpu, ...] = ()
    distro: DistroFacts | None = None
    cuda_toolchain: HostToolchain | None = None
    ram_mib: int | None = None
    probe: ProbedFacts | None = field(default=None, compare=False)  # what the host probe read, when it ran
    toolchain_note: str | None = None  # why there is no cuda_toolchain (the probe ran but found no compiler)

    def backend_gpus(self, backend: str) -> tuple[Gpu, ...]:
        """The GPUs one backend sees, in its device order (CUDA0.., Vulkan0.., ROCm0..); none for cpu."""
        found = () if backend == "cpu" else tuple(g for g in self.gpus if backend in g.backends)
        if backend == "vulkan" and found and all(g.vulkan_index is not None for g in found):
            return tuple(sorted(found, key=lambda g: g.vulkan_index or 0))
        return found

    def device_index(self, backend: str, gpu: Gpu) -> int:
        """The GPU's device number under a backend: Vulkan's from the host's own listing when probed."""
        if backend == "vulkan" and gpu.vulkan_index is not None:
            return gpu.vulkan_index
        return self.backend_gpus(backend).index(gpu)

    @property
    def available_backends(self) -> tuple[str, ...]:
        """Backends this host's hardware can run, CPU always included."""
        found = ["cpu"]
        for gpu in self.gpus:
            found += [b for b in gpu.backends if b not in found]
        return tuple(found)


def gpu_from_decl(decl: GpuDecl) -> Gpu:
    """A declared GPU resolved through the catalog (the declaration's own values win)."""
    key = data.find_gpu(decl.name)
    base: dict[str, Any] = dict(data.gpus()[key]) if key is not None else {}

    def pick(name: str, default: Any = None) -> Any:
        value = getattr(decl, name)
        return value if value is not None else base.get(name, default)

    return Gpu(
        key=key or decl.name,
        display=base.get("display", decl.name),
        vendor=pick("vendor"),
        vram_gb=pick("vram_gb"),
        bandwidth_gbs=float(pick("bandwidth_gbs")),
        cuda_cc=pick("cuda_cc"),
        gfx=pick("gfx"),
        tensor_cores=bool(pick("tensor_cores", False)),
        unified=bool(pick("unified", False)),
        custom=key is None,
        quirks=dict(base.get("quirks", {})),
    )


def _cuda_source(repo: str, raw: Mapping[str, Any] | None, package_manager: str) -> CudaSource | None:
    """A row's ``cuda.<repo>`` entry, typed; NVIDIA's repository takes its common facts from cuda_toolchains.yaml."""
    if raw is None:
        return None
    packages = tuple(raw["packages"])
    if repo == "nvidia":
        common = data.cuda_toolchains()["nvidia_repo"]
        adds = common["repo_file"] if package_manager == "dnf" else common["keyring"]  # dnf: .repo; apt: keyring
        return CudaSource(
            repo=repo,
            label=f"NVIDIA's repository ({', '.join(packages)})",
            packages=packages,
            nvcc=Version(str(common["nvcc"])),
            root=str(common["root"]),
            repo_url=str(common["url"]).format(repo=raw["repo"]),
            repo_file=str(adds).format(repo=raw["repo"]),
        )
    return CudaSource(
        repo=repo,
        label=str(raw["label"]),
        packages=packages,
        nvcc=None if raw.get("nvcc") is None else Version(str(raw["nvcc"])),
        root=str(raw["root"]),
        host_cxx=raw.get("host_cxx"),
        headers_package=raw.get("headers_package"),
        component=raw.get("component"),
        enable=raw.get("enable"),
    )


def distro_facts(key: str) -> DistroFacts:
    row = data.distros()[key]
    packages = {group: tuple(names or ()) for group, names in (row.get("packages") or {}).items()}
    manager = row["package_manager"]
    return DistroFacts(
        key,
        row["family"],
        manager,
        packages,
        row["rocm_path"],
        name=str(row.get("name") or key),
        gcc_major=row.get("gcc_major"),
        glibc=None if row.get("glibc") is None else Version(str(row["glibc"])),
        cuda={repo: _cuda_source(repo, raw, manager) for repo, raw in (row.get("cuda") or {}).items()},
        hip_version=None if row.get("hip_version") is None else Version(str(row["hip_version"])),
    )


def toolchain_probe(toolchain: CudaToolchain) -> dict[str, Any]:
    """The probe's JSON shape (:func:`~generators.facts.toolchain.from_probe`) of versions written in the inventory."""
    alt = [a.partition(":") for a in toolchain.alt_gcc]
    return {
        "nvcc": toolchain.nvcc, "gcc": toolchain.gcc, "glibc": toolchain.glibc, "driver": toolchain.driver,
        "alt_gcc": [{"version": v, "cxx": cxx or f"g++-{v.split('.')[0]}"} for v, _, cxx in alt],
    }


#: detected VRAM may differ from the declared (or catalogued) size by this fraction: nvidia-smi reports 24564 MiB
#: for a "24 GB" RTX 4090 and 8188 MiB for an "8 GB" RTX 4060 Laptop; a 16 GB card declared as 24 is caught.
VRAM_TOLERANCE = 0.10
GIB = 1024**3

DRIVER_HINTS = {
    "cuda": (
        "install the NVIDIA kernel driver (Fedora: akmod-nvidia from RPM Fusion; Debian/Ubuntu: nvidia-driver / "
        "ubuntu-drivers install; Arch: nvidia) and reboot, then run again"
    ),
    "hip": (
        "load the amdgpu kernel driver with KFD (a kernel >= 6.10 for gfx1151, or ROCm's amdgpu-dkms) and reboot, "
        "then run again"
    ),
}


def catalog_key(gpu: ProbedGpu) -> str | None:
    """The catalog entry of a probed GPU: by PCI id first, else by the name its tools print."""
    if gpu.pci_id is not None:
        for key, entry in data.gpus().items():
            if gpu.pci_id.lower() in (i.lower() for i in entry.get("pci_ids") or ()):
                return key
    if gpu.name:
        return data.find_gpu(gpu.name) or data.find_gpu(gpu.name.replace("(R)", "").replace("(TM)", ""))
    return None


def _probed_label(gpu: ProbedGpu) -> str:
    key = catalog_key(gpu)
    vram = f", {gpu.vram_bytes / GIB:.1f} GiB" if gpu.vram_bytes and not gpu.unified else ""
    return f"{key or gpu.name or 'unknown GPU'} ({gpu.pci_id or gpu.pci_slot or 'no PCI id'}{vram})"


def _gpu_from_probe(gpu: ProbedGpu, key: str, vulkan_index: int | None) -> Gpu:
    base = dict(data.gpus()[key])
    pool_gb = unified_pool_gb(gpu) if base.get("unified") else None
    return Gpu(
        key=key, display=base.get("display", key), vendor=base["vendor"], vram_gb=pool_gb or base.get("vram_gb"),
        bandwidth_gbs=float(base["bandwidth_gbs"]), cuda_cc=base.get("cuda_cc") or gpu.compute_capability,
        gfx=base.get("gfx") or gpu.gfx_target, tensor_cores=bool(base.get("tensor_cores", False)),
        unified=bool(base.get("unified", False)), custom=False, quirks=dict(base.get("quirks", {})),
        vulkan_index=vulkan_index,
    )


def unified_pool_gb(gpu: ProbedGpu) -> float | None:
    """What the kernel lets an APU's GPU allocate, in GiB to a tenth: its GTT plus the BIOS carve-out
    (``mem_info_vram_total``); None for a discrete GPU or an APU whose GTT was not read."""
    if not gpu.unified or gpu.gtt_bytes is None:
        return None
    return round((gpu.gtt_bytes + (gpu.vram_bytes or 0)) / GIB, 1)


def gtt_kernel_params(pool_gb: float, carve_out_bytes: int) -> str:
    """The kernel command line that grows an amdgpu APU's GTT so the pool reaches ``pool_gb``: ``amdgpu.gttsize``
    (MiB; older kernels) and TTM's page limits (4 KiB pages; the limit kernels since 6.x apply)."""
    gtt_mib = max(0, math.ceil(pool_gb * 1024 - carve_out_bytes / 1024**2))
    pages = gtt_mib * 256
    return f"amdgpu.gttsize={gtt_mib} ttm.pages_limit={pages} ttm.page_pool_size={pages}"


def _pool_problem(declared: Gpu, gpu: ProbedGpu, field_name: str) -> Problem | None:
    """An APU declared with a larger GPU pool than its kernel gives (seed 003: 96 GB needs the GTT raised)."""
    have = unified_pool_gb(gpu)
    if not declared.unified or not declared.vram_gb or have is None or gpu.gtt_bytes is None:
        return None
    if have >= declared.vram_gb * (1 - VRAM_TOLERANCE):
        return None
    return Problem(field_name, f"declared {declared.key} with a {declared.vram_gb:g} GB GPU pool, the kernel gives "
                               f"it {have:.1f} GiB (GTT {gpu.gtt_bytes / GIB:.1f} GiB + carve-out "
                               f"{(gpu.vram_bytes or 0) / GIB:.1f} GiB): add "
                               f"{gtt_kernel_params(declared.vram_gb, gpu.vram_bytes or 0)} to the kernel command "
                               "line and reboot, or declare the smaller vram_gb")


def _matches(declared: Gpu, gpu: ProbedGpu) -> bool:
    key = catalog_key(gpu)
    if key is not None:
        return key == declared.key
    names = {n.lower() for n in (declared.key, declared.display)}
    return gpu.vendor == declared.vendor and (gpu.name or "").lower() in names | {""}


SOFTWARE_VENDORS = ("mesa",)  # a software Vulkan device (lavapipe): on no PCI bus, listed by vulkaninfo only


def _software_device(declared: Gpu, probe: ProbedFacts, field_name: str, problems: list[Problem]) -> Gpu | None:
    """A declared software Vulkan device: the CPU-type device of the host's Vulkan listing. A bare host has no
    listing yet (vulkaninfo and Mesa come with the backend's packages): the declaration stands, and the build's
    device check (``--list-devices``) proves it before anything switches. A listing without a CPU device fails."""
    if not probe.vulkan_devices:
        return declared
    cpu = [d for d in probe.vulkan_devices if d.type == "cpu"]
    if not cpu:
        listed = ", ".join(f"GPU{d.index} {d.name} ({d.type})" for d in probe.vulkan_devices)
        problems.append(Problem(field_name, f"declared {declared.key} (a software Vulkan device), vulkaninfo lists "
                                            f"no CPU-type device: {listed}"))
        return None
    return Gpu(**{**declared.__dict__, "vulkan_index": cpu[0].index})


def _merge_gpus(host: Host, probe: ProbedFacts, problems: list[Problem]) -> tuple[Gpu, ...]:
    """Declared GPUs checked against the detected ones (each must be there, VRAM within tolerance); without a
    declaration, the detected GPUs, each through the catalog. Vulkan indices come from the host's listing."""
    detected = list(probe.gpus)
    seen = ", ".join(_probed_label(g) for g in detected) or "no GPU"
    if not host.gpus:
        out = []
        for gpu in detected:
            key = catalog_key(gpu)
            if key is None:
                problems.append(Problem("llamafleet.gpus", f"detected {_probed_label(gpu)} is not in the GPU catalog: "
                                                           f"{data.CUSTOM_GPU_HINT}"))
                continue
            out.append(_gpu_from_probe(gpu, key, probe.vulkan_index(gpu)))
        return tuple(out)
    out, used = [], set()
    for i, decl in enumerate(host.gpus):
        declared = gpu_from_decl(decl)
        match = next((j for j, g in enumerate(detected) if j not in used and _matches(declared, g)), None)
        field_name = f"llamafleet.gpus[{i}]"
        if match is None and declared.vendor in SOFTWARE_VENDORS:
            software = _software_device(declared, probe, field_name, problems)
            if software is not None:
                out.append((len(detected) + i, software))
            continue
        if match is None:
            problems.append(Problem(field_name, f"declared {declared.key}, detected {seen}"))
            continue
        used.add(match)
        gpu = detected[match]
        if declared.vram_gb and not declared.unified and gpu.vram_bytes and not gpu.unified:
            have = gpu.vram_bytes / GIB
            if abs(have - declared.vram_gb) > VRAM_TOLERANCE * declared.vram_gb:
                problems.append(Problem(field_name, f"declared {declared.key} with {declared.vram_gb:g} GB VRAM, "
                                                    f"detected {have:.1f} GiB"))
        short = _pool_problem(declared, gpu, field_name)
        if short is not None:
            problems.append(short)
        # an APU declared without its pool is planned against the pool the kernel gives
        vram_gb = declared.vram_gb or (unified_pool_gb(gpu) if declared.unified else None)
        out.append((match, Gpu(**{**declared.__dict__, "vram_gb": vram_gb, "vulkan_index": probe.vulkan_index(gpu)})))
    return tuple(g for _, g in sorted(out, key=lambda pair: pair[0]))


def detected_distro_key(probe: ProbedFacts) -> str | None:
    """The distro table's row for what os-release says: ``<id>-<version>``, else ``<id>`` (rolling releases)."""
    table = data.distros()
    d = probe.distro
    for key in (f"{d.id}-{d.version_id}" if d.version_id else None, d.id):
        if key is not None and key in table:
            return key
    return None


def _distro(host: Host, probe: ProbedFacts | None, problems: list[Problem]) -> DistroFacts | None:
    if probe is None:
        return None if host.distro is None else distro_facts(host.distro.key)
    found = detected_distro_key(probe)
    said = f"{probe.distro.id}{'-' + probe.distro.version_id if probe.distro.version_id else ''}"
    if host.distro is not None:
        declared = host.distro.key
        if found != declared and not (host.distro.version is None and probe.distro.id == host.distro.name):
            problems.append(Problem("llamafleet.distro", f"declared {declared}, detected {said}"))
        return distro_facts(declared)
    if found is None:
        if host.engine == "llamacpp":
            known = ", ".join(sorted(data.distros()))
            problems.append(Problem("llamafleet.distro", f"detected {said}, which generators/data/distros.yaml does "
                                                         f"not list (known: {known})"))
        return None
    return distro_facts(found)


def _probed_toolchain(name: str, probe: ProbedFacts) -> tuple[HostToolchain | None, str | None]:
    tc = probe.toolchain
    if tc.gcc is None or tc.glibc is None:
        return None, (
            "the host probe found no " + ("GCC" if tc.gcc is None else "glibc version")
            + " yet (build_deps installs the compilers): building with the distro's nvcc and the system GCC"
        )
    driver = next((g.driver_version for g in probe.gpus if g.driver_version is not None), None)
    return HostToolchain(
        host=name,
        gcc=HostCompiler(tc.gcc, tc.gxx_path or "g++"),
        glibc=tc.glibc,
        nvcc=tc.nvcc,
        alt_gccs=tuple(HostCompiler(a.version, a.cxx) for a in tc.alternates if a.cxx),
        driver=driver,
    ), None


def _driver_problems(host: Host, probe: ProbedFacts) -> list[Problem]:
    """A backend whose kernel driver is missing: CUDA without a working nvidia-smi, HIP without /dev/kfd."""
    if host.llamacpp is None:
        return []
    out = []
    backends = host.llamacpp.backends
    fields = {host.llamacpp.backend: "backend", **{b: "also_build" for b in host.llamacpp.also_build}}
    if "cuda" in backends:
        failed = next((f for f in probe.tool_failures if f.tool == "nvidia-smi"), None)
        if failed is not None or not any(g.nvidia_index is not None for g in probe.gpus):
            why = f"nvidia-smi failed ({failed.message})" if failed else "nvidia-smi lists no GPU (not installed?)"
            out.append(Problem(f"llamafleet.llamacpp.{fields['cuda']}", f"cuda needs the NVIDIA kernel driver: {why}; "
                                                                         f"{DRIVER_HINTS['cuda']}"))
    if "hip" in backends and not probe.kfd_present:
        out.append(Problem(f"llamafleet.llamacpp.{fields['hip']}", f"hip needs /dev/kfd, which this host lacks; "
                                                                    f"{DRIVER_HINTS['hip']}"))
    return out


def facts_from_spec(host: Host, name: str = "host", probe: ProbedFacts | None = None) -> HostFacts:
    """The host's facts: what the inventory states, merged with what the host probe detected (when it ran).

    With a probe, declared GPUs and distro are checked against the detected ones and undeclared ones are filled
    in; the CUDA toolchain versions come from the probe unless ``llamacpp.cuda_toolchain`` states them (the
    declaration wins: it is how a user overrides the plan). Every disagreement is one problem naming the field,
    all raised together.
    """
    cpp = host.llamacpp
    problems: list[Problem] = []
    toolchain, note = None, None
    if cpp is not None and cpp.cuda_toolchain is not None:
        toolchain = from_probe(name, toolchain_probe(cpp.cuda_toolchain))
    elif probe is not None:
        toolchain, note = _probed_toolchain(name, probe)
    if probe is None:
        gpus = tuple(gpu_from_decl(g) for g in host.gpus)
    else:
        gpus = _merge_gpus(host, probe, problems)
        problems += _driver_problems(host, probe)
    distro = _distro(host, probe, problems)
    if problems:
        raise SpecError(name, problems)
    return HostFacts(
        name=name,
        gpus=gpus,
        distro=distro,
        cuda_toolchain=toolchain,
        ram_mib=None if probe is None or probe.ram_bytes is None else probe.ram_bytes // 2**20,
        probe=probe,
        toolchain_note=note,
    )


__all__ = ["VRAM_TOLERANCE", "gtt_kernel_params", "unified_pool_gb", "CudaSource", "DistroFacts", "catalog_key", "detected_distro_key", "Gpu", "HostFacts", "distro_facts", "facts_from_spec", "gpu_from_decl", "toolchain_probe"]
