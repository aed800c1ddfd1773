"""Per-backend llama.cpp builds: a :class:`BuildTarget` per backend, its paths, its checks and its CMake flags.

Backends (CPU, CUDA, Vulkan, ROCm/HIP) build side by side on one host (seed 003 builds Vulkan and ROCm): each
has its own build dir and its own versioned prefix ``b<build>-<backend>``; ccache is shared. CUDA takes the plan
:mod:`generators.plan.toolchain` chose for the host (native, an older host GCC, private patched headers, or the
bundle the llamacpp role's extractor unpacks). :mod:`generators.render.builds` turns a target into its script;
switching ``current`` is the role's job, after the device check (:mod:`generators.facts.devices`) has seen
:func:`expected_device` in the new build's ``llama-server --list-devices``: seed 004's first binary silently ran
on the CPU.

The inputs are small frozen dataclasses of their own so the host schema can map onto them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from packaging.version import Version

from generators.errors import Problem, SpecError
from generators.plan.toolchain import ToolchainPlan, arch_problems
from generators.plan.toolkits import Toolkit

Backend = Literal["cpu", "cuda", "vulkan", "hip"]
BACKENDS: tuple[str, ...] = ("cpu", "cuda", "vulkan", "hip")
TARGETS: tuple[str, ...] = ("llama-server", "llama-bench", "llama-batched-bench", "llama-cli")

_CUDA_ARCH = re.compile(r"^[1-9][0-9]{1,2}[af]?$")  # 75, 86, 89, 120a
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_GFX = re.compile(r"^gfx[0-9]{3,4}[a-f0-9]?$")  # gfx1030, gfx1100, gfx1151, gfx90a

# Compute capability (nvidia-smi --query-gpu=compute_cap) -> CMAKE_CUDA_ARCHITECTURES entry. Blackwell consumer
# parts build as 120a/121a (architecture-specific features, as llama.cpp's own CMake list does).
_ARCH_SUFFIX = {"120": "120a", "121": "121a"}

def cuda_arch(compute_cap: str) -> str:
    """``"8.9"`` -> ``"89"``, ``"12.0"`` -> ``"120a"``."""
    major, _, minor = compute_cap.partition(".")
    base = f"{int(major)}{int(minor or 0)}"
    return _ARCH_SUFFIX.get(base, base)


def cuda_arches_from_probe(probe: dict) -> tuple[str, ...]:
    """CMAKE_CUDA_ARCHITECTURES entries for the GPUs the toolchain probe saw (nvidia-smi compute_cap), unique."""
    arches = {cuda_arch(gpu["compute_cap"]) for gpu in probe.get("gpus", []) if gpu.get("compute_cap")}
    return tuple(sorted(arches, key=lambda a: int(a.rstrip("af"))))


@dataclass(frozen=True)
class BuildPaths:
    """Where one host keeps sources, builds and installs (defaults match :class:`generators.plan.layout.Layout`)."""

    source_dir: str
    prefix_root: str = "/opt/llamafleet/llama.cpp"
    cache_root: str = "/var/cache/llamafleet"
    ccache_dir: str | None = None  # default: <cache_root>/ccache (one per host, shared by its backends)


@dataclass(frozen=True)
class BuildTarget:
    """One llama.cpp build of one backend for one host."""

    host: str
    backend: str
    build: int
    native: bool = True
    targets: tuple[str, ...] = ("llama-server",)
    cuda_arch: tuple[str, ...] = ()  # CMAKE_CUDA_ARCHITECTURES entries: "75", "86", "89", "120a"
    gfx_targets: tuple[str, ...] = ()  # GPU_TARGETS for HIP: "gfx1151"
    toolchain: ToolchainPlan | None = None  # CUDA only: the plan generators.plan.toolchain chose for this host
    env: tuple[tuple[str, str], ...] = ()  # exported before the build (the distro's CUDA_HOME, ROCM_PATH)
    path: tuple[str, ...] = ()  # prepended to PATH (the toolkit's bin: nvcc, hipconfig are not on it by default)
    toolkit: Toolkit | None = None  # CUDA, HIP: where the toolkit is (its root, a split layout's headers)

    @property
    def cuda_root(self) -> str | None:
        """CUDAToolkit_ROOT for CMake: the CUDA toolkit's root when it is known."""
        return self.toolkit.root if self.backend == "cuda" and self.toolkit is not None else None

    @property
    def split_headers(self) -> str | None:
        """The package whose CUDA headers share /usr/include with the system's (Debian's layout), else None."""
        return self.toolkit.headers_package if self.backend == "cuda" and self.toolkit is not None else None

    @property
    def version(self) -> str:
        return f"b{self.build}-{self.backend}"


@dataclass(frozen=True)
class TargetPaths:
    """The paths of one target on its host."""

    source_dir: str
    prefix: str
    build_dir: str
    ccache_dir: str
    cache_root: str


def paths_for(target: BuildTarget, paths: BuildPaths) -> TargetPaths:
    return TargetPaths(
        source_dir=paths.source_dir,
        prefix=f"{paths.prefix_root}/{target.version}",
        build_dir=f"{paths.cache_root}/build/{target.version}",
        ccache_dir=paths.ccache_dir or f"{paths.cache_root}/ccache",
        cache_root=paths.cache_root,
    )


def problems(target: BuildTarget) -> list[Problem]:
    """Everything wrong with one target, all at once."""
    found: list[Problem] = []
    if target.backend not in BACKENDS:
        found.append(Problem("llamacpp.backend", f"must be one of {', '.join(BACKENDS)} (got {target.backend!r})"))
    if target.build < 1000:
        found.append(Problem("llamacpp.build", f"must be a llama.cpp build number >= 1000 (got {target.build})"))
    unknown = [t for t in target.targets if t not in TARGETS]
    if unknown:
        found.append(Problem("llamacpp.targets", f"unknown targets {', '.join(unknown)} (known: {', '.join(TARGETS)})"))
    if "llama-server" not in target.targets:
        found.append(Problem("llamacpp.targets", "must include llama-server"))
    bad_arch = [a for a in target.cuda_arch if not _CUDA_ARCH.fullmatch(a)]
    if bad_arch:
        found.append(Problem("gpu.cuda_arch", f"not CUDA architectures: {', '.join(bad_arch)} (e.g. 75, 89, 120a)"))
    bad_gfx = [g for g in target.gfx_targets if not _GFX.fullmatch(g)]
    if bad_gfx:
        found.append(Problem("gpu.gfx_target", f"not AMD GPU targets: {', '.join(bad_gfx)} (e.g. gfx1151)"))
    if target.backend == "cuda":
        if not target.cuda_arch:
            found.append(Problem("gpu.cuda_arch", "the cuda backend needs the GPU's architecture (e.g. 89)"))
        if target.toolchain is None:
            found.append(Problem("llamacpp.backend", "the cuda backend needs a toolchain plan (generators.plan.toolchain)"))
        elif target.toolchain.builds and target.toolchain.nvcc and not bad_arch:
            for message in arch_problems(Version(target.toolchain.nvcc), target.cuda_arch):
                found.append(Problem("gpu.cuda_arch", message))
    elif target.cuda_arch or target.toolchain is not None:
        found.append(
            Problem("gpu.cuda_arch", f"only the cuda backend takes a CUDA architecture (got {target.backend})")
        )
    bad_env = [k for k, _ in target.env if not _ENV_NAME.fullmatch(k)]
    if bad_env:
        found.append(Problem("llamacpp.build_env", f"not environment variable names: {', '.join(bad_env)}"))
    bad_path = [d for d in target.path if not d.startswith("/") or ":" in d]
    if bad_path:
        found.append(Problem("llamacpp.build_env", f"PATH entries must be absolute, without ':' ({', '.join(bad_path)})"))
    if target.backend == "hip" and not target.gfx_targets:
        found.append(Problem("gpu.gfx_target", "the hip backend needs the GPU target (e.g. gfx1151)"))
    elif target.backend != "hip" and target.gfx_targets:
        found.append(Problem("gpu.gfx_target", f"only the hip backend takes a GPU target (got {target.backend})"))
    return found


def validate(target: BuildTarget) -> None:
    found = problems(target)
    if found:
        raise SpecError(target.host, found)


def private_toolkit(target: BuildTarget) -> bool:
    """Whether the build uses a private toolkit root (a header patch on NVIDIA's layout: everything under one root,
    so the root is copied as symlinks with patched headers); a split layout's patch only adds an include dir."""
    plan = target.toolchain
    return plan is not None and bool(plan.patch_functions) and target.split_headers is None


def cmake_flags(target: BuildTarget) -> list[str]:
    """The configure flags of one target (toolchain flags that depend on build-time values live in the script)."""
    flags = [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=OFF",
        f"-DGGML_NATIVE={'ON' if target.native else 'OFF'}",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "-DCMAKE_C_COMPILER_LAUNCHER=ccache",
        "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache",
    ]
    if target.backend == "cuda":
        flags += [
            "-DGGML_CUDA=ON",
            f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(target.cuda_arch)}",
            "-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache",
        ]
        # ggml-cuda runs find_package(CUDAToolkit) before enable_language(CUDA), so FindCUDAToolkit looks for the
        # toolkit before CUDACXX counts: CUDAToolkit_ROOT, then $CUDA_PATH, then the first nvcc on PATH (a
        # /usr/local/bin/nvcc shadows Debian's /usr/bin/nvcc), then /usr/local/cuda. The root makes it take the
        # toolkit CUDACXX names: /usr for Debian's and Ubuntu's package (nvcc in /usr/bin, headers in
        # /usr/include, libraries in /usr/lib/<triplet>, which find_library searches under /usr), /usr/local/cuda
        # for NVIDIA's. A patch plan on NVIDIA's layout gives its private root instead (build-cuda.sh.j2).
        if target.cuda_root is not None and not private_toolkit(target):
            flags.append(f"-DCUDAToolkit_ROOT={target.cuda_root}")
    elif target.backend == "vulkan":
        flags.append("-DGGML_VULKAN=ON")
    elif target.backend == "hip":
        flags += [
            "-DGGML_HIP=ON",
            f"-DGPU_TARGETS={';'.join(target.gfx_targets)}",
            "-DCMAKE_HIP_COMPILER_LAUNCHER=ccache",
        ]
    return flags


@dataclass(frozen=True)
class BundleSettings:
    """For CUDA hosts whose plan is the bundle: where the llamacpp role installs the extractor on the host."""

    bundle_py: str | None = None  # default: <cache_root>/bin/llamafleet-bundle.py
    image_repo: str = "ghcr.io/ggml-org/llama.cpp"


def bundle_helper(paths: BuildPaths, bundle: BundleSettings | None = None) -> str:
    """The extractor's path on the host."""
    return (bundle or BundleSettings()).bundle_py or f"{paths.cache_root}/bin/llamafleet-bundle.py"


def uses_bundle(target: BuildTarget) -> bool:
    """Whether the target's CUDA build is extracted from the official image instead of compiled."""
    return target.backend == "cuda" and target.toolchain is not None and not target.toolchain.builds


def script_name(target: BuildTarget) -> str:
    """One script per backend, so several backends on one host never overwrite each other's."""
    return f"build-llamacpp-{target.backend}.sh"


def duplicate_backend_problems(targets: list[BuildTarget]) -> list[Problem]:
    backends = [t.backend for t in targets]
    dupes = sorted({b for b in backends if backends.count(b) > 1})
    if dupes:
        return [Problem("llamacpp.backends", f"each backend once per host (twice: {', '.join(dupes)})")]
    return []


# What ggml names each backend's devices (ggml/include/ggml-cuda.h GGML_CUDA_NAME: "CUDA", or "ROCm" for HIP
# builds; ggml-vulkan.h GGML_VK_NAME: "Vulkan"), followed by the device index: CUDA0, Vulkan1, ROCm0.
DEVICE_PREFIX = {"cuda": "CUDA", "vulkan": "Vulkan", "hip": "ROCm"}


def expected_device(backend: str, index: int = 0) -> str | None:
    """The device name a backend's build must list (None for the CPU backend, which lists none)."""
    prefix = DEVICE_PREFIX.get(backend)
    return None if prefix is None else f"{prefix}{index}"
