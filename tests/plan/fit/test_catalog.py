"""The offline catalog: entries decode, round-trip, and a header entry equals a fresh reading of its file."""

from __future__ import annotations

from pathlib import Path

import pytest

from generators.plan.fit import catalog
from generators.plan.fit.gguf_facts import read_facts


def test_header_entry_equals_planner_reading_of_the_local_file(smollm2_gguf: Path) -> None:
    entry = catalog.entries()[smollm2_gguf.name]
    assert entry["provenance"] == "header"
    assert catalog.lookup(smollm2_gguf.name) == read_facts(smollm2_gguf)


@pytest.mark.parametrize("arch", ["llama", "qwen3moe", "gemma3"])
def test_encode_decode_round_trip(models: dict[str, Path], arch: str) -> None:
    facts = read_facts(models[arch])
    assert catalog.decode(facts.name, catalog.encode(facts)) == facts


def test_store_writes_an_entry_the_lookup_returns(models: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "facts.yaml"
    path.write_text("models: {}\n", encoding="utf-8")
    facts = read_facts(models["gemma3"])
    catalog.store(facts, {"path": str(models["gemma3"])}, path)
    assert catalog.lookup(facts.name, path) == facts


@pytest.mark.parametrize("name", list(catalog.entries()))
def test_every_seed_entry_is_consistent(name: str) -> None:
    facts = catalog.lookup(name)
    assert facts is not None and facts.n_layer > 0 and facts.weight_bytes > 0
    assert len(facts.layer_bytes) == facts.n_layer == len(facts.swa_layers) == len(facts.recurrent_layers)
    assert facts.attention_layers(), "every seed model has attention layers"
    entry = catalog.entries()[name]
    assert entry["provenance"] in ("header", "estimate")
    if entry["provenance"] == "estimate":
        assert entry["basis"] and "hub" in entry["source"], "estimates say where they come from and how to refresh"


def test_seed_models_are_in_the_catalog() -> None:
    names = set(catalog.entries())
    for wanted in ("Qwen3-Coder-30B-A3B-Instruct-IQ4_NL.gguf", "Qwen3.6-35B-A3B-UD-IQ4_XS.gguf",
                   "Qwen3.5-9B-Q5_K_M.gguf", "gpt-oss-20b-mxfp4.gguf", "qwen2.5-3b-instruct-q4_k_m.gguf"):
        assert wanted in names
    assert catalog.lookup("Qwen3.5-9B-Q5_K_M.gguf").mmproj_bytes > 0  # type: ignore[union-attr]
