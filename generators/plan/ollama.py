"""Ollama's plan: the drop-in's environment, the package that matches the GPU, and each model's served context.

Ollama's context is always written (``OLLAMA_CONTEXT_LENGTH``): its default depends on the version and the VRAM
(4096 on small cards, seed 002), so an unset value would leave clients guessing. A model served with another
window than that gets a derived model, created from a Modelfile with ``PARAMETER num_ctx N``: Ollama's OpenAI
endpoint, the one agents use, has no per-request context (Ollama's docs: "The OpenAI API does not have a way of
setting the context size for a model ... create a Modelfile ... ollama create"). Clients then name the derived
model and are told exactly its number.
"""

from __future__ import annotations

from dataclasses import dataclass

from generators.facts import HostFacts
from generators.spec import Ollama
from generators.spec.types import url_host

DEFAULT_CONTEXT = 4096  # Ollama's own default on cards below 24 GiB (seed 002: "defaults to a 4096-token window")
MODELFILE_DIR = "/etc/ollama/llamafleet"  # where the role keeps the Modelfiles it creates derived models from
# The package group of data/distros.yaml for an Ollama host, by the GPU's vendor: Arch splits the GPU runners
# into ollama-cuda / ollama-rocm / ollama-vulkan beside the base package (the CPU runner).
VENDOR_BACKEND = {"nvidia": "cuda", "amd": "hip", "intel": "vulkan"}


@dataclass(frozen=True)
class OllamaModel:
    """One model as clients reach it: the tag pulled, the name served and its context."""

    base: str  # the tag `ollama pull` fetches
    name: str  # what clients send as "model": the base, or the derived model with its own num_ctx
    context: int
    modelfile: str | None  # the derived model's Modelfile on the host (None: served as pulled)
    render_path: str | None  # the Modelfile in the render root

    @property
    def derived(self) -> bool:
        return self.modelfile is not None


def derived_name(base: str, context: int) -> str:
    """``qwen2.5-coder:14b`` at 65536 -> ``qwen2.5-coder:14b-ctx65536`` (a tag of the same name)."""
    name, _, tag = base.partition(":")
    return f"{name}:{tag}-ctx{context}" if tag else f"{name}:ctx{context}"


def default_context(ollama: Ollama) -> int:
    return ollama.context_length or DEFAULT_CONTEXT


def ollama_models(ollama: Ollama) -> tuple[OllamaModel, ...]:
    """Every model of the host, in order, with the context it is served with."""
    default = default_context(ollama)
    found = []
    for base in ollama.models:
        context = ollama.contexts.get(base, default)
        if context == default:
            found.append(OllamaModel(base, base, context, None, None))
            continue
        name = derived_name(base, context)
        file = name.replace("/", "_").replace(":", "_") + ".Modelfile"
        found.append(OllamaModel(base, name, context, f"{MODELFILE_DIR}/{file}", f"ollama-models/{file}"))
    return tuple(found)


def ollama_model(ollama: Ollama, base: str) -> OllamaModel:
    return next(m for m in ollama_models(ollama) if m.base == base)


def ollama_environment(ollama: Ollama) -> tuple[tuple[str, str], ...]:
    """The drop-in's Environment= pairs, in seed 003's order, then the context (always) and what seed 002 adds."""
    pairs = [
        ("OLLAMA_FLASH_ATTENTION", "1" if ollama.flash_attention else "0"),
        ("OLLAMA_KV_CACHE_TYPE", ollama.kv_cache_type),
        ("OLLAMA_NUM_PARALLEL", str(ollama.num_parallel)),
        ("OLLAMA_CONTEXT_LENGTH", str(default_context(ollama))),
    ]
    if ollama.keep_alive is not None:
        pairs.append(("OLLAMA_KEEP_ALIVE", ollama.keep_alive))
    pairs.append(("OLLAMA_HOST", f"{url_host(ollama.host)}:{ollama.port}"))
    return tuple(pairs)


def ollama_backend(facts: HostFacts) -> str:
    """The GPU runtime the host's Ollama needs: the first GPU with a known one (cuda, hip, vulkan), else cpu."""
    for gpu in facts.gpus:
        if gpu.vendor in VENDOR_BACKEND:
            return VENDOR_BACKEND[gpu.vendor]
    return "cpu"


def package_groups(facts: HostFacts) -> list[str]:
    """The distro table's package group for this host's Ollama: ``ollama_<backend>`` where the distro has one."""
    backend = ollama_backend(facts)
    group = f"ollama_{backend}"
    if backend != "cpu" and facts.distro is not None and facts.distro.group(group):
        return [group]
    return ["ollama"]
