"""Per-backend llama.cpp build scripts: a :class:`BuildTarget` in, a bash script out.

Backends (CPU, CUDA, Vulkan, ROCm/HIP) build side by side on one host (seed 003 builds Vulkan and ROCm): each
has its own build dir and its own versioned prefix ``b<build>-<backend>``; ccache is shared. CUDA takes the plan
:mod:`generators.toolchain` chose for the host (native, an older host GCC, private patched headers, or the
bundle extracted by :mod:`generators.bundle`). The scripts stage beside the prefix and move in only after their
own checks; switching ``current`` is the role's job, after :func:`check_device` (below) has seen the expected
device in the new build's ``llama-server --list-devices``: seed 004's first binary silently ran on the CPU.

The inputs are small frozen dataclasses of their own so the host schema can map onto them.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.version import Version

from generators.errors import Problem, SpecError
from generators.toolchain import ToolchainPlan, arch_problems

Backend = Literal["cpu", "cuda", "vulkan", "hip"]
BACKENDS: tuple[str, ...] = ("cpu", "cuda", "vulkan", "hip")
TARGETS: tuple[str, ...] = ("llama-server", "llama-bench", "llama-cli")

_CUDA_ARCH = re.compile(r"^[1-9][0-9]{1,2}[af]?$")  # 75, 86, 89, 120a
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_GFX = re.compile(r"^gfx[0-9]{3,4}[a-f0-9]?$")  # gfx1030, gfx1100, gfx1151, gfx90a

# Compute capability (nvidia-smi --query-gpu=compute_cap) -> CMAKE_CUDA_ARCHITECTURES entry. Blackwell consumer
# parts build as 120a/121a (architecture-specific features, as llama.cpp's own CMake list does).
_ARCH_SUFFIX = {"120": "120a", "121": "121a"}

# GPUs the seeds run, by name -> compute capability (from NVIDIA's CUDA GPU list).
GPU_CATALOG: dict[str, str] = {
    "NVIDIA T1200 Laptop GPU": "7.5",  # seed 000
    "NVIDIA GeForce RTX 3070": "8.6",  # seed 002
    "NVIDIA GeForce RTX 4090": "8.9",  # seed 001
    "NVIDIA GeForce RTX 4060 Laptop GPU": "8.9",  # seed 004
    "NVIDIA GeForce RTX 5090": "12.0",  # seed 001's next card
}


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
    """Where one host keeps sources, builds and installs (defaults match :class:`generators.layout.Layout`)."""

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
    toolchain: ToolchainPlan | None = None  # CUDA only: the plan generators.toolchain chose for this host
    env: tuple[tuple[str, str], ...] = ()  # exported before the build (the distro's CUDA_HOME, ROCM_PATH)
    path: tuple[str, ...] = ()  # prepended to PATH (the toolkit's bin: nvcc, hipconfig are not on it by default)

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
    bad_arch = [a for a in target.cuda_arch if not _CUDA_ARCH.match(a)]
    if bad_arch:
        found.append(Problem("gpu.cuda_arch", f"not CUDA architectures: {', '.join(bad_arch)} (e.g. 75, 89, 120a)"))
    bad_gfx = [g for g in target.gfx_targets if not _GFX.match(g)]
    if bad_gfx:
        found.append(Problem("gpu.gfx_target", f"not AMD GPU targets: {', '.join(bad_gfx)} (e.g. gfx1151)"))
    if target.backend == "cuda":
        if not target.cuda_arch:
            found.append(Problem("gpu.cuda_arch", "the cuda backend needs the GPU's architecture (e.g. 89)"))
        if target.toolchain is None:
            found.append(Problem("llamacpp.backend", "the cuda backend needs a toolchain plan (generators.toolchain)"))
        elif target.toolchain.builds and target.toolchain.nvcc and not bad_arch:
            for message in arch_problems(Version(target.toolchain.nvcc), target.cuda_arch):
                found.append(Problem("gpu.cuda_arch", message))
    elif target.cuda_arch or target.toolchain is not None:
        found.append(
            Problem("gpu.cuda_arch", f"only the cuda backend takes a CUDA architecture (got {target.backend})")
        )
    bad_env = [k for k, _ in target.env if not _ENV_NAME.match(k)]
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
    """For CUDA hosts whose plan is the bundle: where the role installs generators/bundle.py on the host."""

    bundle_py: str | None = None  # default: <cache_root>/bin/llamafleet-bundle.py
    image_repo: str = "ghcr.io/ggml-org/llama.cpp"


def template_name(target: BuildTarget) -> str:
    if target.backend == "cuda" and target.toolchain is not None and not target.toolchain.builds:
        return "build-cuda-bundle.sh.j2"
    return f"build-{target.backend}.sh.j2"


def render_build(target: BuildTarget, paths: BuildPaths, bundle: BundleSettings | None = None) -> str:
    """The build (or bundle-extraction) script of one target; raises SpecError before rendering bad input."""
    from generators.render import environment  # late: render imports this module

    validate(target)
    bundle = bundle or BundleSettings()
    return (
        environment()
        .get_template(template_name(target))
        .render(
            t=target,
            p=paths_for(target, paths),
            plan=target.toolchain,
            cmake_flags=cmake_flags(target),
            bundle=bundle,
            bundle_py=bundle.bundle_py or f"{paths.cache_root}/bin/llamafleet-bundle.py",
        )
    )


def script_name(target: BuildTarget) -> str:
    """One script per backend, so several backends on one host never overwrite each other's."""
    return f"build-llamacpp-{target.backend}.sh"


def render_builds(targets: list[BuildTarget], paths: BuildPaths) -> dict[str, str]:
    """Scripts for every backend of one host, keyed by file name; all problems of all targets at once."""
    found = [p for t in targets for p in problems(t)]
    backends = [t.backend for t in targets]
    dupes = sorted({b for b in backends if backends.count(b) > 1})
    if dupes:
        found.append(Problem("llamacpp.backends", f"each backend once per host (twice: {', '.join(dupes)})"))
    if found:
        raise SpecError(targets[0].host if targets else "?", found)
    return {script_name(t): render_build(t, paths) for t in targets}


# ---- the guard against silent CPU fallback -----------------------------------------------------------------

# What ggml names each backend's devices (ggml/include/ggml-cuda.h GGML_CUDA_NAME: "CUDA", or "ROCm" for HIP
# builds; ggml-vulkan.h GGML_VK_NAME: "Vulkan"), followed by the device index: CUDA0, Vulkan1, ROCm0.
DEVICE_PREFIX = {"cuda": "CUDA", "vulkan": "Vulkan", "hip": "ROCm"}
_HEADER = "Available devices:"
# common/arg.cpp common_print_available_devices(): "  %s: %s (%zu MiB, %zu MiB free)"
_DEVICE_LINE = re.compile(
    r"^ {2}(?P<name>[A-Za-z][A-Za-z0-9_]*[0-9]+): (?P<desc>.*) \((?P<total>[0-9]+) MiB, "
    r"(?P<free>[0-9]+) MiB free\)$"
)


@dataclass(frozen=True)
class Device:
    """One non-CPU device as ``llama-server --list-devices`` prints it."""

    name: str
    description: str
    total_mib: int
    free_mib: int


@dataclass(frozen=True)
class DeviceCheck:
    ok: bool
    message: str
    devices: tuple[Device, ...]


def expected_device(backend: str, index: int = 0) -> str | None:
    """The device name a backend's build must list (None for the CPU backend, which lists none)."""
    prefix = DEVICE_PREFIX.get(backend)
    return None if prefix is None else f"{prefix}{index}"


def parse_device_list(output: str) -> tuple[Device, ...]:
    """The devices in ``llama-server --list-devices`` output (stdout, or stdout and stderr together)."""
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == _HEADER)
    except StopIteration:
        raise ValueError(f"not a device listing: no {_HEADER!r} line") from None
    devices = []
    for line in lines[start + 1 :]:
        if line.strip() == "(none)":
            break
        match = _DEVICE_LINE.match(line)
        if match is None:
            if line.startswith("  "):
                continue  # log lines interleaved from stderr
            break
        devices.append(Device(match["name"], match["desc"], int(match["total"]), int(match["free"])))
    return tuple(devices)


def check_device(host: str, output: str, expected: str | None, binary: str = "llama-server") -> DeviceCheck:
    """Whether the new build sees the device the host's servers are configured for; a message either way."""
    try:
        devices = parse_device_list(output)
    except ValueError as err:
        return DeviceCheck(False, f"host {host}: {binary} --list-devices: {err}", ())
    found = ", ".join(f"{d.name} ({d.description})" for d in devices) or "none"
    if expected is None:
        return DeviceCheck(True, f"host {host}: CPU build; devices listed: {found}", devices)
    if any(d.name == expected for d in devices):
        device = next(d for d in devices if d.name == expected)
        return DeviceCheck(True, f"host {host}: {expected} is {device.description} ({device.total_mib} MiB)", devices)
    backend = expected.rstrip("0123456789")
    hint = (
        "the build has no GPU backend compiled in, or its runtime/driver did not load"
        if not any(d.name.startswith(backend) for d in devices)
        else "the device index is wrong for this host"
    )
    return DeviceCheck(
        False,
        f"host {host}: {binary} --list-devices does not list {expected} (listed: {found}): {hint}; "
        "it would silently run on the CPU, so the previous build keeps serving",
        devices,
    )


def _check_devices(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if str(args.listing) == "-" else args.listing.read_text(encoding="utf-8")
    result = check_device(args.host, text, None if args.expected == "none" else args.expected)
    print(result.message, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def _render(args: argparse.Namespace) -> int:
    import json

    from generators.toolchain import from_probe, resolve

    plan = None
    arches = tuple(args.cuda_arch)
    try:
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
            targets=tuple(args.target),
            cuda_arch=arches,
            gfx_targets=tuple(args.gfx_target),
            toolchain=plan,
        )
        text = render_build(target, BuildPaths(args.source_dir, args.prefix_root, args.cache_root))
    except SpecError as err:
        print(err, file=sys.stderr)
        return 2
    args.out.write_text(text, encoding="utf-8")
    args.out.chmod(0o755)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generators.backends", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="localhost", help="host name used in messages")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-devices", help="does `llama-server --list-devices` output list the expected device?")
    check.add_argument("--expected", required=True, help="CUDA0, Vulkan1, ROCm0, ...; 'none' for a CPU build")
    check.add_argument("listing", type=Path, help="file holding the output ('-': stdin)")
    check.set_defaults(func=_check_devices)
    render = sub.add_parser("render", help="render one backend's build script")
    render.add_argument("--backend", required=True, choices=BACKENDS)
    render.add_argument("--build", required=True, type=int)
    render.add_argument("--source-dir", required=True)
    render.add_argument("--prefix-root", default=BuildPaths.prefix_root)
    render.add_argument("--cache-root", default=BuildPaths.cache_root)
    render.add_argument("--target", action="append", default=[], help="repeat; default llama-server")
    render.add_argument("--no-native", dest="native", action="store_false")
    render.add_argument("--cuda-arch", action="append", default=[], help="repeat; default: the probe's GPUs")
    render.add_argument("--gfx-target", action="append", default=[])
    render.add_argument("--probe-json", type=Path, help="build-probe-toolchain.sh output (cuda)")
    render.add_argument("--out", type=Path, required=True)
    render.set_defaults(func=_render)
    args = parser.parse_args(argv)
    if getattr(args, "target", None) == []:
        args.target = ["llama-server"]
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
