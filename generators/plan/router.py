"""``serve: router``: one llama-server in router mode serves every model of the host's servers.

llama-server started without a model is a router (tools/server/README.md, "Using multiple models"): it reads a
``--models-preset`` INI (a ``[*]`` section every model inherits, then one section per model whose name is the id
clients send as ``"model"``), starts one child llama-server per loaded model, loads a model when a request names it
(``--models-autoload``) and evicts the least recently used one beyond ``--models-max``.

What the router serves, in order: every server of the host, each of its presets as a model of its own (seed 003's
four presets become four models), or the server itself when it has none (seed 002's FIM + chat pair becomes two).
Each model's INI keys come from the same flag planning as a unit's command line (:func:`plan_server`, spelled for
the build by ``data/flag_renames.yaml``), less what the router owns for each child (``--host``, ``--port``,
``--alias``, ``--api-key-file``); keys every model shares with the same value go to ``[*]``. A server's chosen
preset (or a server without presets) loads at start (``load-on-startup``), up to ``--models-max``.

The router listens where the host's first chat server does (its name, address, key and GPU); ``--models-max`` is
the memory planner's (:mod:`generators.plan.fit.router`, run by the pipeline): the largest number of models that
fit together, whichever they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from generators import data
from generators.errors import Problem
from generators.facts import HostFacts
from generators.plan.flags import load_mode_flags
from generators.plan.layout import Layout, preset_render_path
from generators.plan.proxy import fronted_server
from generators.plan.servers import ServedModel, ServerPlan, plan_server, served_model
from generators.spec import Host, Server, checks
from generators.spec.types import ROOT_KEY

#: a preset section's name: the id clients send. No ':' (llama.cpp rewrites a ``name:tag`` section's tag), no ']'.
MODEL_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: what the router sets or strips for each child itself (server-models.cpp: unset_reserved_args, update_args)
ROUTER_OWNED = ("--host", "--port", "--alias", "--api-key-file")
#: keys that stay in each model's own section even when every model has the same value
OWN_KEYS = ("model", "mmproj")
#: the preset-only key that loads a model when the router starts (common/arg.cpp, b9093 .. b11434)
LOAD_ON_STARTUP = "load-on-startup"
#: a server field that only the router's server may set (every model is served at its address, key and GPU)
ADDRESS_FIELDS = ("host", "port", "api_key_file", "device")


def router_since() -> int:
    """The first llama.cpp build with router mode as llamafleet writes it (data/flag_renames.yaml ``features``)."""
    return int(data.flag_renames()["features"]["router"]["since"])


@dataclass(frozen=True)
class Variant:
    """One model of the router before planning: a server with one of its presets (or none) applied."""

    index: int  # servers[index]
    preset: str | None
    server: Server
    field: str  # where its id comes from, for error lines
    load_on_start: bool  # the server's chosen preset, or a server without presets


@dataclass(frozen=True)
class RouterModel:
    id: str  # the INI section's name: what clients send as "model"
    plan: ServerPlan  # this model as if it ran alone (its flags, GPU, memory request)
    preset: str | None
    load_on_start: bool
    options: tuple[tuple[str, str], ...]  # its own section's keys (not in [*])


@dataclass(frozen=True)
class RouterPlan:
    server: str  # the router's server name (the host's first chat server)
    models: tuple[RouterModel, ...]
    shared: tuple[tuple[str, str], ...]  # the [*] section
    preset_file: str  # --models-preset on the host
    render_path: str
    models_max: int  # --models-max
    pinned: int | None  # router.models_max as written (None: the memory planner's)
    sized: bool  # whether the memory planner has decided models_max (pipeline: plan.fit.router)
    autoload: bool
    warnings: tuple[str, ...] = ()  # why the memory planner could not size it (facts unknown offline)

    @property
    def startup(self) -> tuple[str, ...]:
        """The models loaded when the router starts: the chosen ones, at most models_max of them."""
        return tuple(m.id for m in self.models if m.load_on_start)[: self.models_max]


def router_index(host: Host) -> int:
    """servers[i] of the router: the host's first chat server (the first server when none is chat)."""
    return next((i for i, s in enumerate(host.active_servers) if s.role == "chat"), 0)


def variants(host: Host) -> list[Variant]:
    """Every model the router serves, in server order, each server's presets in their written order."""
    out: list[Variant] = []
    for i, declared in enumerate(host.servers):
        where = f"{ROOT_KEY}.servers[{i}]"
        if not declared.presets:
            out.append(Variant(i, None, declared, f"{where}.alias", True))
            continue
        for name in declared.presets:
            server = declared.model_copy(update={"preset": name}).effective()
            out.append(Variant(i, name, server, f"{where}.presets.{name}.alias", name == declared.preset))
    return out


def model_id(host: Host, server: Server) -> str:
    """The id clients send: the alias, else the inventory's model name (a router has no file-name ids)."""
    assert server.model is not None
    return server.alias if server.alias is not None else server.model


def router_problems(host: Host, facts: HostFacts) -> list[Problem]:
    """Everything wrong with ``serve: router`` (and ``router:``) on this host, one line each."""
    where = f"{ROOT_KEY}.serve"
    if host.serve != "router":
        return [Problem(f"{ROOT_KEY}.router", "only with serve: router")] if host.router is not None else []
    if host.engine != "llamacpp" or host.llamacpp is None or not host.servers:
        return [Problem(where, "router mode is llama-server's: it needs engine llamacpp, llamacpp and servers")]
    problems: list[Problem] = []
    since = router_since()
    if host.llamacpp.build < since:
        flags = ", ".join(data.flag_renames()["features"]["router"]["flags"])
        problems.append(Problem(where, f"router mode ({flags} with a [*] section and load-on-startup) needs "
                                       f"llama.cpp b{since} or newer; this host runs b{host.llamacpp.build}"))
    r = router_index(host)
    router = host.active_servers[r]
    for i, declared in enumerate(host.servers):
        if i == r:
            continue
        for key in ADDRESS_FIELDS:
            if key in declared.model_fields_set and getattr(declared, key) != getattr(router, key):
                problems.append(Problem(f"{ROOT_KEY}.servers[{i}].{key}",
                                        f"serve: router serves every model at servers[{r}] ({router.name})'s "
                                        f"{key} ({getattr(router, key)}): drop {key} here"))
    names = [m.name for m in host.models]
    found = variants(host)
    seen: dict[str, str] = {}
    env: dict[str, tuple[str, str]] = {}
    for v in found:
        if v.preset is not None and not v.load_on_start:  # the chosen ones are checked as servers already
            problems += [Problem(p.field.replace(f"servers[{v.index}]", f"servers[{v.index}].presets.{v.preset}"),
                                 p.message) for p in checks.server_reference_problems(v.index, v.server, names)]
            if v.server.load_mode not in (None, "auto"):
                try:
                    load_mode_flags(v.server.load_mode, host.llamacpp.build)
                except ValueError as exc:
                    problems.append(Problem(f"{ROOT_KEY}.servers[{v.index}].presets.{v.preset}.load_mode", str(exc)))
        if v.server.model is None:
            continue
        mid = model_id(host, v.server)
        if not MODEL_ID_RE.fullmatch(mid):
            problems.append(Problem(v.field, f"{mid!r} names a router model: letters, digits and . _ - only (no ':')"))
        elif mid in seen:
            problems.append(Problem(v.field, f"router model {mid!r} is also {seen[mid]}'s: give each an alias"))
        seen.setdefault(mid, v.field)
        for key, value in v.server.env.items():
            if key in env and env[key][0] != value:
                problems.append(Problem(f"{ROOT_KEY}.servers[{v.index}].env",
                                        f"{key}={value} differs from {env[key][1]}'s {key}={env[key][0]}: the router's "
                                        "models share one environment"))
            env.setdefault(key, (value, v.field.rsplit(".", 1)[0]))
    fronted = fronted_server(host)
    if fronted is not None and fronted.name != router.name:
        problems.append(Problem(f"{ROOT_KEY}.sse_proxy.server", f"serve: router: the proxy fronts the router, "
                                                                f"server {router.name!r}: name it here"))
    pinned = host.router.models_max if host.router is not None else None
    if pinned is not None and pinned > len(found):
        problems.append(Problem(f"{ROOT_KEY}.router.models_max",
                                f"{pinned} is more than the {len(found)} models the router serves"))
    return problems


def ini_options(argv: tuple[str, ...]) -> list[tuple[str, str]]:
    """A model's command line as preset keys: ``--ctx-size 4096`` -> ``ctx-size = 4096``, a bare ``--jinja`` ->
    ``jinja = true``, the router's own (``ROUTER_OWNED``) left out. Every option the plan writes is ``--long``."""
    out: list[tuple[str, str]] = []
    i = 1
    while i < len(argv):
        flag = argv[i]
        assert flag.startswith("--"), f"not an option: {flag!r}"
        value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else None
        i += 1 if value is None else 2
        if flag not in ROUTER_OWNED:
            out.append((flag[2:], "true" if value is None else value))
    return out


def shared_options(models: list[list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """The keys every model has with the same value (the ``[*]`` section), in the first model's order."""
    if len(models) < 2:
        return []
    first, rest = models[0], [dict(m) for m in models[1:]]
    return [(k, v) for k, v in first if k not in OWN_KEYS and all(m.get(k) == v for m in rest)]


def router_argv(binary: str, bind: tuple[str, int], preset_file: str, models_max: int, autoload: bool,
                api_key_file: str | None) -> tuple[str, ...]:
    """The router's own command line: no model; every model's flags are in the preset file."""
    argv = [binary, "--host", bind[0], "--port", str(bind[1]), "--models-preset", preset_file,
            "--models-max", str(models_max), "--models-autoload" if autoload else "--no-models-autoload"]
    if api_key_file is not None:
        argv += ["--api-key-file", api_key_file]
    return tuple(argv)


def plan_router(host: Host, facts: HostFacts, layout: Layout) -> tuple[ServerPlan, RouterPlan]:
    """The router's unit (as a server plan whose argv starts the router) and its preset; ``models_max`` is the
    pinned value, else every model, until the memory planner sizes it (:mod:`generators.plan.fit.router`)."""
    r = router_index(host)
    found = variants(host)
    models: list[RouterModel] = []
    options: list[list[tuple[str, str]]] = []
    for v in found:
        plan = plan_server(host, facts, layout, v.index, v.server)
        options.append(ini_options(plan.argv))
        models.append(RouterModel(model_id(host, v.server), plan, v.preset, v.load_on_start, ()))
    shared = shared_options(options)
    common = set(shared)
    models = [replace(m, options=tuple(o for o in opts if o not in common)) for m, opts in zip(models, options)]
    # the default model (what a client without a choice gets, and the unit's model): the router server's chosen
    default = next(i for i, m in enumerate(models) if m.plan.index == r and m.load_on_start)
    models.insert(0, models.pop(default))
    base = plan_server(host, facts, layout, r)
    pinned = host.router.models_max if host.router is not None else None
    router = RouterPlan(
        server=base.name,
        models=tuple(models),
        shared=tuple(shared),
        preset_file=layout.preset_file(base.server),
        render_path=preset_render_path(base.server),
        models_max=pinned or len(models),
        pinned=pinned,
        sized=False,
        autoload=host.router.autoload if host.router is not None else True,
    )
    environment: dict[str, str] = {}
    for m in models:
        environment.update(m.plan.environment)
    unit = replace(base, environment=environment, served=tuple(served(host, m) for m in models))
    return _with_argv(unit, router), router


def served(host: Host, model: RouterModel) -> ServedModel:
    return served_model(host, model.plan.server, model.id)


def _with_argv(unit: ServerPlan, router: RouterPlan) -> ServerPlan:
    """The router's unit starting the router of ``router`` (its ``--models-max`` included)."""
    argv = router_argv(unit.argv[0], (unit.bind_host, unit.bind_port), router.preset_file, router.models_max,
                       router.autoload, unit.server.api_key_file)
    return replace(unit, argv=argv)


def with_models_max(unit: ServerPlan, router: RouterPlan, models_max: int,
                    warnings: tuple[str, ...] = ()) -> tuple[ServerPlan, RouterPlan]:
    """The router sized by the memory planner: ``--models-max`` in its argv and its plan."""
    router = replace(router, models_max=models_max, sized=True, warnings=warnings)
    return _with_argv(unit, router), router


__all__ = ["MODEL_ID_RE", "RouterModel", "RouterPlan", "Variant", "ini_options", "model_id", "plan_router",
           "router_argv", "router_problems", "router_since", "variants", "with_models_max"]
