"""Agent clients' plan: which clients, whose home, where each file goes, and the endpoints they talk to.

:mod:`generators.render.clients` writes llamafleet's *part* of each client's config from this plan;
``roles/agent_clients`` merges it into the login user's existing file (:mod:`generators.merge`), keeping the
user's other settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from generators.plan.layout import CLIENT_FILES, Layout, client_render_path
from generators.plan.servers import ServerPlan
from generators.spec import Host
from generators.spec.types import http_url

OUTPUT_CAP = 32768


@dataclass(frozen=True)
class Endpoint:
    """One model a client talks to: where, under which id, and how much context one session gets."""

    engine: str
    base: str  # scheme://host:port, no path
    model_id: str
    label: str
    context: int | None
    vision: bool

    @property
    def openai_base(self) -> str:
        return f"{self.base}/v1"

    @property
    def output(self) -> int:
        return min(self.context // 4, OUTPUT_CAP) if self.context else 8192


@dataclass(frozen=True)
class ClientFile:
    """How one client's file is rendered, found and merged."""

    name: str
    fmt: str  # json | yaml
    list_keys: tuple[tuple[str, str], ...]  # lists merged by an id key: (list key, id key)
    keep_user: tuple[str, ...]  # top-level keys whose user value wins
    render_path: str
    dest: str
    relpath: str


@dataclass(frozen=True)
class ClientsPlan:
    user: str
    home: str
    files: tuple[ClientFile, ...]
    chat: Endpoint | None
    autocomplete: Endpoint | None
    opencode_tools: str | None  # lite | full | minimal (None: no OpenCode)
    pi_reasoning: bool

    def enabled(self, name: str) -> bool:
        return any(f.name == name for f in self.files)


@dataclass(frozen=True)
class ClientKind:
    """One agent client llamafleet knows: its file's format and how the merge treats the user's file."""

    name: str
    fmt: str
    list_keys: tuple[tuple[str, str], ...] = ()
    keep_user: tuple[str, ...] = ()


CLIENTS = (  # in the order the files render
    ClientKind("opencode", "json"),
    ClientKind("pi", "json", list_keys=(("models", "id"),)),
    ClientKind("continue", "yaml", list_keys=(("models", "name"),), keep_user=("name", "version", "schema")),
    ClientKind("claude_code", "json"),
)


def _llama_endpoint(plan: ServerPlan) -> Endpoint:
    server = plan.server
    context: int | None = None
    if isinstance(server.ctx, int):
        slots = server.parallel if isinstance(server.parallel, int) and server.sessions != "shared" else 1
        context = server.ctx // slots
    return Endpoint(
        engine="llamacpp",
        base=http_url(plan.client_host, plan.client_port),
        model_id=plan.served_model,
        label=f"{server.model} (llama.cpp, {server.name})",
        context=context,
        vision=server.mmproj is not None,
    )


def endpoint(host: Host, servers: tuple[ServerPlan, ...], role: str) -> Endpoint | None:
    """The chat or autocomplete endpoint of a host, if it has one."""
    if host.ollama is not None:
        ollama = host.ollama
        tag = ollama.chat_model if role == "chat" else ollama.autocomplete_model
        if role == "chat" and tag is None:
            tag = ollama.models[0]
        if tag is None:
            return None
        return Endpoint(
            engine="ollama",
            base=http_url(ollama.host, ollama.port),
            model_id=tag,
            label=f"{tag} (ollama)",
            context=ollama.context_length or 4096,  # Ollama's default window is 4096 (seed 002)
            vision=False,
        )
    server = next((s for s in servers if s.role == role), None)
    return None if server is None else _llama_endpoint(server)


def plan_clients(host: Host, servers: tuple[ServerPlan, ...], layout: Layout) -> ClientsPlan | None:
    """The host's agent clients (None when it enables none)."""
    clients = host.clients
    if clients is None:
        return None
    wanted = {"opencode": clients.opencode, "pi": clients.pi, "continue": clients.continue_,
              "claude_code": clients.claude_code}
    files = tuple(
        ClientFile(c.name, c.fmt, c.list_keys, c.keep_user, client_render_path(c.name), layout.client_dest(c.name),
                   CLIENT_FILES[c.name])
        for c in CLIENTS if wanted[c.name] is not None
    )
    if not files:
        return None
    return ClientsPlan(
        user=layout.client_user,
        home=layout.client_home,
        files=files,
        chat=endpoint(host, servers, "chat"),
        autocomplete=endpoint(host, servers, "autocomplete"),
        opencode_tools=None if clients.opencode is None else clients.opencode.tools,
        pi_reasoning=clients.pi is not None and clients.pi.reasoning,
    )
