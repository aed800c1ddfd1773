"""The facts layer: what a host is and reports about itself, typed: its GPUs, distro, CUDA toolchain, memory.

This is the seam between what the inventory says and what the host has. For now :func:`facts_from_spec` builds
the facts from the inventory (GPUs resolved through the catalog, the distro's table, the toolchain versions written
under ``llamacpp.cuda_toolchain``); a probe on the host can fill the same :class:`HostFacts` later. What a host
prints (``llama-server --list-devices``, the toolchain probe's JSON) is parsed here too
(:mod:`~generators.facts.devices`, :mod:`~generators.facts.toolchain`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from generators import data
from generators.facts.toolchain import HostToolchain, from_probe
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
class DistroFacts:
    """The host's distribution and its row of ``data/distros.yaml``: package groups and toolkit paths."""

    key: str
    family: str
    package_manager: str
    packages: Mapping[str, tuple[str, ...]]  # group (build, cpu, cuda, vulkan, hip, ollama, sse_proxy, hub) -> names
    cuda_home: str
    rocm_path: str

    def group(self, name: str) -> tuple[str, ...]:
        """One package group (empty when the table has none)."""
        return tuple(self.packages.get(name) or ())


@dataclass(frozen=True)
class HostFacts:
    """What the host has: its GPUs in device order, its distro, its CUDA toolchain, its memory (None: unknown)."""

    name: str
    gpus: tuple[Gpu, ...] = ()
    distro: DistroFacts | None = None
    cuda_toolchain: HostToolchain | None = None
    ram_mib: int | None = None

    def backend_gpus(self, backend: str) -> tuple[Gpu, ...]:
        """The GPUs one backend sees, in its device order (CUDA0.., Vulkan0.., ROCm0..); none for cpu."""
        return () if backend == "cpu" else tuple(g for g in self.gpus if backend in g.backends)

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


def distro_facts(key: str) -> DistroFacts:
    row = data.distros()[key]
    packages = {group: tuple(names or ()) for group, names in (row.get("packages") or {}).items()}
    return DistroFacts(key, row["family"], row["package_manager"], packages, row["cuda_home"], row["rocm_path"])


def toolchain_probe(toolchain: CudaToolchain) -> dict[str, Any]:
    """The probe's JSON shape (:func:`~generators.facts.toolchain.from_probe`) of versions written in the inventory."""
    alt = [a.partition(":") for a in toolchain.alt_gcc]
    return {
        "nvcc": toolchain.nvcc, "gcc": toolchain.gcc, "glibc": toolchain.glibc, "driver": toolchain.driver,
        "alt_gcc": [{"version": v, "cxx": cxx or f"g++-{v.split('.')[0]}"} for v, _, cxx in alt],
    }


def facts_from_spec(host: Host, name: str = "host") -> HostFacts:
    """The facts the inventory states about a host (until a probe on the host reports them)."""
    cpp = host.llamacpp
    toolchain = None
    if cpp is not None and cpp.cuda_toolchain is not None:
        toolchain = from_probe(name, toolchain_probe(cpp.cuda_toolchain))
    return HostFacts(
        name=name,
        gpus=tuple(gpu_from_decl(g) for g in host.gpus),
        distro=None if host.distro is None else distro_facts(host.distro.key),
        cuda_toolchain=toolchain,
    )


__all__ = ["DistroFacts", "Gpu", "HostFacts", "distro_facts", "facts_from_spec", "gpu_from_decl", "toolchain_probe"]
