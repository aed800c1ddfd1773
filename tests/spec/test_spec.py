"""The host schema: catalog lookups, custom GPUs, distro facts, engines, presets and derived defaults."""

from __future__ import annotations

import pytest

from hostsupport import EXAMPLE_HOSTS, facts_of, parse, parse_tweaked, plan_of

from generators import data
from generators.errors import SpecError
from generators.pipeline import plan_hostvars
from generators.plan.builds import backend_switches
from generators.spec import parse_host

MINIMAL = {
    "llamacpp": {"build": 11434, "source": {"pypi": {}}},
    "models": [{"name": "m", "path": "/srv/m.gguf"}],
    "servers": [{"model": "m"}],
}


def problems(spec: dict, host: str = "h") -> list[str]:
    with pytest.raises(SpecError) as caught:
        plan_hostvars(host, {"llamafleet": spec})
    return [p.line(host) for p in caught.value.problems]


@pytest.mark.parametrize("host", EXAMPLE_HOSTS)
def test_every_example_host_validates(host: str) -> None:
    parse(host)


def test_catalog_names_resolve_case_and_spelling_insensitively() -> None:
    assert data.find_gpu("NVIDIA GeForce RTX 4090") == "rtx-4090"
    assert data.find_gpu("rtx4090") == "rtx-4090"
    assert data.find_gpu("RTX_4090") == "rtx-4090"
    assert data.find_gpu("Radeon 8060S Graphics") == "radeon-8060s"
    assert data.find_gpu("rtx 9999") is None


def test_catalog_entries_are_complete() -> None:
    for key, entry in data.gpus().items():
        assert entry["vendor"] in ("nvidia", "amd", "intel"), key
        assert entry["bandwidth_gbs"] > 0, key
        assert (entry["vram_gb"] is None) == entry["unified"], key
        if entry["vendor"] == "nvidia":
            assert entry["cuda_cc"], key
        if entry["vendor"] == "amd":
            assert entry["gfx"].startswith("gfx"), key


def test_unknown_gpu_suggests_closest_and_shows_custom_declaration() -> None:
    [line] = problems({**MINIMAL, "gpus": ["RTX 4900"]})
    assert line.startswith("host h: llamafleet.gpus[0]: unknown GPU 'RTX 4900'")
    assert "closest: rtx-4090" in line
    assert "vendor: nvidia" in line and "cuda_cc" in line


def test_a_custom_gpu_is_accepted_and_drives_the_cuda_arch() -> None:
    custom = {"name": "lab-card", "vendor": "nvidia", "vram_gb": 48, "bandwidth_gbs": 864, "cuda_cc": "8.6"}
    host = parse_host(
        "h", {"llamafleet": {**MINIMAL, "gpus": [custom], "llamacpp": {**MINIMAL["llamacpp"], "backend": "cuda"}}}
    )
    [gpu] = facts_of(host).gpus
    assert gpu.custom and gpu.key == "lab-card" and gpu.vram_gb == 48.0
    assert backend_switches(plan_of(host).build("cuda").cmake_flags) == [
        "-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=86"]


def test_apu_memory_is_declared_per_host() -> None:
    host = parse("strix-halo")
    [gpu] = facts_of(host).gpus
    assert gpu.unified and gpu.vram_gb == 96.0 and gpu.gfx == "gfx1151"
    assert data.gpus()["radeon-8060s"]["vram_gb"] is None


def test_backends_available_follow_the_hardware() -> None:
    assert facts_of(parse("t1200-laptop")).available_backends == ("cpu", "vulkan", "cuda")
    assert facts_of(parse("strix-halo")).available_backends == ("cpu", "hip", "vulkan")


def test_vulkan_device_order_is_the_listed_gpu_order() -> None:
    host = parse("t1200-laptop")
    assert [g.key for g in facts_of(host).backend_gpus(host.backend)] == ["intel-uhd-tgl", "t1200-laptop"]


def test_distro_facts_for_every_seed_distro() -> None:
    keys = {parse(h).distro.key for h in EXAMPLE_HOSTS}  # type: ignore[union-attr]
    assert {"fedora-43", "fedora-44", "arch", "ubuntu-24.04"} <= keys
    for key in ("fedora-43", "fedora-44", "arch", "ubuntu-24.04"):
        facts = data.distros()[key]
        assert facts["packages"]["build"] and facts["packages"]["vulkan"] and facts["rocm_path"].startswith("/")
        sources = [s for s in facts["cuda"].values() if s is not None]  # each seed distro has a CUDA toolkit
        assert sources and all(s["packages"] for s in sources)


def test_distro_version_may_be_written_as_a_number() -> None:
    host = parse_host("h", {"llamafleet": {**MINIMAL, "distro": {"name": "fedora", "version": 44}}})
    assert host.distro is not None and host.distro.key == "fedora-44"


def test_ollama_engine_needs_no_llamacpp() -> None:
    host = parse("rtx3070-ollama")
    assert host.engine == "ollama" and host.llamacpp is None and not host.servers


def test_preset_fields_override_the_server() -> None:
    host = parse("rtx4060-laptop")
    [server] = host.active_servers
    assert (server.ctx, server.batch, server.ubatch, server.mmproj) == (131072, 512, 128, None)
    vision = parse_tweaked(
        "rtx4060-laptop",
        {
            "servers": [
                {
                    **host.servers[0].model_dump(exclude_none=True, exclude={"presets"}),
                    "presets": {k: v.model_dump(exclude_none=True) for k, v in host.servers[0].presets.items()},
                    "preset": "vision",
                }
            ]
        },
    )
    [server] = vision.active_servers
    assert (server.ctx, server.batch, server.ubatch, server.mmproj) == (65536, 128, 64, "qwen3.5-9b-mmproj")
    assert server.kv_offload is False  # from the server, not the preset


def test_all_problems_are_reported_at_once() -> None:
    lines = problems({**MINIMAL, "user": "root", "servers": [{"model": "nope", "ctx": 1}]})
    fields = {line.split(": ")[1] for line in lines}
    assert {"llamafleet.user", "llamafleet.servers[0].ctx"} <= fields


def test_pattern_errors_explain_the_allowed_form() -> None:
    [line] = problems(
        {**MINIMAL, "models": [{"name": "Big Model", "path": "/srv/m.gguf"}], "servers": [{"model": "m"}]}
    )[:1]
    assert "llamafleet.models[0].name" in line and "lowercase letters" in line
