"""The plan each seed host gets from its recorded probe (tests/facts/fixtures), and each bad fact as one line."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from generators.errors import SpecError
from generators.facts.probe import parse_probe
from generators.pipeline import plan_hostvars, render_hostvars
from generators.plan.disk import BUILD_FREE_BYTES
from generators.plan.fit.requests import memory_for

FIXTURES = Path(__file__).resolve().parents[1] / "facts" / "fixtures"
GIT = {"git": {"url": "https://github.com/ggml-org/llama.cpp.git", "ref": "b11434"}}


def raw(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "raw.json").read_text())


def host(backend: str, also: tuple[str, ...] = (), cuda_repo: str | None = None, **extra: Any) -> dict[str, Any]:
    cpp: dict[str, Any] = {"build": 11434, "backend": backend, "source": GIT}
    if cuda_repo is not None:
        cpp["cuda_repo"] = cuda_repo
    if also:
        cpp["also_build"] = list(also)
    models = [{"name": "m", "path": "/home/dev/models/m.gguf"}]
    return {"llamafleet": {"user": "dev", "llamacpp": cpp, "models": models,
                           "servers": [{"name": "main", "model": "m"}], **extra}}


def one_line(exc: pytest.ExceptionInfo[SpecError]) -> str:
    text = str(exc.value)
    assert "\n" not in text.strip(), text
    return text.strip()


# -- the seeds, undeclared: everything from the probe ------------------------------------------------------------
def test_seed000_vulkan_indices_and_cuda_bundle_from_the_probe() -> None:
    plan = plan_hostvars("t1200", host("vulkan", ("cuda",)), raw("t1200-igpu-laptop"))
    assert [g.key for g in plan.facts.gpus] == ["intel-uhd-tgl", "t1200-laptop"]
    assert [g.vulkan_index for g in plan.facts.gpus] == [0, 1]
    assert plan.facts.distro is not None and plan.facts.distro.key == "fedora-44"
    assert plan.build("vulkan").expected_device == "Vulkan1"
    cuda = plan.build("cuda").target.toolchain
    assert cuda is not None and cuda.kind == "bundle"
    assert any("system GCC is 16.0.1" in r and "no other installed GCC fits" in r for r in cuda.reasons)
    assert plan.build("cuda").target.cuda_arch == ("75",)


def _compiler(name: str, version: str) -> dict[str, Any]:
    path = f"/usr/bin/{name}"
    return {"name": name, "path": path, "realpath": path, "system": False,
            "version": {"argv": [path, "-dumpfullversion", "-dumpversion"], "rc": 0, "stderr": "",
                        "stdout": f"{version}\n", "timed_out": False}}


def test_seed000_with_an_older_gcc_installed_builds_with_it() -> None:
    probe = raw("t1200-igpu-laptop")
    probe["compilers"] += [_compiler("gcc-14", "14.3.1"), _compiler("g++-14", "14.3.1")]
    plan = plan_hostvars("t1200", host("vulkan", ("cuda",)), probe)
    cuda = plan.build("cuda").target.toolchain
    assert cuda is not None and cuda.kind.startswith("alt-gcc") and cuda.host_cxx == "/usr/bin/g++-14", cuda


def test_seed004_gets_the_private_header_patch() -> None:
    plan = plan_hostvars("rtx4060", host("cuda"), raw("rtx4060-laptop-fedora43"))
    assert [g.key for g in plan.facts.gpus] == ["rtx-4060-laptop"]
    cuda = plan.build("cuda").target.toolchain
    assert cuda is not None and cuda.kind == "patch" and cuda.patch_functions
    assert plan.build("cuda").target.cuda_arch == ("89",)


def test_seed001_is_native() -> None:
    plan = plan_hostvars("rtx4090", host("cuda"), raw("rtx4090-desktop"))
    cuda = plan.build("cuda").target.toolchain
    assert [g.key for g in plan.facts.gpus] == ["rtx-4090"]
    assert cuda is not None and cuda.kind == "native", cuda
    assert plan.facts.distro is not None and plan.facts.distro.key == "ubuntu-24.04"


def test_seed003_strix_halo_vulkan_and_hip() -> None:
    plan = plan_hostvars("strix", host("vulkan", ("hip",)), raw("strix-halo"))
    assert [g.key for g in plan.facts.gpus] == ["radeon-8060s"]
    assert plan.facts.distro is not None and plan.facts.distro.key == "arch"
    assert plan.build("hip").target.gfx_targets == ("gfx1151",)
    assert plan.build("vulkan").expected_device == "Vulkan0"


def test_seed_hosts_with_nvcc_keep_their_plan_and_install_no_toolkit() -> None:
    """The probe's nvcc wins over llamacpp.cuda_repo: seeds 004 (patch), 000 (bundle), 001 (native) as before, and
    build_deps installs no CUDA package beside the toolkit the host has."""
    for name, fixture, backends, kind in (("rtx4060", "rtx4060-laptop-fedora43", ("cuda",), "patch"),
                                           ("t1200", "t1200-igpu-laptop", ("vulkan", "cuda"), "bundle"),
                                           ("rtx4090", "rtx4090-desktop", ("cuda",), "native")):
        plan = plan_hostvars(name, host(backends[0], backends[1:]), raw(fixture))
        assert plan.build("cuda").target.toolchain.kind == kind  # type: ignore[union-attr]
        assert plan.distro is not None and plan.distro.cuda_toolkit is None
        assert not {"cuda-toolkit", "nvidia-cuda-toolkit"} & set(plan.distro.packages)
    env = dict(plan_hostvars("rtx4090", host("cuda"), raw("rtx4090-desktop")).build("cuda").target.env)
    assert env == {"CUDA_HOME": "/usr/local/cuda", "CUDACXX": "/usr/local/cuda/bin/nvcc"}  # where the probe found it


# -- no nvcc yet: the plan is made for the toolkit build_deps installs (generators/plan/toolkits.py) ----------------
# tests/support/bare_cuda_fixtures.py derives both probes from the recorded Debian 13 container and seed 001's host.
def test_bare_debian13_plans_for_debians_nvcc_and_its_gcc13() -> None:
    plan = plan_hostvars("box", host("cuda"), raw("debian13-rtx4090-bare"))
    build = plan.build("cuda")
    cuda = build.target.toolchain
    assert cuda is not None and (cuda.kind, cuda.nvcc, cuda.host_cxx) == ("alt-gcc+patch", "12.4", "/usr/bin/g++-13")
    assert cuda.reasons == (
        "nvcc 12.4 from Debian 13's nvidia-cuda-toolkit (non-free), installed by build_deps; it accepts GCC <= 13, "
        "the system GCC is 14 (Debian 13's g++, which build_deps installs); building with /usr/bin/g++-13, which "
        "the package installs",
        "glibc 2.41 (>= 2.41) declares cospi, cospif, sinpi, sinpif with noexcept and nvcc 12.4's "
        "crt/math_functions.h does not (fixed in nvcc 13.0): patching a private copy of the headers",
    )
    assert dict(build.target.env) == {"CUDA_HOME": "/usr", "CUDACXX": "/usr/bin/nvcc"} and build.target.path == ()
    assert "-DCUDAToolkit_ROOT=/usr" in build.cmake_flags and build.target.split_headers == "nvidia-cuda-dev"
    assert plan.distro is not None and "nvidia-cuda-toolkit" in plan.distro.packages
    assert plan.distro.cuda_toolkit is not None and plan.distro.cuda_toolkit.component == "non-free"


def test_debian13_with_gcc13_installed_builds_with_that_one() -> None:
    probe = raw("debian13-container-vulkan")  # GCC 14 with GCC 13 beside it, recorded
    probe.update({k: raw("rtx4090-desktop")[k] for k in ("nvidia_smi", "drm_cards", "device_nodes")})
    cuda = plan_hostvars("box", host("cuda"), probe).build("cuda").target.toolchain
    assert cuda is not None and cuda.host_cxx == "/usr/bin/g++-13"
    assert "the system GCC is 14.2.0; building with the installed GCC 13.3.0 (/usr/bin/g++-13)" in cuda.reasons[0]


def test_bare_ubuntu2404_plans_for_ubuntus_nvcc_12_0_and_gcc12() -> None:
    plan = plan_hostvars("box", host("cuda"), raw("ubuntu2404-rtx4090-bare"))
    cuda = plan.build("cuda").target.toolchain
    assert cuda is not None and (cuda.kind, cuda.nvcc, cuda.host_cxx) == ("alt-gcc", "12.0", "/usr/bin/g++-12")
    assert cuda.reasons == (
        "nvcc 12.0 from Ubuntu 24.04's nvidia-cuda-toolkit (multiverse), installed by build_deps; it accepts "
        "GCC <= 12, the system GCC is 13.3.0; building with /usr/bin/g++-12, which the package installs",
        "glibc 2.39 has no declaration that clashes with nvcc 12.0's headers",
    )
    assert plan.distro is not None and plan.distro.packages[-1] == "nvidia-cuda-toolkit"


def _rtx5090(probe: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(probe).replace("NVIDIA GeForce RTX 4090, 8.9, 24564", "NVIDIA GeForce RTX 5090, 12.0, 32607")
    return json.loads(text.replace("10DE:2684", "10DE:2B85").replace("0x2684", "0x2b85"))


def test_rtx5090_on_ubuntu2404_with_the_distro_toolkit_is_refused_naming_the_nvidia_repo() -> None:
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host("cuda"), _rtx5090(raw("ubuntu2404-rtx4090-bare")))
    assert one_line(exc) == (
        "host box: llamafleet.llamacpp.cuda_repo: distro: Ubuntu 24.04's nvidia-cuda-toolkit (multiverse) installs "
        "nvcc 12.0, and nvcc 12.0 cannot compile for 120a (needs nvcc >= 12.8): set llamacpp.cuda_repo: nvidia "
        "(NVIDIA's repository (cuda-toolkit) installs nvcc 13.2)")
    cuda = plan_hostvars("box", host("cuda", cuda_repo="nvidia"), _rtx5090(raw("ubuntu2404-rtx4090-bare")))
    assert cuda.build("cuda").target.cuda_arch == ("120a",)
    assert cuda.build("cuda").target.toolchain.kind == "native"  # type: ignore[union-attr]


def test_the_nvidia_repository_opt_in() -> None:
    plan = plan_hostvars("box", host("cuda", cuda_repo="nvidia"), raw("debian13-rtx4090-bare"))
    build = plan.build("cuda")
    cuda = build.target.toolchain
    assert cuda is not None and (cuda.kind, cuda.nvcc, cuda.host_cxx) == ("native", "13.2", None)
    assert cuda.reasons[0].startswith("nvcc 13.2 from NVIDIA's repository (cuda-toolkit), installed by build_deps")
    assert dict(build.target.env) == {"CUDA_HOME": "/usr/local/cuda", "CUDACXX": "/usr/local/cuda/bin/nvcc"}
    assert build.target.path == ("/usr/local/cuda/bin",) and "-DCUDAToolkit_ROOT=/usr/local/cuda" in build.cmake_flags
    assert plan.distro is not None and plan.distro.packages[-1] == "cuda-toolkit"
    source = plan.distro.cuda_toolkit
    assert source is not None and (source.repo_url, source.repo_file) == (
        "https://developer.download.nvidia.com/compute/cuda/repos/debian13/x86_64/", "cuda-keyring_1.1-1_all.deb")


def _without_nvcc(name: str) -> dict[str, Any]:
    probe = raw(name)
    probe["nvcc"] = None
    return probe


def test_fedora_with_the_distro_default_gets_the_bundle_and_says_why() -> None:
    plan = plan_hostvars("box", host("cuda"), _without_nvcc("rtx4060-laptop-fedora43"))
    cuda = plan.build("cuda").target.toolchain
    assert cuda is not None and (cuda.kind, cuda.bundle_tag) == ("bundle", "cuda13")
    assert cuda.reasons == (
        "Fedora 43 packages no CUDA toolkit and no nvcc is known on the host (llamacpp.cuda_repo: nvidia installs "
        "NVIDIA's)",
        "the official CUDA 13 image's build can run here (glibc 2.42 >= 2.39, driver 580.95.5)",
    )
    assert plan.distro is not None and plan.distro.cuda_toolkit is None and plan.llamacpp.bundle_helper  # type: ignore[union-attr]
    repo = plan_hostvars("box", host("cuda", cuda_repo="nvidia"), _without_nvcc("rtx4060-laptop-fedora43"))
    assert repo.build("cuda").target.toolchain.kind == "patch"  # type: ignore[union-attr]  # nvcc 13.2, glibc 2.42
    assert repo.distro is not None and repo.distro.cuda_toolkit is not None
    assert repo.distro.cuda_toolkit.repo_file == "cuda-fedora43.repo"


def test_fedora_without_a_toolkit_whose_driver_no_image_takes_fails_clearly() -> None:
    probe = _without_nvcc("rtx4060-laptop-fedora43")
    probe["nvidia_smi"]["stdout"] = probe["nvidia_smi"]["stdout"].replace("580.95.05", "470.256.02")
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host("cuda"), probe)
    assert one_line(exc) == (
        "host box: llamafleet.llamacpp.backend: no way to get a CUDA build: Fedora 43 packages no CUDA toolkit and "
        "no nvcc is known on the host (llamacpp.cuda_repo: nvidia installs NVIDIA's); the NVIDIA driver 470.256.2 is "
        "too old for every official CUDA image (CUDA 13 needs >= 580, CUDA 12 needs >= 525.60.13)")


def test_the_nvidia_repository_has_nothing_for_arch() -> None:
    arch = host("cuda", cuda_repo="nvidia", distro={"name": "arch"}, gpus=["rtx-4090"])
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", arch)
    assert one_line(exc) == ("host box: llamafleet.llamacpp.cuda_repo: nvidia: NVIDIA's repository has no packages "
                             "for Arch Linux: Arch Linux's cuda (extra) is llamacpp.cuda_repo: distro")


def test_cuda_repo_on_a_host_without_cuda() -> None:
    with pytest.raises(SpecError) as exc:
        plan_hostvars("strix", host("vulkan", cuda_repo="distro"), raw("strix-halo"))
    assert one_line(exc) == "host strix: llamafleet.llamacpp.cuda_repo: only for a host that builds the cuda backend"


# -- HIP: the distributions' own is 5.x, llama.cpp's HIP backend needs ROCm >= 6.1 ---------------------------------
def _strix_on(distro_fixture: str, hipconfig: str | None) -> dict[str, Any]:
    probe = raw("strix-halo")
    probe["os_release"] = raw(distro_fixture)["os_release"]
    if hipconfig is None:
        probe["hipconfig"] = {"rocmpath": None, "version": None}
    else:
        probe["hipconfig"]["version"]["stdout"] = hipconfig
    return probe


def test_hip_on_debian13_is_refused_naming_its_hip_and_the_fix() -> None:
    with pytest.raises(SpecError) as exc:
        plan_hostvars("strix", host("vulkan", ("hip",)), _strix_on("debian13-container-bare", None))
    assert one_line(exc) == (
        "host strix: llamafleet.llamacpp.also_build: hip needs ROCm >= 6.1 (llama.cpp's HIP backend) and Debian 13's "
        "own HIP is 5.7.1 (hipcc); gfx1151 (Strix Halo) needs a much newer ROCm still: install ROCm >= 6.1 from "
        "AMD's repository (repo.radeon.com; llamafleet does not add it) and run again, or use backend vulkan")


def test_hip_with_the_hosts_own_new_rocm_on_debian13_builds_with_it() -> None:
    plan = plan_hostvars("strix", host("vulkan", ("hip",)), _strix_on("debian13-container-bare", "6.4.43484-9999"))
    assert dict(plan.build("hip").target.env) == {"ROCM_PATH": "/opt/rocm"}
    assert plan.distro is not None and "hipcc" not in plan.distro.packages  # AMD's ROCm is the user's
    with pytest.raises(SpecError) as exc:
        plan_hostvars("strix", host("hip"), _strix_on("debian13-container-bare", "5.7.31921-1949b1621"))
    assert one_line(exc) == (
        "host strix: llamafleet.llamacpp.backend: hip needs ROCm >= 6.1 (llama.cpp's HIP backend) and the host's "
        "hipconfig reports 5.7.31921: install ROCm >= 6.1 from AMD's repository (repo.radeon.com; llamafleet does "
        "not add it) and run again, or use backend vulkan")


@pytest.mark.parametrize(
    ("inventory_host", "fixture"),
    [("t1200-laptop", "t1200-igpu-laptop"), ("rtx4060-laptop", "rtx4060-laptop-fedora43"),
     ("rtx4090", "rtx4090-desktop"), ("strix-halo", "strix-halo")],
)
def test_example_hosts_render_with_their_fixture_like_without(inventory_host: str, fixture: str) -> None:
    """The declared example hosts agree with their recorded probe: the same units and build scripts."""
    from generators.inventory import host_vars

    hostvars = host_vars(Path(__file__).resolve().parents[2] / "inventories" / "example", inventory_host)
    declared = render_hostvars(inventory_host, hostvars, check_fit=False)
    probed = render_hostvars(inventory_host, hostvars, check_fit=False, probe=raw(fixture))
    same = {f.path: f.content for f in declared.files if f.path != "manifest.json"}
    other = {f.path: f.content for f in probed.files if f.path != "manifest.json"}
    assert set(same) == set(other)
    differing = [p for p in same if same[p] != other[p]]
    # only a cuda build script may differ: its toolchain plan now comes from the probe instead of "native"
    assert all(p.startswith("build/") or "build" in p for p in differing), differing


# -- bad facts: one line each --------------------------------------------------------------------------------
def test_declared_gpu_absent() -> None:
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host("cuda", gpus=["rtx-4090"]), raw("rtx4060-laptop-fedora43"))
    assert one_line(exc) == ("host box: llamafleet.gpus[0]: declared rtx-4090, detected rtx-4060-laptop "
                             "(10de:28e0, 8.0 GiB)")


def test_declared_vram_differs() -> None:
    custom = {"name": "rtx-4060-laptop", "vram_gb": 16}
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host("cuda", gpus=[custom]), raw("rtx4060-laptop-fedora43"))
    assert one_line(exc) == ("host box: llamafleet.gpus[0]: declared rtx-4060-laptop with 16 GB VRAM, "
                             "detected 8.0 GiB")


def test_declared_distro_differs() -> None:
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host("cuda", distro={"name": "fedora", "version": "44"}), raw("rtx4060-laptop-fedora43"))
    assert one_line(exc) == "host box: llamafleet.distro: declared fedora-44, detected fedora-43"


def test_cuda_without_a_working_nvidia_smi() -> None:
    probe = raw("rtx4060-laptop-fedora43")
    probe["nvidia_smi"] = {**probe["nvidia_smi"], "rc": 9, "stdout": "",
                           "stderr": "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."}
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host("cuda"), probe)
    line = one_line(exc)
    assert line.startswith("host box: llamafleet.llamacpp.backend: cuda needs the NVIDIA kernel driver: "
                           "nvidia-smi failed (exit 9: NVIDIA-SMI has failed"), line
    assert "reboot" in line and "akmod-nvidia" in line


def test_hip_without_kfd() -> None:
    probe = raw("strix-halo")
    probe["device_nodes"] = [n for n in probe["device_nodes"] if n["path"] != "/dev/kfd"]
    assert not parse_probe("strix", probe).kfd_present
    with pytest.raises(SpecError) as exc:
        plan_hostvars("strix", host("vulkan", ("hip",)), probe)
    line = one_line(exc)
    assert line.startswith("host strix: llamafleet.llamacpp.also_build: hip needs /dev/kfd, which this host lacks; ")
    assert "reboot" in line


def test_too_little_disk_for_the_builds() -> None:
    probe = raw("rtx4090-desktop")
    for entry in probe["disk"]:
        entry["free_bytes"] = BUILD_FREE_BYTES - 1
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host("cuda"), probe)
    assert one_line(exc) == ("host box: llamafleet.llamacpp: 1 build(s) need 5 GiB free under "
                             "/var/cache/llamafleet, the host has 5.0 GiB")


def test_undeclared_unknown_gpu_names_the_catalog() -> None:
    probe = copy.deepcopy(raw("rtx4090-desktop"))
    text = json.dumps(probe).replace("NVIDIA GeForce RTX 4090", "NVIDIA Quadro Z9").replace("10de:2684", "10de:ffff")
    text = text.replace("0x2684", "0xffff")
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host("cuda"), json.loads(text))
    assert one_line(exc).startswith("host box: llamafleet.gpus: detected NVIDIA Quadro Z9")


# -- a software Vulkan device (Mesa's lavapipe, the Vulkan test host's "GPU") ---------------------------------------
LAVAPIPE = {"name": "lavapipe", "vendor": "mesa", "unified": True, "vram_gb": 4, "bandwidth_gbs": 20}


def test_lavapipe_declared_on_a_bare_host_stands_until_the_device_check() -> None:
    """A bare Debian 13 host has no vulkaninfo yet (Mesa comes with the Vulkan packages): the declaration stands."""
    plan = plan_hostvars("box", host("vulkan", gpus=[LAVAPIPE]), raw("debian13-container-bare"))
    assert [g.key for g in plan.facts.gpus] == ["lavapipe"]


def test_lavapipe_takes_the_cpu_device_index_from_the_listing() -> None:
    plan = plan_hostvars("box", host("vulkan", gpus=[LAVAPIPE]), raw("debian13-container-vulkan"))
    [gpu] = plan.facts.gpus
    assert (gpu.key, gpu.vulkan_index) == ("lavapipe", 0)  # llvmpipe is GPU0 there (PHYSICAL_DEVICE_TYPE_CPU)


def test_lavapipe_declared_where_vulkaninfo_lists_no_cpu_device_fails() -> None:
    probe = raw("debian13-container-vulkan")
    text = json.dumps(probe).replace("PHYSICAL_DEVICE_TYPE_CPU", "PHYSICAL_DEVICE_TYPE_DISCRETE_GPU")
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", host("vulkan", gpus=[LAVAPIPE]), json.loads(text))
    assert one_line(exc).startswith("host box: llamafleet.gpus[0]: declared lavapipe (a software Vulkan device), "
                                    "vulkaninfo lists no CPU-type device: GPU0 llvmpipe")


# -- seed 003: an APU's GPU pool is what the kernel gives it (GTT + carve-out) ----------------------------------
def _gtt(probe: dict[str, Any], gib: int) -> dict[str, Any]:
    probe = copy.deepcopy(probe)
    (card,) = [c for c in probe["drm_cards"] if c.get("mem_info_gtt_total")]
    card["mem_info_gtt_total"] = f"{gib * 1024**3}\n"
    return probe


def test_strix_halo_undeclared_plans_against_the_kernels_pool() -> None:
    plan = plan_hostvars("strix", host("vulkan"), raw("strix-halo"))
    (gpu,) = plan.facts.gpus
    assert gpu.unified and gpu.vram_gb == 96.5  # GTT 96 GiB + the 512 MiB carve-out


def test_strix_halo_declared_96_gb_with_the_default_gtt_names_the_kernel_parameters() -> None:
    small = _gtt(raw("strix-halo"), 62)  # the kernel's default: half of the 124 GiB the OS sees
    with pytest.raises(SpecError) as exc:
        plan_hostvars("strix", host("vulkan", gpus=[{"name": "radeon-8060s", "vram_gb": 96}]), small)
    assert one_line(exc) == (
        "host strix: llamafleet.gpus[0]: declared radeon-8060s with a 96 GB GPU pool, the kernel gives it 62.5 GiB "
        "(GTT 62.0 GiB + carve-out 0.5 GiB): add amdgpu.gttsize=97792 ttm.pages_limit=25034752 "
        "ttm.page_pool_size=25034752 to the kernel command line and reboot, or declare the smaller vram_gb")


def test_strix_halo_declared_96_gb_with_the_seed_gtt_plans() -> None:
    plan = plan_hostvars("strix", host("vulkan", gpus=[{"name": "radeon-8060s", "vram_gb": 96}]), raw("strix-halo"))
    assert plan.facts.gpus[0].vram_gb == 96


def test_strix_halo_undeclared_the_planner_gets_the_kernels_pool() -> None:
    """The memory planner checks a launch against what the kernel gives today, not the catalog's 120 GB most."""
    for gib, pool in ((96, 96.5), (62, 62.5)):
        plan = plan_hostvars("strix", host("vulkan"), _gtt(raw("strix-halo"), gib))
        memory, _ = memory_for(plan, plan.servers[0], None, None)
        assert (memory.gpu_mib, memory.unified) == (int(pool * 1024), True)


# -- seed 001: persistence mode ------------------------------------------------------------------------------------
def test_seed001_persistence_mode_reaches_the_manifest() -> None:
    rendered = render_hostvars("rtx4090", host("cuda", nvidia_persistence=True), check_fit=False,
                               probe=raw("rtx4090-desktop"))
    assert rendered.manifest["nvidia_persistence"] is True
    assert render_hostvars("rtx4090", host("cuda"), check_fit=False,
                           probe=raw("rtx4090-desktop")).manifest["nvidia_persistence"] is False


def test_persistence_mode_on_a_host_without_an_nvidia_gpu() -> None:
    with pytest.raises(SpecError) as exc:
        plan_hostvars("strix", host("vulkan", nvidia_persistence=True), raw("strix-halo"))
    assert one_line(exc) == ("host strix: llamafleet.nvidia_persistence: needs an NVIDIA GPU "
                             "(this host has radeon-8060s)")
