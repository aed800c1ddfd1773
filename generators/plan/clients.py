"""Agent clients' plan: which clients, whose home, where each file goes, and the endpoints they talk to.

:mod:`generators.render.clients` writes llamafleet's *part* of each client's config from this plan;
``roles/agent_clients`` merges it into the login user's existing file (:mod:`generators.merge`), keeping the
user's other settings.

A server with an ``api_key_file`` gets a :class:`ClientKey`: the role copies the key (readable by the service user
only) to a file of the login user's own, and every config names that copy or a secret, never the key itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from generators.errors import Problem, SpecError
from generators.plan.layout import CLIENT_FILES, Layout, client_render_path
from generators.plan.ollama import ollama_model
from generators.plan.servers import ServedModel, ServerPlan
from generators.spec import ROOT_KEY, Host, Ollama
from generators.spec.types import http_url

OUTPUT_CAP = 32768
KEYS_DIR = ".config/llamafleet/keys"  # under the login user's home: the copies of the servers' keys
CONTINUE_ENV = ".continue/.env"  # Continue resolves ${{ secrets.NAME }} from here


@dataclass(frozen=True)
class ClientKey:
    """A server's API key as the login user's clients reach it."""

    server: str
    source: str  # the server's api_key_file (owned by the service user, mode 0600)
    dest: str  # the login user's copy (mode 0600), the file configs reference
    env: str  # the secret's name where a client can only name one (Continue's ~/.continue/.env)


def client_key(server: str, source: str, home: str) -> ClientKey:
    return ClientKey(server, source, f"{home}/{KEYS_DIR}/{server}.key",
                     f"LLAMAFLEET_{server.upper().replace('-', '_')}_API_KEY")


@dataclass(frozen=True)
class Endpoint:
    """One model a client talks to: where, under which id, and how much context one session gets."""

    engine: str
    base: str  # scheme://host:port, no path
    model_id: str
    label: str
    context: int | None
    vision: bool
    key: ClientKey | None = None  # None: the server takes any key (clients send a placeholder)

    @property
    def openai_base(self) -> str:
        return f"{self.base}/v1"

    @property
    def output(self) -> int:
        """The most tokens one answer may take: a quarter of the session's context (the rest stays for the
        prompt, the tools and the history), at most OUTPUT_CAP; never more than the context itself."""
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
    chat: Endpoint | None  # Continue's chat model: the first chat server (or Ollama's chat_model)
    agent: Endpoint | None  # OpenCode, pi and Claude Code: a chat endpoint serving clients.agent_min_ctx or more
    autocomplete: Endpoint | None
    opencode_tools: str | None  # lite | full | minimal (None: no OpenCode)
    pi_reasoning: bool
    agent_min_ctx: int = 65536  # clients.agent_min_ctx
    models: tuple[Endpoint, ...] = ()  # every chat model a client can pick by name, chat first (serve: router)

    @property
    def keys(self) -> tuple[ClientKey, ...]:
        """The keys the clients need, once each (chat first; autocomplete only Continue uses)."""
        agents = any(self.enabled(n) for n in ("opencode", "pi", "claude_code"))
        used = (self.agent if agents else None, self.chat if self.enabled("continue") else None,
                self.autocomplete if self.enabled("continue") else None)
        found = [e.key for e in used if e is not None and e.key is not None]
        return tuple(k for i, k in enumerate(found) if k not in found[:i])

    @property
    def continue_env(self) -> str | None:
        """Continue's secrets file when Continue is configured and a server has a key."""
        return f"{self.home}/{CONTINUE_ENV}" if self.enabled("continue") and self.keys else None

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


AGENT_CLIENTS = ("opencode", "pi")  # never pointed at a server below clients.agent_min_ctx


def _llama_endpoint(plan: ServerPlan, served: ServedModel, home: str) -> Endpoint:
    server = plan.server
    return Endpoint(
        engine="llamacpp",
        base=http_url(plan.client_host, plan.client_port),
        model_id=served.id,
        label=f"{served.model} (llama.cpp, {server.name})",
        context=served.ctx_slot,
        vision=served.vision,
        key=None if server.api_key_file is None else client_key(server.name, server.api_key_file, home),
    )


def _ollama_endpoint(ollama: Ollama, tag: str) -> Endpoint:
    model = ollama_model(ollama, tag)
    return Endpoint(
        engine="ollama",
        base=http_url(ollama.host, ollama.port),
        model_id=model.name,  # the derived model when this one has its own num_ctx
        label=f"{tag} (ollama, {model.context} tokens)",
        context=model.context,  # written explicitly: OLLAMA_CONTEXT_LENGTH or the derived model's num_ctx
        vision=False,
    )


def llama_endpoints(servers: tuple[ServerPlan, ...], role: str, home: str) -> list[Endpoint]:
    """Every model of the host's llama-servers with this role (a router's several, a unit's one), in order."""
    return [_llama_endpoint(s, m, home) for s in servers for m in s.served if m.role == role]


def endpoint(host: Host, servers: tuple[ServerPlan, ...], role: str, home: str) -> Endpoint | None:
    """The chat or autocomplete endpoint of a host, if it has one."""
    if host.ollama is not None:
        ollama = host.ollama
        tag = ollama.chat_model if role == "chat" else ollama.autocomplete_model
        if role == "chat" and tag is None:
            tag = ollama.models[0]
        return None if tag is None else _ollama_endpoint(ollama, tag)
    found = llama_endpoints(servers, role, home)
    return found[0] if found else None


def _candidates(host: Host, servers: tuple[ServerPlan, ...], home: str) -> list[tuple[str, Endpoint]]:
    """Everything an agent could chat with, the chat endpoint first: (name, endpoint)."""
    if host.ollama is not None:
        ollama = host.ollama
        first = ollama.chat_model or ollama.models[0]
        tags = [first, *(t for t in ollama.models if t not in (first, ollama.autocomplete_model))]
        return [(t, _ollama_endpoint(ollama, t)) for t in tags]
    return [(s.name, _llama_endpoint(s, m, home)) for s in servers for m in s.served if m.role == "chat"]


def agent_endpoint(host: Host, servers: tuple[ServerPlan, ...], home: str, minimum: int) -> Endpoint | str | None:
    """The endpoint OpenCode and pi use: the chat endpoint when it serves at least ``minimum`` tokens per session,
    else the first other chat server (or Ollama model) that does; a one-line problem when none does."""
    candidates = _candidates(host, servers, home)
    if not candidates:
        return None
    for _, found in candidates:
        if found.context is not None and found.context >= minimum:
            return found
    if all(e.context is None for _, e in candidates):  # ctx: native everywhere: unknown until the GGUF is read
        return candidates[0][1]
    served = ", ".join(f"{n} {e.context if e.context is not None else 'native'}" for n, e in candidates)
    what = "Ollama model" if host.ollama is not None else "chat server"
    return (f"no {what} serves {minimum} tokens per session (the agent minimum, clients.agent_min_ctx); "
            f"served per session: {served}: raise one's context or lower clients.agent_min_ctx on purpose")


def plan_clients(host: Host, servers: tuple[ServerPlan, ...], layout: Layout, name: str = "") -> ClientsPlan | None:
    """The host's agent clients (None when it enables none); raises :class:`SpecError` naming the host and field
    when OpenCode or pi would be pointed at a context below the agent minimum."""
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
    chat = endpoint(host, servers, "chat", layout.client_home)
    agent = agent_endpoint(host, servers, layout.client_home, clients.agent_min_ctx)
    if isinstance(agent, str):
        agents = [c for c in AGENT_CLIENTS if wanted[c] is not None]
        if agents:
            raise SpecError(name, [Problem(f"{ROOT_KEY}.clients.{agents[0]}", agent)])
        agent = chat  # only Continue or Claude Code: they get the chat endpoint and its real limits
    return ClientsPlan(
        user=layout.client_user,
        home=layout.client_home,
        files=files,
        chat=chat,
        agent=agent,
        autocomplete=endpoint(host, servers, "autocomplete", layout.client_home),
        opencode_tools=None if clients.opencode is None else clients.opencode.tools,
        pi_reasoning=clients.pi is not None and clients.pi.reasoning,
        agent_min_ctx=clients.agent_min_ctx,
        models=tuple(llama_endpoints(servers, "chat", layout.client_home)),
    )
