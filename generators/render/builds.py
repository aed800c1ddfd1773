"""Build scripts: one backend's :class:`~generators.plan.backends.BuildTarget` in, a bash script out.

The scripts stage beside the prefix and move in only after their own checks; switching ``current`` is the role's
job. A CUDA target whose toolchain plan is the bundle gets the extraction script instead of a compile.
"""

from __future__ import annotations

from generators.errors import SpecError
from generators.plan.backends import (
    BuildPaths,
    BuildTarget,
    BundleSettings,
    bundle_helper,
    cmake_flags,
    duplicate_backend_problems,
    paths_for,
    problems,
    script_name,
    uses_bundle,
    validate,
)
from generators.render.templating import Templates, render

_BUILD_TEMPLATES = {
    "cpu": Templates.build_cpu,
    "cuda": Templates.build_cuda,
    "vulkan": Templates.build_vulkan,
    "hip": Templates.build_hip,
}


def template_for(target: BuildTarget) -> Templates:
    return Templates.build_cuda_bundle if uses_bundle(target) else _BUILD_TEMPLATES[target.backend]


def render_build(target: BuildTarget, paths: BuildPaths, bundle: BundleSettings | None = None) -> str:
    """The build (or bundle-extraction) script of one target; raises SpecError before rendering bad input."""
    validate(target)
    bundle = bundle or BundleSettings()
    return render(
        template_for(target),
        t=target,
        p=paths_for(target, paths),
        plan=target.toolchain,
        cmake_flags=cmake_flags(target),
        bundle=bundle,
        bundle_py=bundle_helper(paths, bundle),
    )


def render_builds(targets: list[BuildTarget], paths: BuildPaths) -> dict[str, str]:
    """Scripts for every backend of one host, keyed by file name; all problems of all targets at once."""
    found = [p for t in targets for p in problems(t)] + duplicate_backend_problems(targets)
    if found:
        raise SpecError(targets[0].host if targets else "?", found)
    return {script_name(t): render_build(t, paths) for t in targets}


def render_probe() -> str:
    """The host-side probe script (bash) that prints the versions :func:`generators.facts.toolchain.from_probe`
    reads."""
    return render(Templates.build_probe_toolchain)
