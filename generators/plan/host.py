"""A host's plan: every decision about one host, made once from its description and its facts.

:func:`plan_host` runs every cross-field check first (:mod:`generators.plan.checks`) and raises
:class:`~generators.errors.SpecError` with all problems; then each part is decided: the layout, the builds and
their toolchain, each server, the SSE-repair proxy, Ollama's drop-in, the agent clients. Everything after (the
renders, the memory fit, the manifest) reads the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from generators.errors import SpecError
from generators.facts import CudaSource, Gpu, HostFacts
from generators.plan import backends
from generators.plan.backends import BuildPaths, BuildTarget
from generators.plan.builds import BuildPlan, build_paths, plan_builds
from generators.plan.checks import host_problems
from generators.plan.clients import ClientsPlan, plan_clients
from generators.plan.layout import OLLAMA_RENDER_PATH, Layout, chat_template_render_path
from generators.plan.ollama import OllamaModel, ollama_environment, ollama_models, package_groups
from generators.plan.proxy import (
    PACKAGE,
    RENDER_PATH,
    UNIT_NAME,
    ProxyUnit,
    fronted_server,
    health_url,
    host_proxy_unit,
)
from generators.plan.router import RouterPlan, plan_router
from generators.plan.servers import ServerPlan, plan_server
from generators.spec import Host, LlamaCpp, Ollama


@dataclass(frozen=True)
class DistroPlan:
    key: str
    family: str
    package_manager: str
    packages: tuple[str, ...]  # build + the host's backends' groups (ollama: the ollama group)
    sse_proxy_packages: tuple[str, ...]
    hub_packages: tuple[str, ...]
    cuda_home: str | None  # the CUDA build's toolkit root (None: no CUDA build, or CMake asks its nvcc)
    rocm_path: str
    cuda_toolkit: CudaSource | None = None  # the CUDA package build_deps installs (checked or its repository added)


@dataclass(frozen=True)
class LlamaCppPlan:
    spec: LlamaCpp
    layout: Layout
    paths: BuildPaths
    builds: tuple[BuildPlan, ...]  # the servers' backend first
    backends_available: tuple[str, ...]
    bundle_helper: str | None  # the bundle extractor on the host, when a build's toolchain plan is the bundle
    sdist: dict[str, str] | None  # the PyPI sdist the source comes from: package and file name

    @property
    def serving(self) -> BuildPlan:
        return self.builds[0]


@dataclass(frozen=True)
class ModelPlan:
    name: str
    path: str  # on the host
    source: dict[str, Any]


@dataclass(frozen=True)
class OllamaPlan:
    spec: Ollama
    dropin: str
    render_path: str
    environment: tuple[tuple[str, str], ...]  # the drop-in's Environment= pairs, in order
    models: tuple[OllamaModel, ...]  # each model as served: its context, and the derived model when it has its own


@dataclass(frozen=True)
class ProxyPlan:
    unit: ProxyUnit
    name: str  # the unit's name
    render_path: str
    server: str  # the server it fronts
    health_url: str
    package: str
    install_dir: str


@dataclass(frozen=True)
class HubPlan:
    token_file: str  # "" = no token
    endpoint: str  # "" = huggingface_hub's default


@dataclass(frozen=True)
class HostPlan:
    """Everything decided about one host."""

    name: str
    spec: Host
    facts: HostFacts
    layout: Layout
    distro: DistroPlan | None
    llamacpp: LlamaCppPlan | None
    servers: tuple[ServerPlan, ...]
    models: tuple[ModelPlan, ...]
    chat_templates: tuple[tuple[str, str], ...]  # (template name, render path) shipped to the host
    ollama: OllamaPlan | None
    clients: ClientsPlan | None
    proxy: ProxyPlan | None
    hub: HubPlan | None
    router: RouterPlan | None = None  # serve: router: the one router (servers holds its unit)

    @property
    def engine(self) -> str:
        return self.spec.engine

    @property
    def user(self) -> str:
        return self.spec.user

    @property
    def backend(self) -> str:
        return self.spec.backend

    @property
    def gpus(self) -> tuple[Gpu, ...]:
        return self.facts.gpus

    def server(self, name: str) -> ServerPlan:
        return next(s for s in self.servers if s.name == name)

    def build(self, backend: str) -> BuildPlan:
        assert self.llamacpp is not None
        return next(b for b in self.llamacpp.builds if b.backend == backend)


def _distro(host: Host, host_facts: HostFacts, targets: list[BuildTarget]) -> DistroPlan | None:
    """What build_deps installs: the build group, each built backend's group, and for CUDA and HIP what their
    toolkit plan says (generators/plan/toolkits.py: nothing where the host has the toolkit or gets the bundle)."""
    facts = host_facts.distro
    if facts is None:
        return None
    toolkits = {t.backend: t.toolkit for t in targets if t.toolkit is not None}
    wanted = ["build", *host.llamacpp.backends] if host.llamacpp is not None else package_groups(host_facts)
    packages: list[str] = []
    for group in wanted:
        found = toolkits[group].packages if group in toolkits else facts.group(group)
        packages += [p for p in found if p not in packages]
    cuda, hip = toolkits.get("cuda"), toolkits.get("hip")
    return DistroPlan(
        key=facts.key,
        family=facts.family,
        package_manager=facts.package_manager,
        packages=tuple(packages),
        sse_proxy_packages=facts.group("sse_proxy"),
        hub_packages=facts.group("hub"),
        cuda_home=None if cuda is None else cuda.root,
        rocm_path=hip.root if hip is not None and hip.root is not None else facts.rocm_path,
        cuda_toolkit=None if cuda is None else cuda.source,
    )


def _proxy(host: Host, layout: Layout, name: str) -> ProxyPlan | None:
    unit = host_proxy_unit(host, layout, name)
    fronted = fronted_server(host)
    if unit is None or fronted is None:
        return None
    return ProxyPlan(unit, UNIT_NAME, RENDER_PATH, fronted.name, health_url(unit), PACKAGE, unit.install_dir)


def plan_host(spec: Host, facts: HostFacts, name: str | None = None) -> HostPlan:
    """Every decision about one host; raises :class:`SpecError` listing every problem first."""
    name = name or facts.name
    problems, targets = host_problems(spec, facts)
    if problems:
        raise SpecError(name, problems)
    layout = Layout(spec)
    servers: tuple[ServerPlan, ...] = ()
    llamacpp = None
    router = None
    if spec.llamacpp is not None:
        if spec.serve == "router":
            unit, router = plan_router(spec, facts, layout)
            servers = (unit,)
        else:
            servers = tuple(plan_server(spec, facts, layout, i) for i in range(len(spec.servers)))
        builds = plan_builds(spec, targets, layout, servers[0].expected_device if servers else None)
        bundle = any(backends.uses_bundle(b.target) for b in builds)
        source = spec.llamacpp.source
        paths = build_paths(layout)
        llamacpp = LlamaCppPlan(
            spec=spec.llamacpp,
            layout=layout,
            paths=paths,
            builds=builds,
            backends_available=facts.available_backends,
            bundle_helper=backends.bundle_helper(paths) if bundle else None,
            sdist=None if source.pypi is None else {"package": source.pypi.package,
                                                    "filename": str(layout.sdist_filename)},
        )
    return HostPlan(
        name=name,
        spec=spec,
        facts=facts,
        layout=layout,
        distro=_distro(spec, facts, targets),
        llamacpp=llamacpp,
        servers=servers,
        models=tuple(
            ModelPlan(m.name, layout.model_path(m), m.model_dump(exclude_none=True, exclude={"name"}))
            for m in spec.models
        ),
        chat_templates=tuple(
            (t, chat_template_render_path(t))
            for t in sorted({m.chat_template for m in spec.models if m.chat_template is not None})
        ),
        ollama=None if spec.ollama is None else OllamaPlan(
            spec.ollama, layout.ollama_dropin, OLLAMA_RENDER_PATH, ollama_environment(spec.ollama),
            ollama_models(spec.ollama),
        ),
        clients=plan_clients(spec, servers, layout, name),
        proxy=_proxy(spec, layout, name),
        hub=None if spec.hub is None else HubPlan(spec.hub.token_file or "", spec.hub.endpoint),
        router=router,
    )
