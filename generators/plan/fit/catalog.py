"""The offline catalog of model header facts (``generators/data/model_facts.yaml``).

CI and the example inventory cannot reach the hub, so the planner reads the facts of each seed model from this
catalog, keyed by GGUF file name. An entry's ``provenance`` says where its numbers come from:

- ``header``: read from the model's GGUF header by :mod:`generators.plan.fit.gguf_facts` (exact);
- ``estimate``: hand-entered architecture numbers from the model card, tensor bytes spread over the layers from the
  published file size (good to a few percent; refresh it when online).

Refresh an entry from the hub's header (HTTP range reads of the header only, never the weights)::

    python -m generators catalog refresh Qwen3.5-9B-Q5_K_M.gguf
    python -m generators catalog add --repo unsloth/Qwen3.5-9B-GGUF --file Qwen3.5-9B-Q5_K_M.gguf \\
        [--mmproj mmproj-BF16.gguf]
    python -m generators catalog add --path /models/local.gguf        # from a file on disk

Per-layer values are stored as one scalar when every layer has the same value, else as a list.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from generators import data
from generators.plan.fit.gguf_facts import ModelFacts

CATALOG = data.MODEL_FACTS
_PER_LAYER = ("n_head", "n_head_kv", "swa_layers", "recurrent_layers", "layer_bytes", "layer_expert_bytes")
_TUPLE_PAIRS = ("bytes_by_type", "matrix_bytes_by_type")


def encode(facts: ModelFacts) -> dict[str, Any]:
    """A catalog entry (plain YAML data) for ``facts``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(facts):
        value = getattr(facts, f.name)
        if f.name == "name":
            continue
        if f.name in _PER_LAYER:
            value = value[0] if len(set(value)) == 1 else list(value)
        elif f.name in _TUPLE_PAIRS:
            value = {k: v for k, v in value}
        out[f.name] = value
    return out


def decode(name: str, entry: dict[str, Any]) -> ModelFacts:
    """The :class:`ModelFacts` of a catalog entry (extra keys such as ``source`` are ignored)."""
    known = {f.name for f in dataclasses.fields(ModelFacts)}
    n_layer = int(entry["n_layer"])
    kwargs: dict[str, Any] = {"name": name}
    for key, value in entry.items():
        if key not in known:
            continue
        if key in _PER_LAYER:
            value = tuple(value) if isinstance(value, list) else (value,) * n_layer
            if len(value) != n_layer:
                raise ValueError(f"{name}: {key} has {len(value)} entries for {n_layer} layers")
        elif key in _TUPLE_PAIRS:
            value = tuple(sorted((str(k), int(v)) for k, v in value.items()))
        kwargs[key] = value
    return ModelFacts(**kwargs)


def entries(path: Path = CATALOG) -> dict[str, dict[str, Any]]:
    return dict(data.load_path(path).get("models", {}))


def lookup(filename: str, path: Path = CATALOG) -> ModelFacts | None:
    """Facts for a GGUF file name, or None if the catalog does not know it."""
    entry = entries(path).get(filename)
    return None if entry is None else decode(filename, entry)


def _write(models: dict[str, Any], path: Path) -> None:
    header = (
        "# Header facts of the seed models, for planning offline (generators/plan/fit/catalog.py explains the fields).\n"
        "# provenance: header = read from the GGUF header; estimate = hand-entered, refresh when online.\n"
    )
    text = yaml.safe_dump({"models": models}, sort_keys=False, default_flow_style=None, width=118)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(header + text, encoding="utf-8")
    tmp.replace(path)
    data.load_path.cache_clear()


def store(facts: ModelFacts, source: dict[str, Any], path: Path = CATALOG) -> None:
    """Add or replace the entry for ``facts.name`` (header provenance)."""
    models = dict(entries(path))
    models[facts.name] = {"provenance": "header", "source": source, **encode(facts)}
    _write(models, path)
