"""The one loader of the data files shipped with the generators (``generators/data``), and the GPU catalog lookups.

The tables: the GPU catalog (``gpus.yaml``), per-distro facts (``distros.yaml``), llama.cpp flag renames
(``flag_renames.yaml``), the CUDA toolchain support data (``cuda_toolchains.yaml``), the ROCm the HIP backend needs
(``rocm.yaml``), the offline model header facts
(``model_facts.yaml``) and the chat templates shipped for models (``chat_templates/*.jinja``). This module only
loads and looks things up; every layer above reads the data through it. Change the data, not the code, when a new
GPU, distro release or llama.cpp rename comes along.
"""

from __future__ import annotations

import difflib
import functools
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DATA_DIR = Path(__file__).resolve().parent / "data"
MODEL_FACTS = DATA_DIR / "model_facts.yaml"
_CHAT_TEMPLATES = "chat_templates"


def _text(*parts: str) -> str:
    return resources.files("generators").joinpath("data", *parts).read_text(encoding="utf-8")


@functools.cache
def load(name: str) -> dict[str, Any]:
    """One YAML table of ``generators/data`` (a mapping), parsed once."""
    data = yaml.safe_load(_text(name))
    if not isinstance(data, dict):
        raise TypeError(f"generators/data/{name} must be a mapping")
    return data


@functools.cache
def load_path(path: Path) -> dict[str, Any]:
    """A YAML table at an explicit path (the model facts catalog, which ``catalog add`` rewrites), parsed once."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path} must be a mapping")
    return data


def gpus() -> dict[str, dict[str, Any]]:
    return load("gpus.yaml")


def distros() -> dict[str, dict[str, Any]]:
    return load("distros.yaml")


def flag_renames() -> dict[str, Any]:
    return load("flag_renames.yaml")


def cuda_toolchains() -> dict[str, Any]:
    return load("cuda_toolchains.yaml")


def rocm() -> dict[str, Any]:
    return load("rocm.yaml")


# --- chat templates -------------------------------------------------------------------------------------------
# SmolLM2's template has no tool block: with it, llama-server cannot turn a request's `tools` into a structured
# `tool_calls` answer. ``chatml-json-tools`` keeps SmolLM2's ChatML framing and adds tools.


@functools.cache
def chat_templates() -> tuple[str, ...]:
    """The chat templates shipped with llamafleet, by name."""
    folder = resources.files("generators").joinpath("data", _CHAT_TEMPLATES)
    return tuple(sorted(p.name.removesuffix(".jinja") for p in folder.iterdir() if p.name.endswith(".jinja")))


def chat_template_text(name: str) -> str:
    return _text(_CHAT_TEMPLATES, f"{name}.jinja")


# --- the GPU catalog ------------------------------------------------------------------------------------------


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


@functools.cache
def _gpu_index() -> dict[str, str]:
    """Every accepted spelling (normalised) -> catalog key."""
    index: dict[str, str] = {}
    for key, entry in gpus().items():
        for spelling in (key, entry.get("display", ""), *entry.get("aliases", [])):
            if spelling:
                index[_norm(spelling)] = key
    return index


def find_gpu(name: str) -> str | None:
    """The catalog key for a GPU name as a user writes it, or None."""
    return _gpu_index().get(_norm(name))


def closest_gpus(name: str, limit: int = 3) -> list[str]:
    """Catalog keys whose spellings are closest to ``name`` (difflib), best first."""
    index = _gpu_index()
    matches = difflib.get_close_matches(_norm(name), list(index), n=limit * 3, cutoff=0.4)
    keys: list[str] = []
    for match in matches:
        if index[match] not in keys:
            keys.append(index[match])
    return keys[:limit]


CUSTOM_GPU_HINT = (
    "declare a custom GPU in host_vars instead: "
    "gpus: [{name: my-gpu, vendor: nvidia, vram_gb: 16, bandwidth_gbs: 500, cuda_cc: '8.9', tensor_cores: true}] "
    "(AMD: gfx: gfx1100 instead of cuda_cc; an APU: unified: true and vram_gb: <GTT pool>)"
)


def unknown_gpu_message(name: str) -> str:
    close = closest_gpus(name)
    hint = f"closest: {', '.join(close)}; " if close else ""
    return f"unknown GPU {name!r} ({hint}{CUSTOM_GPU_HINT})"
