"""The host's llama.cpp builds: one :class:`~generators.plan.backends.BuildTarget` per backend, with its paths.

The servers' backend builds first and is the one the role switches ``current`` to; ``also_build`` backends
build beside it, each in its own prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

from generators.errors import Problem, SpecError
from generators.facts import HostFacts
from generators.plan import backends, toolkits
from generators.plan.backends import BuildPaths, BuildTarget, TargetPaths
from generators.plan.layout import Layout, build_render_path
from generators.plan.toolkits import CudaPlan, Toolkit
from generators.spec import Host

_BACKEND_SWITCHES = ("-DGGML_CUDA=", "-DGGML_VULKAN=", "-DGGML_HIP=", "-DCMAKE_CUDA_ARCHITECTURES=", "-DGPU_TARGETS=")


@dataclass(frozen=True)
class BuildPlan:
    """One backend's build on the host: the target, where it lands, and what the role needs to run it."""

    target: BuildTarget
    paths: TargetPaths
    serves: bool  # the servers' backend (the role switches current to it)
    render_path: str
    script: str  # the script's path on the host
    cmake_flags: tuple[str, ...]
    expected_device: str | None  # what this build's --list-devices must show before it may serve

    @property
    def backend(self) -> str:
        return self.target.backend

    @property
    def version(self) -> str:
        return self.target.version


def cuda_plan(facts: HostFacts, repo: str = "distro", arches: tuple[str, ...] = ()) -> CudaPlan:
    """How the host gets CUDA and from which toolkit (:func:`generators.plan.toolkits.plan_cuda`)."""
    return toolkits.plan_cuda(facts, repo, arches)


def build_env(toolkit: Toolkit | None) -> tuple[tuple[str, str], ...]:
    """The toolkit's paths for the build: CUDA's root and nvcc (CUDA_HOME, CUDACXX), ROCm's root (ROCM_PATH)."""
    if toolkit is None:
        return ()
    if toolkit.backend == "cuda":
        env = [] if toolkit.root is None else [("CUDA_HOME", toolkit.root)]
        return tuple(env + ([] if toolkit.compiler is None else [("CUDACXX", toolkit.compiler)]))
    return () if toolkit.root is None else (("ROCM_PATH", toolkit.root),)


def build_path(toolkit: Toolkit | None) -> tuple[str, ...]:
    """Toolkit bin directories put first on PATH (nvcc, hipconfig are not on a root shell's PATH); /usr/bin is."""
    if toolkit is None:
        return ()
    if toolkit.root is not None:
        bin_dir = f"{toolkit.root}/bin"
    elif toolkit.compiler is not None:
        bin_dir = toolkit.compiler.rsplit("/", 1)[0]
    else:
        return ()
    return () if bin_dir in ("/usr/bin", "/bin") else (bin_dir,)


def build_target(host: Host, facts: HostFacts, backend: str) -> BuildTarget:
    """One backend's build of this host's llama.cpp (raises SpecError when no CUDA plan or ROCm fits; fields
    relative to ``llamafleet``)."""
    cpp = host.llamacpp
    assert cpp is not None
    gpus = facts.backend_gpus(backend)
    arches = {backends.cuda_arch(g.cuda_cc) for g in gpus if g.cuda_cc} if backend == "cuda" else set()
    cuda_arch = tuple(sorted(arches, key=lambda a: int(a.rstrip("af"))))
    gfx = tuple(sorted({g.gfx for g in gpus if g.gfx})) if backend == "hip" else ()
    field = "llamacpp.backend" if backend == cpp.backend else "llamacpp.also_build"
    plan, toolkit = None, None
    if backend == "cuda":
        cuda = cuda_plan(facts, cpp.cuda_repo, cuda_arch)
        plan, toolkit = cuda.toolchain, cuda.toolkit
    elif backend == "hip":
        toolkit = toolkits.plan_hip(facts, field, gfx)
    return BuildTarget(
        host=facts.name,
        backend=backend,
        build=cpp.build,
        native=cpp.native,
        targets=tuple(cpp.targets),
        cuda_arch=cuda_arch,
        gfx_targets=gfx,
        toolchain=plan,
        env=build_env(toolkit),
        path=build_path(toolkit),
        toolkit=toolkit,
    )


def build_targets(host: Host, facts: HostFacts) -> tuple[list[BuildTarget], list[Problem]]:
    """Every backend's target, the servers' first, and what keeps any of them from rendering (fields relative to
    the ``llamafleet`` key)."""
    assert host.llamacpp is not None
    targets: list[BuildTarget] = []
    found: list[Problem] = []
    for backend in host.llamacpp.backends:
        try:
            target = build_target(host, facts, backend)
        except SpecError as err:
            found += [p for p in err.problems if p not in found]
            continue
        targets.append(target)
        found += [p for p in backends.problems(target) if p not in found]
    return targets, found


def build_paths(layout: Layout) -> BuildPaths:
    return BuildPaths(
        source_dir=layout.source_dir,
        prefix_root=layout.prefix_root,
        cache_root=layout.cache_root,
        ccache_dir=layout.ccache_dir,
    )


def plan_builds(
    host: Host, targets: list[BuildTarget], layout: Layout, serving_device: str | None
) -> tuple[BuildPlan, ...]:
    """The builds' plans; the serving build must list the first server's device, the others their device 0."""
    paths = build_paths(layout)
    out = []
    for target in targets:
        serves = target.backend == host.backend
        out.append(BuildPlan(
            target=target,
            paths=backends.paths_for(target, paths),
            serves=serves,
            render_path=build_render_path(target.backend, host.backend),
            script=layout.build_script(target.version),
            cmake_flags=tuple(backends.cmake_flags(target)),
            expected_device=serving_device if serves else backends.expected_device(target.backend),
        ))
    return tuple(out)


def backend_switches(cmake_flags: tuple[str, ...] | list[str]) -> list[str]:
    """A build's own backend switches (its GGML_* switch and device list) among its CMake flags."""
    return [f for f in cmake_flags if f.startswith(_BACKEND_SWITCHES)]
