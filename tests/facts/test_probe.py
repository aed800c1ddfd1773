"""The host probe's controller-side parser: exact facts from every recorded fixture, one clear line per bad fact."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from generators.errors import SpecError
from generators.facts.probe import (
    AltCompiler,
    DeviceNode,
    DiskSpace,
    Distro,
    ProbedFacts,
    ProbedGpu,
    ToolFailure,
    VulkanDevice,
    gfx_target,
    normalize_slot,
    parse_probe,
)

FIXTURES = Path(__file__).parent / "fixtures"
PROBE_SOURCE = Path(__file__).resolve().parents[2] / "generators" / "facts" / "probe.py"
GiB = 2**30
MiB = 2**20


def raw(host: str) -> dict[str, Any]:
    return json.loads((FIXTURES / host / "raw.json").read_text())


def facts(host: str) -> ProbedFacts:
    return parse_probe(host, raw(host))


def error_lines(host: str, data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_probe(host, data)
    return str(info.value).splitlines()


def test_every_fixture_parses():
    hosts = sorted(p.name for p in FIXTURES.iterdir() if (p / "raw.json").is_file())
    assert hosts == [
        "debian13-container-bare",
        "debian13-container-vulkan",
        "debian13-rtx4090-bare",  # derived: tests/support/bare_cuda_fixtures.py
        "localhost-debian12",
        "rtx4060-laptop-fedora43",
        "rtx4090-desktop",
        "strix-halo",
        "t1200-igpu-laptop",
        "ubuntu2404-rtx4090-bare",  # derived
    ]
    for host in hosts:
        assert facts(host).host == host


def test_rtx4090_desktop():
    f = facts("rtx4090-desktop")
    assert f.distro == Distro(
        id="ubuntu", version_id="24.04", like=("debian",), codename="noble", pretty_name="Ubuntu 24.04.3 LTS"
    )
    assert f.kernel == "6.14.0-33-generic"
    assert f.gpus == (
        ProbedGpu(
            vendor="nvidia",
            name="NVIDIA GeForce RTX 4090",
            pci_id="10de:2684",
            pci_slot="0000:01:00.0",
            subsystem_id="10de:167c",
            kernel_driver="nvidia",
            card="card1",
            render_node="renderD128",
            vram_bytes=24564 * MiB,
            gtt_bytes=None,
            unified=False,
            compute_capability="8.9",
            gfx_target=None,
            driver_version=Version("580.95.05"),
            nvidia_index=0,
        ),
    )
    assert round(f.gpus[0].vram_bytes / GiB) == 24
    assert [(d.index, d.type, d.name) for d in f.vulkan_devices] == [
        (0, "discrete", "NVIDIA GeForce RTX 4090"),
        (1, "cpu", "llvmpipe (LLVM 20.1.2, 256 bits)"),
    ]
    assert f.vulkan_index(f.gpus[0]) == 0
    tc = f.toolchain
    assert (tc.nvcc, tc.nvcc_path) == (Version("12.8.93"), "/usr/local/cuda/bin/nvcc")
    assert (tc.gcc, tc.gcc_major, tc.gxx_path) == (Version("13.3.0"), 13, "/usr/bin/g++")
    assert tc.alternates == ()  # gcc-13/g++-13 are the system compilers under their versioned names
    assert tc.glibc == Version("2.39")
    assert (tc.hip, tc.rocm_path) == (None, None)
    assert f.ram_bytes == 65755812 * 1024
    assert f.disk[0] == DiskSpace("/var/cache/llamafleet", "/var/cache", 812_345_974_784, 1_967_317_893_120)
    assert (f.disk[0].device, f.disk[1].gguf_files) == (None, None)  # recorded before the probe had them
    assert f.device_nodes == (DeviceNode("/dev/dri/renderD128", 993, "render", "0660"),)
    assert f.device_groups == ("render",)
    assert (f.kfd_present, f.uid_min, f.tool_failures, f.ignored_cards) == (False, 1000, (), ())


def test_t1200_laptop_igpu_is_vulkan0_and_the_t1200_vulkan1():
    f = facts("t1200-igpu-laptop")
    assert (f.distro.id, f.distro.version_id, f.distro.codename) == ("fedora", "44", None)
    assert f.kernel == "6.19.11-300.fc44.x86_64"
    igpu, t1200 = f.gpus
    assert igpu == ProbedGpu(
        vendor="intel",
        name="Intel(R) UHD Graphics (TGL GT1)",
        pci_id="8086:9a60",
        pci_slot="0000:00:02.0",
        subsystem_id="17aa:22d8",
        kernel_driver="i915",
        card="card1",
        render_node="renderD128",
        unified=True,
    )
    assert t1200 == ProbedGpu(
        vendor="nvidia",
        name="NVIDIA T1200 Laptop GPU",
        pci_id="10de:1fbc",
        pci_slot="0000:01:00.0",
        subsystem_id="17aa:22d8",
        kernel_driver="nvidia",
        card="card2",
        render_node="renderD129",
        vram_bytes=4 * GiB,
        compute_capability="7.5",
        driver_version=Version("580.105.08"),
        nvidia_index=0,
    )
    assert f.vulkan_devices == (
        VulkanDevice(0, "Intel(R) UHD Graphics (TGL GT1)", "integrated", "8086:9a60", "1.4.328",
                     "Intel open-source Mesa driver", "Mesa 25.3.4"),
        VulkanDevice(1, "NVIDIA T1200 Laptop GPU", "discrete", "10de:1fbc", "1.4.312", "NVIDIA", "580.105.08"),
        VulkanDevice(2, "llvmpipe (LLVM 21.1.8, 256 bits)", "cpu", None, "1.4.328", "llvmpipe",
                     "Mesa 25.3.4 (LLVM 21.1.8)"),
    )
    assert (f.vulkan_index(igpu), f.vulkan_index(t1200)) == (0, 1)
    tc = f.toolchain
    assert (tc.nvcc, tc.gcc, tc.gcc_major, tc.alternates, tc.glibc) == (
        Version("13.2.51"), Version("16.0.1"), 16, (), Version("2.43")
    )
    assert f.ram_bytes == 32509088 * 1024
    assert f.device_groups == ("render",)
    assert [n.path for n in f.device_nodes] == ["/dev/dri/renderD128", "/dev/dri/renderD129"]


def test_strix_halo_gfx1151_unified_with_its_gtt():
    f = facts("strix-halo")
    assert f.distro == Distro(id="arch", version_id=None, pretty_name="Arch Linux")
    assert f.kernel == "6.18.3-arch1-1"
    assert f.gpus == (
        ProbedGpu(
            vendor="amd",
            name="AMD Radeon 8060S Graphics (RADV GFX1151)",
            pci_id="1002:1586",
            pci_slot="0000:c5:00.0",
            subsystem_id="f111:000a",
            kernel_driver="amdgpu",
            card="card1",
            render_node="renderD128",
            vram_bytes=512 * MiB,
            gtt_bytes=96 * GiB,
            unified=True,
            gfx_target="gfx1151",
        ),
    )
    assert [(d.index, d.type) for d in f.vulkan_devices] == [(0, "integrated")]
    tc = f.toolchain
    assert (tc.nvcc, tc.gcc, tc.glibc, tc.hip, tc.rocm_path) == (
        None, Version("15.2.1"), Version("2.42"), Version("6.4.43484"), "/opt/rocm"
    )
    assert f.kfd_present
    assert f.device_nodes == (
        DeviceNode("/dev/dri/renderD128", 989, "render", "0660"),
        DeviceNode("/dev/kfd", 989, "render", "0660"),
    )
    assert f.device_groups == ("render",)
    assert f.ram_bytes == 131293340 * 1024
    assert f.free_bytes("/var/lib/llamafleet/models") == 1_612_800_000_000


def test_rtx4060_laptop_fedora43_without_vulkaninfo():
    f = facts("rtx4060-laptop-fedora43")
    assert (f.distro.id, f.distro.version_id) == ("fedora", "43")
    (gpu,) = f.gpus
    assert (gpu.name, gpu.pci_id, gpu.compute_capability, gpu.vram_bytes, gpu.unified) == (
        "NVIDIA GeForce RTX 4060 Laptop GPU", "10de:28e0", "8.9", 8188 * MiB, False
    )
    assert f.vulkan_devices == ()
    assert f.vulkan_index(gpu) is None
    tc = f.toolchain
    assert (tc.nvcc, tc.gcc_major, tc.glibc) == (Version("13.1.80"), 15, Version("2.42"))


def test_real_debian13_container_bare_and_with_lavapipe():
    bare = facts("debian13-container-bare")
    assert (bare.distro.id, bare.distro.version_id, bare.distro.codename) == ("debian", "13", "trixie")
    assert (bare.gpus, bare.vulkan_devices, bare.device_nodes) == ((), (), ())
    assert (bare.toolchain.gcc, bare.toolchain.nvcc, bare.toolchain.glibc) == (None, None, Version("2.41"))
    assert [d.checked for d in bare.disk] == ["/var/cache", "/var/lib"]
    vulkan = facts("debian13-container-vulkan")
    assert vulkan.vulkan_devices == (
        VulkanDevice(0, "llvmpipe (LLVM 19.1.7, 256 bits)", "cpu", None, "1.4.305", "llvmpipe",
                     "Mesa 25.0.7-2+deb13u1 (LLVM 19.1.7)"),
    )
    assert vulkan.toolchain.gcc == Version("14.2.0")
    assert vulkan.toolchain.alternates == (
        AltCompiler(major=13, version=Version("13.3.0"), cc="/usr/bin/gcc-13", cxx="/usr/bin/g++-13"),
    )


def test_real_localhost_debian12():
    f = facts("localhost-debian12")
    assert (f.distro.id, f.distro.version_id) == ("debian", "12")
    assert f.toolchain.nvcc == Version("13.0.88")
    assert f.toolchain.nvcc_path == "/usr/local/bin/nvcc"
    assert (f.toolchain.gcc, f.toolchain.alternates, f.toolchain.glibc) == (Version("12.2.0"), (), Version("2.36"))
    assert f.gpus == ()
    assert f.uid_min == 1000


# -- bad facts: one line each, naming the host and the fact ---------------------------------------------------
def test_truncated_nvidia_smi_line():
    data = raw("rtx4090-desktop")
    data["nvidia_smi"]["stdout"] = "0, NVIDIA GeForce RTX 4090, 8.9, 245\n"
    assert error_lines("rtx4090", data) == [
        "host rtx4090: facts.nvidia_smi: line 1 has 4 fields, expected 6 "
        "(index, name, compute_cap, memory.total, driver_version, pci.bus_id): '0, NVIDIA GeForce RTX 4090, 8.9, 245'"
    ]


def test_non_numeric_memory():
    data = raw("rtx4090-desktop")
    data["nvidia_smi"]["stdout"] = "0, NVIDIA GeForce RTX 4090, 8.9, 24564 MiB, 580.95.05, 00000000:01:00.0\n"
    assert error_lines("rtx4090", data) == [
        "host rtx4090: facts.nvidia_smi[0]: memory.total '24564 MiB' is not a number"
    ]
    data = raw("strix-halo")
    data["drm_cards"][0]["mem_info_gtt_total"] = "96G\n"
    assert error_lines("strix-halo", data) == [
        "host strix-halo: facts.drm_cards[card1].mem_info_gtt_total: mem_info_gtt_total '96G' is not a number"
    ]


def test_unknown_gfx_version():
    data = raw("strix-halo")
    data["kfd_nodes"][1]["properties"] = data["kfd_nodes"][1]["properties"].replace(
        "gfx_target_version 110501", "gfx_target_version 110599"
    )
    assert error_lines("strix-halo", data) == [
        "host strix-halo: facts.kfd_nodes[1].gfx_target_version: 110599 is not a known gfx target "
        "(major*10000 + minor*100 + stepping, minor and stepping 0-15)"
    ]


def test_every_bad_fact_is_reported_at_once():
    data = raw("t1200-igpu-laptop")
    data["nvidia_smi"]["stdout"] = "0, NVIDIA T1200 Laptop GPU, 7.5, lots, 580.105.08, 00000000:01:00.0\n"
    data["drm_cards"][0]["vendor"] = "intel\n"
    data["meminfo"] = "MemTotal: 32 GB\n"
    data["glibc"]["getconf"]["stdout"] = "2.43\n"
    assert error_lines("t1200", data) == [
        "host t1200: facts.nvidia_smi[0]: memory.total 'lots' is not a number",
        "host t1200: facts.drm_cards[card1]: vendor 'intel' is not a PCI id (0xNNNN)",
        "host t1200: facts.glibc.getconf: expected 'glibc X.Y', got '2.43'",
        "host t1200: facts.meminfo: expected 'MemTotal: N kB', got 'MemTotal: 32 GB'",
    ]


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (lambda d: d.update(os_release=None), "facts.os_release: /etc/os-release is missing or empty"),
        (lambda d: d.update(os_release="NAME=Arch\n"), "facts.os_release: has no ID= line"),
        (
            lambda d: d["nvidia_smi"].update(stdout="0, NVIDIA GeForce RTX 4090, 8.9, 24564, 580.95.05, 01-00\n"),
            "facts.nvidia_smi[0]: pci.bus_id '01-00' is not a PCI address",
        ),
        (
            lambda d: d["nvidia_smi"].update(stdout="0, NVIDIA GeForce RTX 4090, eight, 24564, 580.95.05, 01:00.0\n"),
            "facts.nvidia_smi[0]: compute_cap 'eight' is not MAJOR.MINOR",
        ),
        (
            lambda d: d["nvcc"].update(stdout="nvcc: NVIDIA (R) Cuda compiler driver\n"),
            "facts.nvcc: no 'release X.Y, VX.Y.Z' line in nvcc --version: 'nvcc: NVIDIA (R) Cuda compiler driver'",
        ),
        (
            lambda d: d["compilers"][0]["version"].update(stdout="thirteen\n"),
            "facts.compilers[/usr/bin/gcc]: 'thirteen' is not a version",
        ),
        (
            lambda d: d["vulkaninfo"].update(stdout="VULKANINFO\n"),
            "facts.vulkaninfo: the output has no 'Devices:' section",
        ),
        (
            lambda d: d["vulkaninfo"].update(
                stdout=d["vulkaninfo"]["stdout"].replace("PHYSICAL_DEVICE_TYPE_CPU", "PHYSICAL_DEVICE_TYPE_TOASTER")
            ),
            "facts.vulkaninfo.GPU1: deviceType 'PHYSICAL_DEVICE_TYPE_TOASTER' is not a Vulkan device type",
        ),
        (
            lambda d: d.update(login_defs="UID_MIN one-thousand\n"),
            "facts.login_defs: UID_MIN 'one-thousand' is not a number",
        ),
        (
            lambda d: d["disk"][0].update(free_bytes="plenty"),
            "facts.disk[/var/cache/llamafleet]: free_bytes 'plenty' / total_bytes 1967317893120 are not byte counts",
        ),
        (
            lambda d: d["disk"][0].update(device="sda1"),
            "facts.disk[/var/cache/llamafleet]: device 'sda1' is not a device number",
        ),
        (
            lambda d: d["disk"][1].update(gguf_files={"a.gguf": -1}),
            "facts.disk[/var/lib/llamafleet/models]: gguf_files \"{'a.gguf': -1}\" is not a mapping of file names "
            "to byte counts",
        ),
        (
            lambda d: d["disk"][1].update(gguf_files=["a.gguf"]),
            "facts.disk[/var/lib/llamafleet/models]: gguf_files \"['a.gguf']\" is not a mapping of file names "
            "to byte counts",
        ),
        (lambda d: d.update(drm_cards="card1"), "facts.drm_cards: expected a list, got 'card1'"),
    ],
)
def test_one_clear_line_per_malformed_fact(change, line):
    data = raw("rtx4090-desktop")
    change(data)
    assert error_lines("rtx4090", data) == [f"host rtx4090: {line}"]


def test_not_a_probe_result_and_a_probe_of_another_version():
    assert error_lines("h", ["not", "a", "mapping"]) == [
        "host h: facts: expected the probe's raw result (a mapping), got \"['not', 'a', 'mapping']\""
    ]
    data = raw("rtx4090-desktop")
    data["probe_version"] = 2
    assert error_lines("h", data) == ["host h: facts: probe_version 2, this parser reads 1"]


# -- present but failing tools are facts, not parse errors --------------------------------------------------
def test_nvidia_smi_without_its_driver_is_a_tool_failure():
    data = raw("rtx4090-desktop")
    data["nvidia_smi"].update(
        rc=9,
        stdout="NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running.\n\n",
    )
    f = parse_probe("rtx4090", data)
    assert f.tool_failures == (
        ToolFailure(
            "nvidia-smi",
            "/usr/bin/nvidia-smi",
            "exit 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
            "Make sure that the latest NVIDIA driver is installed and running.",
        ),
    )
    # the card is still seen in sysfs, without what only nvidia-smi knows
    (gpu,) = f.gpus
    assert (gpu.vendor, gpu.pci_id, gpu.vram_bytes, gpu.compute_capability) == ("nvidia", "10de:2684", None, None)


def test_vulkaninfo_without_a_driver_and_a_timed_out_tool():
    data = raw("debian13-container-vulkan")
    data["vulkaninfo"].update(
        rc=1, stdout="", stderr="ERROR: [Loader Message] Code 0 : vkCreateInstance: Found no drivers!\n"
    )
    data["nvcc"] = {"argv": ["/usr/local/cuda/bin/nvcc", "--version"], "rc": None, "stdout": "", "stderr": "",
                    "timed_out": True}
    f = parse_probe("deb13", data)
    assert f.vulkan_devices == ()
    assert f.toolchain.nvcc is None
    assert f.tool_failures == (
        ToolFailure("vulkaninfo", "/usr/bin/vulkaninfo",
                    "exit 1: ERROR: [Loader Message] Code 0 : vkCreateInstance: Found no drivers!"),
        ToolFailure("nvcc", "/usr/local/cuda/bin/nvcc", "timed out"),
    )


def test_nvidia_gpu_without_a_drm_card_and_a_virtual_display_adapter():
    data = raw("rtx4090-desktop")
    data["drm_cards"] = [
        {**data["drm_cards"][0], "card": "card0", "vendor": "0x1234\n", "device": "0x1111\n", "driver": "bochs-drm",
         "slot": "0000:00:01.0", "uevent": "DRIVER=bochs-drm\nPCI_SLOT_NAME=0000:00:01.0\n"},
        {"card": "card1", "slot": "simple-framebuffer.0", "driver": "simple-framebuffer", "vendor": None},
    ]
    f = parse_probe("rtx4090", data)
    assert f.ignored_cards == ("card0 1234:1111 (bochs-drm)", "card1 simple-framebuffer.0 (simple-framebuffer)")
    (gpu,) = f.gpus
    assert (gpu.vendor, gpu.name, gpu.pci_id, gpu.pci_slot, gpu.vram_bytes) == (
        "nvidia", "NVIDIA GeForce RTX 4090", None, "0000:01:00.0", 24564 * MiB
    )


def test_amd_gpu_without_vulkaninfo_is_unified_by_its_apu_gfx_target():
    data = raw("strix-halo")
    data["vulkaninfo"] = None
    (gpu,) = parse_probe("strix-halo", data).gpus
    assert (gpu.name, gpu.gfx_target, gpu.unified, gpu.gtt_bytes) == (None, "gfx1151", True, 96 * GiB)
    dgpu = copy.deepcopy(raw("strix-halo"))
    dgpu["vulkaninfo"] = None
    dgpu["kfd_nodes"][1]["properties"] = dgpu["kfd_nodes"][1]["properties"].replace("110501", "110000")
    (gpu,) = parse_probe("rx7900", dgpu).gpus
    assert (gpu.gfx_target, gpu.unified) == ("gfx1100", False)


def test_gfx_target_rule():
    assert gfx_target(110501) == "gfx1151"
    assert gfx_target(90010) == "gfx90a"
    assert gfx_target(90012) == "gfx90c"
    assert gfx_target(100300) == "gfx1030"
    assert gfx_target(90402) == "gfx942"
    assert gfx_target(120001) == "gfx1201"
    assert gfx_target(110599) is None
    assert gfx_target(111600) is None


def test_normalize_slot():
    assert normalize_slot("00000000:01:00.0") == "0000:01:00.0"
    assert normalize_slot("0000:C5:00.0") == "0000:c5:00.0"
    assert normalize_slot("01:00.0") == "0000:01:00.0"
    assert normalize_slot("simple-framebuffer.0") is None


def test_parser_imports_only_errors_from_generators():
    tree = ast.parse(PROBE_SOURCE.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert {m for m in imported if m.split(".")[0] == "generators"} == {"generators.errors"}
    assert {m.split(".")[0] for m in imported} <= {
        "__future__", "re", "collections", "dataclasses", "typing", "packaging", "generators"
    }


def test_disk_device_and_the_models_already_there():
    """A probe with the device numbers and the models dir's *.gguf listing: the filesystem and the sizes by name."""
    data = raw("rtx4090-desktop")
    data["disk"][0].update(device=2049)
    data["disk"][1].update(checked="/var/lib/llamafleet/models", device=2049,
                           gguf_files={"b.gguf": 5, "a.gguf": 2_000_000_000})
    cache, models = parse_probe("rtx4090", data).disk
    assert (cache.device, cache.gguf_files) == (2049, None)
    assert models == DiskSpace("/var/lib/llamafleet/models", "/var/lib/llamafleet/models", 812_345_974_784,
                               1_967_317_893_120, 2049, (("a.gguf", 2_000_000_000), ("b.gguf", 5)))
    assert (models.gguf_size("a.gguf"), models.gguf_size("c.gguf")) == (2_000_000_000, None)
    assert parse_probe("rtx4090", data).disk_entry("/var/lib/llamafleet/models") == models
