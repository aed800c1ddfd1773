"""The offline catalog of model header facts (``generators/data/model_facts.yaml``).

CI and the example inventory cannot reach the hub, so the planner reads the facts of each seed model from this
catalog, keyed by GGUF file name. An entry's ``provenance`` says where its numbers come from:

- ``header``: read from the model's GGUF header by :mod:`generators.fit.gguf_facts` (exact);
- ``estimate``: hand-entered architecture numbers from the model card, tensor bytes spread over the layers from the
  published file size (good to a few percent; refresh it when online).

Refresh an entry from the hub's header (HTTP range reads of the header only, never the weights)::

    python -m generators.fit.catalog refresh Qwen3.5-9B-Q5_K_M.gguf
    python -m generators.fit.catalog add --repo unsloth/Qwen3.5-9B-GGUF --file Qwen3.5-9B-Q5_K_M.gguf \\
        [--mmproj mmproj-BF16.gguf]
    python -m generators.fit.catalog add --path /models/local.gguf        # from a file on disk

Per-layer values are stored as one scalar when every layer has the same value, else as a list.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path
from typing import Any

import yaml

from generators.fit.gguf_facts import ModelFacts, hub_facts, read_facts

CATALOG = Path(__file__).resolve().parent.parent / "data" / "model_facts.yaml"
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


@functools.cache
def _load(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    return dict(data.get("models", {}))


def entries(path: Path = CATALOG) -> dict[str, dict[str, Any]]:
    return _load(path)


def lookup(filename: str, path: Path = CATALOG) -> ModelFacts | None:
    """Facts for a GGUF file name, or None if the catalog does not know it."""
    entry = entries(path).get(filename)
    return None if entry is None else decode(filename, entry)


def _write(models: dict[str, Any], path: Path) -> None:
    header = (
        "# Header facts of the seed models, for planning offline (generators/fit/catalog.py explains the fields).\n"
        "# provenance: header = read from the GGUF header; estimate = hand-entered, refresh when online.\n"
    )
    text = yaml.safe_dump({"models": models}, sort_keys=False, default_flow_style=None, width=118)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(header + text, encoding="utf-8")
    tmp.replace(path)
    _load.cache_clear()


def store(facts: ModelFacts, source: dict[str, Any], path: Path = CATALOG) -> None:
    """Add or replace the entry for ``facts.name`` (header provenance)."""
    models = dict(entries(path))
    models[facts.name] = {"provenance": "header", "source": source, **encode(facts)}
    _write(models, path)


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(prog="python -m generators.fit.catalog", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("refresh", help="re-read an entry's header from its source on the hub")
    ref.add_argument("filename")
    add = sub.add_parser("add", help="add an entry from the hub's header or a local file")
    add.add_argument("--repo")
    add.add_argument("--file")
    add.add_argument("--mmproj")
    add.add_argument("--revision")
    add.add_argument("--path", help="a GGUF on this machine instead of the hub")
    add.add_argument("--mmproj-path")
    sub.add_parser("list", help="the catalog's entries and their provenance")
    args = top.parse_args(argv)

    if args.command == "list":
        for name, entry in entries().items():
            print(f"{name:<60} {entry.get('provenance', '?'):<9} {entry.get('architecture')}")
        return 0
    if args.command == "refresh":
        entry = entries().get(args.filename)
        if entry is None or "hub" not in entry.get("source", {}):
            print(f"{args.filename}: not in the catalog with a hub source", file=sys.stderr)
            return 2
        hub = entry["source"]["hub"]
        # a host may keep the file under a local name; hub.file is then the name on the hub
        facts = hub_facts(hub["repo"], hub.get("file", args.filename), hub.get("mmproj"), hub.get("revision"))
        store(dataclasses.replace(facts, name=args.filename), entry["source"])
        return 0
    if args.path:
        facts = read_facts(args.path, args.mmproj_path)
        store(facts, {"path": str(args.path)})
        return 0
    if not (args.repo and args.file):
        top.error("add needs --repo and --file, or --path")
    facts = hub_facts(args.repo, args.file, args.mmproj, args.revision)
    hub = {"repo": args.repo, **({"mmproj": args.mmproj} if args.mmproj else {}),
           **({"revision": args.revision} if args.revision else {})}
    store(facts, {"hub": hub})
    return 0


if __name__ == "__main__":
    sys.exit(main())
