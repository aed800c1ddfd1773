"""What a server's probes expect: the agent probe's severity and what ``/props`` and ``/slots`` must report.

Decided from the server's plan and the model catalog (``generators/data/model_facts.yaml``):

- ``agent_probe``: ``servers[].agent_probe`` when set, else ``off`` for an autocomplete server (agents do not use
  it), ``strict`` for a model the catalog marks ``tools: true`` (it calls tools by itself) and ``warn`` for any
  other model (``tools: false``, or not in the catalog);
- the context of each slot, by llama.cpp's own rule (b11434 ``src/llama-context.cpp``): ``--ctx-size`` padded to
  256; without a unified KV each of the ``--parallel`` slots gets that divided by the slots, padded to 256 again;
  with one (``sessions: shared``, or ``--parallel`` left to llama-server: its auto is 4 slots sharing one pool)
  every slot sees the whole pool. ``ctx: native`` is the model's training context (from the catalog; 0 = unknown,
  not compared);
- the slots, the alias /props reports (the served model id), the build, and whether the template takes tools
  (``--jinja`` with a shipped tools template, or a model the catalog marks tool-capable).
"""

from __future__ import annotations

from dataclasses import dataclass

from generators import data
from generators.spec import Host, Model, Server

AUTO_SLOTS = 4  # llama-server's --parallel auto (b11434): four slots sharing one unified KV pool
PAD = 256  # llama.cpp pads the context (and each slot's share) to a multiple of 256


@dataclass(frozen=True)
class ProbeModel:
    name: str  # sent as "model"
    n_ctx_slot: int  # 0 = unknown (ctx: native of a model the catalog does not know): not compared
    alias: str  # what /props reports as model_alias


@dataclass(frozen=True)
class ProbePlan:
    agent_probe: str  # strict | warn | off
    models: tuple[ProbeModel, ...]
    slots: int
    build: int
    tools_template: bool


def _pad(n: int) -> int:
    return -(-n // PAD) * PAD


def catalog_entry(model: Model) -> dict[str, object]:
    """The model's entry in the model catalog, by GGUF file name ({} when it is not there)."""
    models = data.load_path(data.MODEL_FACTS).get("models", {})
    return dict(models.get(model.filename) or {})


def calls_tools(model: Model) -> bool | None:
    """Whether the catalog marks the model as calling tools by itself (None: not in the catalog, or no mark)."""
    value = catalog_entry(model).get("tools")
    return value if isinstance(value, bool) else None


def default_agent_probe(server: Server, model: Model) -> str:
    """``off`` for an autocomplete server (agents do not use it), else strict for a tool-calling model, else warn."""
    if server.role == "autocomplete":
        return "off"
    return "strict" if calls_tools(model) else "warn"


def slots(server: Server) -> tuple[int, bool]:
    """The slots llama-server runs and whether they share one unified KV pool."""
    if server.sessions == "shared" or server.parallel == "auto":
        return AUTO_SLOTS, True
    return int(server.parallel), False


def n_ctx_slot(server: Server, model: Model) -> int:
    """The context each slot gets (llama.cpp's padding rule); 0 when ``ctx: native`` and the catalog has no entry."""
    if server.ctx == "native":
        train = catalog_entry(model).get("n_ctx_train")
        if not isinstance(train, int):
            return 0
        ctx = train
    else:
        ctx = int(server.ctx)
    n_slots, unified = slots(server)
    n_ctx = _pad(ctx)
    return n_ctx if unified else _pad(n_ctx // n_slots)


def tools_template(server: Server, model: Model) -> bool:
    """Whether the server's template takes tools: --jinja, and a shipped tools template or a tool-capable model."""
    if not server.jinja:
        return False
    if model.chat_template is not None:
        return "tools" in data.chat_template_text(model.chat_template)
    return calls_tools(model) is True


def plan_probe(host: Host, server: Server, model: Model, served_model: str) -> ProbePlan:
    """The probe block of one (non-router) server: one model, the one it serves."""
    assert host.llamacpp is not None
    severity = server.agent_probe or default_agent_probe(server, model)
    return ProbePlan(
        agent_probe=severity,
        models=(ProbeModel(served_model, n_ctx_slot(server, model), served_model),),
        slots=slots(server)[0],
        build=host.llamacpp.build,
        tools_template=tools_template(server, model),
    )
