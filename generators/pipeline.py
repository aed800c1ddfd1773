"""One host from its variables to its files: hostvars -> spec -> facts -> plan -> files + manifest.

The CLI (``python -m generators render``) and the preflight action plugin both call :func:`render_hostvars`, so
they can never disagree. Nothing here touches the disk or the host except the memory fit, which reads a model's
GGUF header when the controller has the file at the model's path. Free disk space (builds, models to download) is
checked from the probe when the host is planned (:mod:`generators.plan.disk`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from generators.errors import Problem, SpecError
from generators.facts import HostFacts, facts_from_spec
from generators.facts.probe import ProbedFacts, parse_probe
from generators.manifest import Manifest, build_manifest, manifest_file
from generators.plan import HostPlan, plan_host
from generators.plan.disk import disk_problems
from generators.plan.fit.check import check_host_fits
from generators.plan.fit.router import size_router
from generators.render import RenderedFile, render_host
from generators.render.templating import Unrenderable
from generators.spec import ROOT_KEY, Host, parse_host
from generators.tuned import Tuned, apply_tuned, blame


@dataclass(frozen=True)
class Rendered:
    """Everything one host's render produced."""

    spec: Host
    facts: HostFacts
    plan: HostPlan
    files: tuple[RenderedFile, ...]  # the manifest last
    manifest: Manifest
    warnings: tuple[str, ...]  # servers whose memory fit could not be checked


def probed(name: str, probe: ProbedFacts | dict[str, Any] | None) -> ProbedFacts | None:
    """The host probe's facts: already parsed, or the module's raw output (parsed here, problems raised)."""
    if probe is None or isinstance(probe, ProbedFacts):
        return probe
    return parse_probe(name, probe)


def plan_hostvars(name: str, hostvars: dict[str, Any], probe: ProbedFacts | dict[str, Any] | None = None,
                  tuned: Tuned | None = None) -> HostPlan:
    """Validate and plan one host (raises :class:`~generators.errors.SpecError` with every problem); ``probe`` is
    what the host_facts probe read (its raw output or parsed), merged with the description; ``tuned``: the host's
    tuned override (``generators/tuned.py``), applied to the description first."""
    hostvars = apply_tuned(name, hostvars, tuned)
    try:
        spec = parse_host(name, hostvars)
    except SpecError as exc:
        raise blame(tuned, hostvars, exc) from None
    facts = probed(name, probe)
    plan = size_router(plan_host(spec, facts_from_spec(spec, name, facts), name))  # a router's --models-max
    problems = disk_problems(plan, facts)
    if problems:
        raise SpecError(name, problems)
    return plan


def check_declared(name: str, hostvars: dict[str, Any], tuned: Tuned | None = None) -> tuple[str, ...] | None:
    """Everything the description alone can show, before any host is contacted (raises SpecError).

    A host that declares its GPUs (or builds only for the CPU, or runs Ollama) is planned, fit-checked and rendered
    in full: its warnings are returned. One that leaves its GPUs to the host probe is only parsed and validated
    here: None, its plan waits for the probe (read-only), which still comes before any change.
    """
    tuned_vars = apply_tuned(name, hostvars, tuned)  # a tuned file that names no server of the host fails here
    try:
        spec = parse_host(name, tuned_vars)
    except SpecError as exc:
        raise blame(tuned, tuned_vars, exc) from None
    cpu_only = spec.llamacpp is None or all(b == "cpu" for b in spec.llamacpp.backends)
    if not (spec.gpus or cpu_only or spec.engine != "llamacpp"):
        return None
    return render_hostvars(name, hostvars, tuned=tuned).warnings


def render_plan(plan: HostPlan) -> tuple[tuple[RenderedFile, ...], Manifest]:
    """The host's files and its manifest (``manifest.json`` last). A value that no escaping can carry (the spec
    refuses them all first: this is the second line) is one error line, never a file."""
    plan = size_router(plan)  # a plan made without the pipeline (plan_host) still gets its router sized
    try:
        files = render_host(plan)
    except Unrenderable as exc:
        raise SpecError(plan.facts.name, [Problem(ROOT_KEY, str(exc))]) from None
    manifest = build_manifest(plan, files)
    return (*files, manifest_file(manifest)), manifest


def render_hostvars(
    name: str, hostvars: dict[str, Any], check_fit: bool = True, probe: ProbedFacts | dict[str, Any] | None = None,
    tuned: Tuned | None = None,
) -> Rendered:
    """Validate, plan, check each server's memory fit (``check_fit``) and render one host; nothing is returned
    unless everything is valid. ``probe``: the host_facts probe's output, when the host was asked; ``tuned``: the
    host's tuned override (a tuned flag the memory planner refuses fails here, naming the tuned file)."""
    plan = plan_hostvars(name, hostvars, probe, tuned)
    try:
        warnings = check_host_fits(plan) if check_fit else []  # a launch that cannot fit fails here (SpecError)
    except SpecError as exc:
        raise blame(tuned, apply_tuned(name, hostvars, tuned), exc) from None
    warnings += list(plan.router.warnings) if plan.router is not None else []
    files, manifest = render_plan(plan)
    return Rendered(plan.spec, plan.facts, plan, files, manifest, tuple(warnings))


def with_build(spec: dict[str, Any], build: object) -> dict[str, Any]:
    """The description with another llama.cpp build (an upgrade); a git ref naming the old build follows. A
    description of the wrong shape is returned as it is, for validation to report."""
    if not isinstance(spec, dict) or not isinstance(spec.get("llamacpp") or {}, dict):
        return spec
    cpp = dict(spec.get("llamacpp") or {})
    old = cpp.get("build")
    new = int(build) if str(build).isdigit() else build  # a non-number is reported by validation
    source = cpp.get("source") or {}
    if not isinstance(source, dict):
        return spec
    source = dict(source)
    git = source.get("git")
    if isinstance(git, dict) and old is not None and git.get("ref") == f"b{old}":
        source["git"] = {**git, "ref": f"b{new}"}
    return {**spec, "llamacpp": {**cpp, "build": new, "source": source}}


def hostvars_of(spec: Any, build: object = None) -> dict[str, Any]:
    """The host variables the render reads, from a task's ``spec`` (and an upgrade's ``build``)."""
    hostvars: dict[str, Any] = {} if spec is None else {ROOT_KEY: spec}
    if build not in (None, "") and isinstance(hostvars.get(ROOT_KEY), dict):
        hostvars[ROOT_KEY] = with_build(hostvars[ROOT_KEY], build)
    return hostvars
