"""Where the CUDA toolkit and ROCm come from (generators/plan/toolkits.py): the inventory alone, declared versions,
a wrapper nvcc, and the derived bare-host probe fixtures. The seed hosts' probes are in test_plan_from_probe.py."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from bare_cuda_fixtures import FIXTURES, derived, text
from hostsupport import parse_tweaked, plan_of

from generators.errors import SpecError
from generators.pipeline import plan_hostvars

GIT = {"git": {"url": "https://github.com/ggml-org/llama.cpp.git", "ref": "b11434"}}


def described(distro: dict[str, str], gpu: str = "rtx-4090", backend: str = "cuda", **cpp: Any) -> dict[str, Any]:
    """A host known only from its inventory (no probe)."""
    return {"llamafleet": {"user": "dev", "distro": distro, "gpus": [gpu],
                           "llamacpp": {"build": 11434, "backend": backend, "source": GIT, **cpp},
                           "models": [{"name": "m", "path": "/home/dev/models/m.gguf"}],
                           "servers": [{"name": "main", "model": "m"}]}}


def test_the_derived_fixtures_are_up_to_date() -> None:
    for name, probe in derived().items():
        path = FIXTURES / name / "raw.json"
        if os.environ.get("UPDATE_FIXTURES") == "1":
            path.write_text(text(probe))
        assert path.read_text() == text(probe), f"{path}: UPDATE_FIXTURES=1 and review"
        assert probe["nvcc"] is None and probe["nvidia_smi"]["rc"] == 0


@pytest.mark.parametrize(
    ("distro", "kind", "nvcc", "cxx"),
    [({"name": "debian", "version": "13"}, "alt-gcc+patch", "12.4", "/usr/bin/g++-13"),
     ({"name": "debian", "version": "12"}, "alt-gcc", "11.8", "/usr/bin/g++-11"),
     ({"name": "ubuntu", "version": "24.04"}, "alt-gcc", "12.0", "/usr/bin/g++-12")],
)
def test_no_probe_yet_plans_from_the_releases_facts(distro: dict[str, str], kind: str, nvcc: str, cxx: str) -> None:
    plan = plan_hostvars("box", described(distro))
    cuda = plan.build("cuda").target.toolchain
    assert cuda is not None and (cuda.kind, cuda.nvcc, cuda.host_cxx) == (kind, nvcc, cxx)
    assert cuda.reasons[0].startswith("no host probe yet: planned for ")
    assert plan.distro is not None and plan.distro.packages[-1] == "nvidia-cuda-toolkit"


def test_declared_versions_without_nvcc_plan_for_the_package() -> None:
    """``cuda_toolchain`` stands in for the probe: no nvcc there is a host without one, like a bare probe."""
    plan = plan_hostvars("box", described({"name": "ubuntu", "version": "24.04"},
                                          cuda_toolchain={"gcc": "13.3", "glibc": "2.39", "driver": "580.95"}))
    cuda = plan.build("cuda").target.toolchain
    assert cuda is not None and (cuda.kind, cuda.host_cxx) == ("alt-gcc", "/usr/bin/g++-12")
    declared = plan_hostvars("box", described({"name": "ubuntu", "version": "24.04"},
                                              cuda_toolchain={"nvcc": "12.8", "gcc": "13.3", "glibc": "2.39"}))
    assert declared.build("cuda").target.toolchain.kind == "native"  # type: ignore[union-attr]
    assert declared.distro is not None and declared.distro.cuda_toolkit is None  # the host has its toolkit


def test_a_wrapper_nvcc_is_asked_for_its_root() -> None:
    """An nvcc that is no known toolkit's (localhost-debian12's /usr/local/bin/nvcc, a script): CUDACXX names it
    and CMake asks it for the toolkit root; no CUDAToolkit_ROOT is guessed."""
    probe = json.loads((FIXTURES / "localhost-debian12" / "raw.json").read_text())
    probe.update({k: derived()["ubuntu2404-rtx4090-bare"][k] for k in ("nvidia_smi", "drm_cards", "device_nodes")})
    build = plan_hostvars("box", described({"name": "debian", "version": "12"}), probe).build("cuda")
    assert dict(build.target.env) == {"CUDACXX": "/usr/local/bin/nvcc"} and build.target.path == ("/usr/local/bin",)
    assert not any(f.startswith("-DCUDAToolkit_ROOT") for f in build.cmake_flags)


def test_a_patch_plan_on_nvidias_layout_gives_its_private_root_once() -> None:
    plan = plan_of(parse_tweaked("rtx4060-laptop", {}))  # Fedora 43 with NVIDIA's repository: the rsqrt patch
    build = plan.build("cuda")
    assert build.target.toolchain is not None and build.target.toolchain.kind == "patch"
    assert not any(f.startswith("-DCUDAToolkit_ROOT") for f in build.cmake_flags)  # the script's private root


def test_hip_on_ubuntu_without_a_probe_is_refused() -> None:
    with pytest.raises(SpecError) as exc:
        plan_hostvars("box", described({"name": "ubuntu", "version": "24.04"}, gpu="rx-7900-xtx", backend="hip"))
    assert str(exc.value).strip() == (
        "host box: llamafleet.llamacpp.backend: hip needs ROCm >= 6.1 (llama.cpp's HIP backend) and Ubuntu 24.04's "
        "own HIP is 5.7.1 (hipcc): install ROCm >= 6.1 from AMD's repository (repo.radeon.com; llamafleet does not "
        "add it) and run again, or use backend vulkan")


def test_hip_on_fedora_and_arch_still_installs_their_rocm() -> None:
    for distro, packages in (({"name": "fedora", "version": "43"}, "rocm-hip-devel"),
                             ({"name": "arch"}, "rocm-hip-sdk")):
        plan = plan_hostvars("box", described(distro, gpu="rx-7900-xtx", backend="hip"))
        assert plan.distro is not None and packages in plan.distro.packages
