"""Where things live on a host. One place, used by the renders and (through the rendered manifest) the roles."""

from __future__ import annotations

from dataclasses import dataclass

from generators.spec import Host, LlamaCpp, Model, Server


@dataclass(frozen=True)
class Layout:
    """Paths on the host for one host description."""

    host: Host
    prefix_root: str = "/opt/llamafleet/llama.cpp"
    cache_root: str = "/var/cache/llamafleet"
    models_dir: str = "/var/lib/llamafleet/models"

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
    def source_dir(self) -> str:
        src = self._cpp.source
        if src.path is not None:
            return src.path
        if src.pypi is not None:  # the sdist's own top directory, as it unpacks
            return f"{self.cache_root}/src/{src.pypi.package.replace('-', '_')}-{self._cpp.build}.0.0/llama.cpp"
        return f"{self.cache_root}/src/b{self._cpp.build}"

    chat_templates_dir: str = "/var/lib/llamafleet/chat-templates"

    def chat_template_path(self, name: str) -> str:
        return f"{self.chat_templates_dir}/{name}.jinja"

    def model_path(self, model: Model) -> str:
        return model.path if model.path is not None else f"{self.models_dir}/{model.filename}"

    @staticmethod
    def unit_name(server: Server) -> str:
        return f"llamafleet-{server.name}.service"

    @staticmethod
    def env_name(server: Server) -> str:
        return f"llamafleet-{server.name}.env"

    ollama_dropin: str = "/etc/systemd/system/ollama.service.d/override.conf"

    def client_dest(self, client: str) -> str:
        """Where an agent client reads its config, in the login user's home."""
        return f"{self.host.client_home}/{CLIENT_FILES[client]}"


CLIENT_FILES = {
    "opencode": ".config/opencode/opencode.json",
    "pi": ".pi/agent/models.json",
    "continue": ".continue/config.yaml",
    "claude_code": ".claude/settings.json",
}
