"""Where things live on a host. One place, used by the renders and (through the rendered manifest) the roles."""

from __future__ import annotations

from dataclasses import dataclass

from generators.spec import Host, Model, Server


@dataclass(frozen=True)
class Layout:
    """Paths on the host for one host description."""

    host: Host
    prefix_root: str = "/opt/llamafleet/llama.cpp"
    cache_root: str = "/var/cache/llamafleet"
    models_dir: str = "/var/lib/llamafleet/models"

    @property
    def prefix(self) -> str:
        """The versioned install prefix of the wanted build (``<build>-<backend>``)."""
        return f"{self.prefix_root}/{self.host.llamacpp.version}"

    @property
    def current(self) -> str:
        return f"{self.prefix_root}/current"

    @property
    def server_binary(self) -> str:
        return f"{self.current}/bin/llama-server"

    @property
    def build_dir(self) -> str:
        return f"{self.cache_root}/build/{self.host.llamacpp.version}"

    @property
    def ccache_dir(self) -> str:
        return f"{self.cache_root}/ccache"

    @property
    def source_dir(self) -> str:
        src = self.host.llamacpp.source
        if src.path is not None:
            return src.path
        if src.pypi is not None:  # the sdist's own top directory, as it unpacks
            return f"{self.cache_root}/src/{src.pypi.package.replace('-', '_')}-{self.host.llamacpp.build}.0.0/llama.cpp"
        return f"{self.cache_root}/src/b{self.host.llamacpp.build}"

    def model_path(self, model: Model) -> str:
        return model.path if model.path is not None else f"{self.models_dir}/{model.filename}"

    @staticmethod
    def unit_name(server: Server) -> str:
        return f"llamafleet-{server.name}.service"

    @staticmethod
    def env_name(server: Server) -> str:
        return f"llamafleet-{server.name}.env"
