"""Data tables shipped with the generators: the GPU catalog, per-distro facts and llama.cpp flag renames.

Each table is a YAML file under ``generators/data``; this module only loads and looks things up. Change the data,
not the code, when a new GPU, distro release or llama.cpp rename comes along.
"""

from __future__ import annotations

import difflib
import functools
from importlib import resources
from typing import Any

import yaml


@functools.cache
def _load(name: str) -> dict[str, Any]:
    text = resources.files("generators").joinpath("data", name).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise TypeError(f"generators/data/{name} must be a mapping")
    return data


def gpus() -> dict[str, dict[str, Any]]:
    return _load("gpus.yaml")


def distros() -> dict[str, dict[str, Any]]:
    return _load("distros.yaml")


def flag_renames() -> dict[str, Any]:
    return _load("flag_renames.yaml")


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
