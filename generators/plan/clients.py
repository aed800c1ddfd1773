"""Agent clients' plan: which clients, whose home, where each file goes, and the endpoints they talk to.

:mod:`generators.render.clients` writes llamafleet's *part* of each client's config from this plan;
``roles/agent_clients`` merges it into the login user's existing file (:mod:`generators.merge`), keeping the
user's other settings.

A server with an ``api_key_file`` gets a :class:`ClientKey`: the role copies the key (readable by the service user
only) to a file of the login user's own, and every config names that copy or a secret, never the key itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from generators.plan.layout import CLIENT_FILES, Layout, client_render_path
from generators.plan.servers import ServedModel, ServerPlan
from generators.spec import Host
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
    models: tuple[Endpoint, ...] = ()  # every chat model a client can pick by name, chat first (serve: router)

    @property
    def keys(self) -> tuple[ClientKey, ...]:
        """The keys the clients need, once each (chat first; autocomplete only Continue uses)."""
        used = (self.chat, self.autocomplete if self.enabled("continue") else None)
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
    found = llama_endpoints(servers, role, home)
    return found[0] if found else None


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
        chat=endpoint(host, servers, "chat", layout.client_home),
        autocomplete=endpoint(host, servers, "autocomplete", layout.client_home),
        opencode_tools=None if clients.opencode is None else clients.opencode.tools,
        pi_reasoning=clients.pi is not None and clients.pi.reasoning,
        models=tuple(llama_endpoints(servers, "chat", layout.client_home)),
    )
