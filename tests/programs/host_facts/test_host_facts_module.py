"""The host probe module: its readers against a fake sysfs/command root, its imports, and real Ansible runs on this
machine (read-only, so also in check mode)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from generators.facts.probe import AltCompiler, DeviceNode, DiskSpace, ProbedGpu, ToolFailure, parse_probe

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "host_facts"
MODULE_PATH = ROLE / "library" / "llamafleet_host_facts.py"
GiB = 2**30
MiB = 2**20


def load_module():
    spec = importlib.util.spec_from_file_location("llamafleet_host_facts", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


hf = load_module()


def write(path: Path, text: str, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)


def tool(root: Path, path: str, script: str) -> None:
    """A stand-in executable that prints what the real tool prints."""
    write(root / path.lstrip("/"), "#!/bin/sh\n" + script + "\n", 0o755)


KFD_GPU = "cpu_cores_count 0\nsimd_count 80\ngfx_target_version 110501\nvendor_id 4098\ndevice_id 5510\n" \
          "location_id 50432\ndomain 0\ndrm_render_minor 128\n"
VULKANINFO = """==========
VULKANINFO
==========

Vulkan Instance Version: 1.4.335

Devices:
========
GPU0:
\tapiVersion         = 1.4.335
\tvendorID           = 0x1002
\tdeviceID           = 0x1586
\tdeviceType         = PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU
\tdeviceName         = AMD Radeon 8060S Graphics (RADV GFX1151)
\tdriverName         = radv
\tdriverInfo         = Mesa 25.3.3-arch1.1
"""


def strix_root(root: Path) -> None:
    """An Arch Strix Halo host as files: sysfs with the PCI device behind its DRM card, KFD topology, /dev nodes,
    tools as scripts (gcc 15 system, gcc-14/g++-14 and Fedora-style gcc13-gcc/gcc13-g++ alternates)."""
    write(root / "etc/os-release", 'NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n')
    write(root / "proc/meminfo", "MemTotal:       131293340 kB\nMemFree:        100 kB\n")
    write(root / "etc/login.defs", "# comment\nSUB_UID_MIN 100000\nUID_MIN                  1000\nUID_MAX 60000\n")
    pci = root / "sys/devices/pci0000:00/0000:00:08.1/0000:c5:00.0"
    for name, text in {
        "vendor": "0x1002\n", "device": "0x1586\n", "subsystem_vendor": "0xf111\n", "subsystem_device": "0x000a\n",
        "class": "0x038000\n", "mem_info_vram_total": "536870912\n", "mem_info_gtt_total": "103079215104\n",
        "uevent": "DRIVER=amdgpu\nPCI_SLOT_NAME=0000:c5:00.0\n",
    }.items():
        write(pci / name, text)
    (pci / "drm/renderD128").mkdir(parents=True)
    (pci / "drm/card1").mkdir(parents=True)
    drivers = root / "sys/bus/pci/drivers/amdgpu"
    drivers.mkdir(parents=True)
    os.symlink(os.path.relpath(drivers, pci), pci / "driver")
    drm = root / "sys/class/drm"
    drm.mkdir(parents=True)
    (drm / "card1").mkdir()
    os.symlink(os.path.relpath(pci, drm / "card1"), drm / "card1" / "device")
    (drm / "card1-eDP-1").mkdir()  # a connector: not a card
    (drm / "renderD128").mkdir()
    platform_fb = root / "sys/devices/platform/simple-framebuffer.0"
    platform_fb.mkdir(parents=True)
    (drm / "card0").mkdir()
    os.symlink(os.path.relpath(platform_fb, drm / "card0"), drm / "card0" / "device")
    nodes = root / "sys/class/kfd/kfd/topology/nodes"
    write(nodes / "0/properties", "cpu_cores_count 32\nsimd_count 0\ngfx_target_version 0\n")
    write(nodes / "1/properties", KFD_GPU)
    write(root / "dev/dri/renderD128", "")
    write(root / "dev/kfd", "")
    tool(root, "/usr/bin/uname", 'echo 6.18.3-arch1-1')
    tool(root, "/usr/bin/vulkaninfo", f"cat <<'EOF'\n{VULKANINFO}EOF\necho \"'DISPLAY' not set\" >&2")
    tool(root, "/usr/bin/gcc", "echo 15.2.1")
    tool(root, "/usr/bin/g++", "echo 15.2.1")
    tool(root, "/usr/bin/gcc-14", "echo 14.3.1")
    tool(root, "/usr/bin/g++-14", "echo 14.3.1")
    tool(root, "/usr/bin/gcc13-gcc", "echo 13.4.0")
    tool(root, "/usr/bin/gcc13-g++", "echo 13.4.0")
    tool(root, "/usr/bin/gcc-ar-14", "echo not a compiler")
    write(root / "usr/bin/gcc-12", "not executable")  # a leftover file, not a tool
    tool(root, "/usr/bin/getconf", 'echo "glibc 2.42"')
    tool(root, "/opt/rocm/bin/hipconfig",
         'case "$1" in --version) printf 6.4.43484-9999;; --rocmpath) printf /opt/rocm;; esac')
    # nvidia-smi installed without its kernel module, and an nvcc that hangs
    tool(root, "/usr/bin/nvidia-smi",
         "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"; exit 9")
    tool(root, "/usr/local/cuda/bin/nvcc", "exec sleep 30")
    (root / "var/cache").mkdir(parents=True)


def gather(root: Path, timeout: float = 5) -> dict:
    probe = hf.Probe(
        root=str(root),
        group_name={os.getgid(): "render"}.get,
        timeout=timeout,
        path_env="/usr/local/bin:/usr/bin:/bin",
    )
    return probe.gather(["/var/cache/llamafleet", "/var/lib/llamafleet/models"])


def test_module_reads_a_fake_host_root(tmp_path):
    strix_root(tmp_path)
    raw = gather(tmp_path, timeout=2)
    # raw record shapes: host paths (not the fake root), text as the files hold it
    assert raw["probe_version"] == 1
    assert raw["os_release"].startswith('NAME="Arch Linux"')
    assert raw["meminfo"] == "MemTotal:       131293340 kB\n"
    assert raw["login_defs"] == "UID_MIN                  1000\n"
    (card,) = [c for c in raw["drm_cards"] if c["card"] == "card1"]
    assert {k: card[k] for k in ("slot", "driver", "vendor", "mem_info_gtt_total", "render_node")} == {
        "slot": "0000:c5:00.0", "driver": "amdgpu", "vendor": "0x1002\n", "mem_info_gtt_total": "103079215104\n",
        "render_node": "renderD128",
    }
    assert [c["card"] for c in raw["drm_cards"]] == ["card0", "card1"]
    assert raw["drm_cards"][0]["vendor"] is None
    assert [n["node"] for n in raw["kfd_nodes"]] == ["0", "1"]
    assert raw["uname_r"] == {"argv": ["/usr/bin/uname", "-r"], "rc": 0, "stdout": "6.18.3-arch1-1\n", "stderr": "",
                              "timed_out": False}
    assert raw["hipconfig"]["version"]["argv"] == ["/opt/rocm/bin/hipconfig", "--version"]
    assert raw["nvcc"]["argv"] == ["/usr/local/cuda/bin/nvcc", "--version"]
    assert raw["nvcc"]["timed_out"] is True
    assert raw["glibc"]["ldd"] is None  # getconf answered
    assert [c["path"] for c in raw["compilers"]] == [
        "/usr/bin/gcc", "/usr/bin/g++", "/usr/bin/g++-14", "/usr/bin/gcc-14", "/usr/bin/gcc13-g++",
        "/usr/bin/gcc13-gcc",
    ]
    assert [(d["path"], d["checked"]) for d in raw["disk"]] == [
        ("/var/cache/llamafleet", "/var/cache"), ("/var/lib/llamafleet/models", "/var")
    ]
    assert [(n["path"], n["group"]) for n in raw["device_nodes"]] == [
        ("/dev/dri/renderD128", "render"), ("/dev/kfd", "render")
    ]
    json.dumps(raw)  # what Ansible returns must serialize

    facts = parse_probe("strix-halo", raw)
    assert facts.gpus == (
        ProbedGpu(
            vendor="amd", name="AMD Radeon 8060S Graphics (RADV GFX1151)", pci_id="1002:1586",
            pci_slot="0000:c5:00.0", subsystem_id="f111:000a", kernel_driver="amdgpu", card="card1",
            render_node="renderD128", vram_bytes=512 * MiB, gtt_bytes=96 * GiB, unified=True, gfx_target="gfx1151",
        ),
    )
    assert facts.ignored_cards == ("card0 simple-framebuffer.0 (no driver)",)
    assert facts.kernel == "6.18.3-arch1-1"
    assert facts.toolchain.gcc == Version("15.2.1")
    assert facts.toolchain.alternates == (
        AltCompiler(major=13, version=Version("13.4.0"), cc="/usr/bin/gcc13-gcc", cxx="/usr/bin/gcc13-g++"),
        AltCompiler(major=14, version=Version("14.3.1"), cc="/usr/bin/gcc-14", cxx="/usr/bin/g++-14"),
    )
    assert (facts.toolchain.glibc, facts.toolchain.hip, facts.toolchain.rocm_path) == (
        Version("2.42"), Version("6.4.43484"), "/opt/rocm"
    )
    assert facts.toolchain.nvcc is None
    assert facts.tool_failures == (
        ToolFailure("nvidia-smi", "/usr/bin/nvidia-smi",
                    "exit 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."),
        ToolFailure("nvcc", "/usr/local/cuda/bin/nvcc", "timed out"),
    )
    assert facts.kfd_present
    assert facts.device_nodes[1] == DeviceNode("/dev/kfd", os.getgid(), "render", format(
        os.stat(tmp_path / "dev/kfd").st_mode & 0o7777, "04o"))
    assert facts.uid_min == 1000
    assert facts.ram_bytes == 131293340 * 1024
    free = os.statvfs(tmp_path / "var").f_bavail * os.statvfs(tmp_path / "var").f_frsize
    assert facts.disk[1].checked == "/var" and facts.disk[1].free_bytes > 0
    assert abs(facts.disk[1].free_bytes - free) < 1 * GiB  # same filesystem, read moments apart


def test_missing_tools_and_files_are_null_never_a_failure(tmp_path):
    (tmp_path / "etc").mkdir()
    raw = gather(tmp_path)
    assert raw == {
        "probe_version": 1,
        "os_release": None,
        "uname_r": None,
        "nvidia_smi": None,
        "drm_cards": [],
        "kfd_nodes": [],
        "vulkaninfo": None,
        "nvcc": None,
        "compilers": [],
        "glibc": {"getconf": None, "ldd": None},
        "hipconfig": {"version": None, "rocmpath": None},
        "meminfo": None,
        "disk": [
            {"path": "/var/cache/llamafleet", "checked": "/", "free_bytes": raw["disk"][0]["free_bytes"],
             "total_bytes": raw["disk"][0]["total_bytes"], "device": os.stat(tmp_path).st_dev},
            {"path": "/var/lib/llamafleet/models", "checked": "/", "free_bytes": raw["disk"][1]["free_bytes"],
             "total_bytes": raw["disk"][1]["total_bytes"], "device": os.stat(tmp_path).st_dev},
        ],
        "device_nodes": [],
        "login_defs": None,
    }


def test_glibc_falls_back_to_ldd_when_getconf_fails(tmp_path):
    tool(tmp_path, "/usr/bin/getconf", 'echo "getconf: Unrecognized variable" >&2; exit 1')
    tool(tmp_path, "/usr/bin/ldd", 'echo "ldd (GNU libc) 2.43"')
    write(tmp_path / "etc/os-release", "ID=fedora\nVERSION_ID=44\n")
    raw = gather(tmp_path)
    assert raw["glibc"]["ldd"]["stdout"] == "ldd (GNU libc) 2.43\n"
    facts = parse_probe("h", raw)
    assert facts.toolchain.glibc == Version("2.43")


def test_a_command_runner_can_stand_in_for_every_tool(tmp_path):
    """The readers take a runner: argv in, a result record out (here canned nvidia-smi output)."""
    tool(tmp_path, "/usr/bin/nvidia-smi", "exit 99")  # present; the runner answers instead of running it
    write(tmp_path / "etc/os-release", "ID=ubuntu\nVERSION_ID=24.04\n")
    seen = []

    def runner(argv, timeout):
        seen.append((argv, timeout))
        out = "0, NVIDIA GeForce RTX 4090, 8.9, 24564, 580.95.05, 00000000:01:00.0\n"
        return {"argv": argv, "rc": 0, "stdout": out, "stderr": "", "timed_out": False}

    probe = hf.Probe(root=str(tmp_path), run=runner, timeout=7, path_env="/usr/bin")
    raw = probe.gather(["/var/lib/llamafleet/models"])
    assert seen == [([str(tmp_path / "usr/bin/nvidia-smi"), f"--query-gpu={hf.NVIDIA_SMI_QUERY}",
                      "--format=csv,noheader,nounits"], 7)]
    (gpu,) = parse_probe("rtx4090", raw).gpus
    assert (gpu.name, gpu.vram_bytes, gpu.compute_capability) == ("NVIDIA GeForce RTX 4090", 24564 * MiB, "8.9")
    assert raw["disk"] == [{"path": "/var/lib/llamafleet/models", "checked": "/",
                            "free_bytes": raw["disk"][0]["free_bytes"], "total_bytes": raw["disk"][0]["total_bytes"],
                            "device": os.stat(tmp_path).st_dev}]


def test_disk_lists_the_models_already_in_an_existing_directory(tmp_path):
    """A real directory: the regular *.gguf files directly in it with their sizes; a symlink, a hidden partial
    download, a subdirectory's file and other files are not models that are there. An absent path: no listing."""
    models = tmp_path / "var/lib/llamafleet/models"
    models.mkdir(parents=True)
    (models / "a.gguf").write_bytes(b"x" * 1000)
    (models / "b-00001-of-00002.gguf").write_bytes(b"")
    (models / ".a.gguf.verified.json").write_text("{}")
    (models / ".c.gguf").write_bytes(b"x" * 7)
    (models / ".c.gguf.abc.part").write_bytes(b"x" * 7)
    (models / "notes.txt").write_text("not a model")
    (models / "link.gguf").symlink_to(models / "a.gguf")
    (models / "sub").mkdir()
    (models / "sub" / "deep.gguf").write_bytes(b"x")
    write(tmp_path / "etc/os-release", "ID=debian\nVERSION_ID=13\n")
    probe = hf.Probe(root=str(tmp_path))
    cache, listed = probe.disk(["/var/cache/llamafleet", "/var/lib/llamafleet/models/"])
    assert (cache["checked"], "gguf_files" in cache) == ("/var", False)  # measured at its parent: nothing listed
    assert listed["checked"] == "/var/lib/llamafleet/models"
    assert listed["gguf_files"] == {"a.gguf": 1000, "b-00001-of-00002.gguf": 0}
    assert listed["device"] == cache["device"] == os.stat(models).st_dev
    json.dumps(listed)

    (disk_cache, disk_models) = parse_probe("h", {**gather(tmp_path), "disk": [cache, listed]}).disk
    assert disk_models.gguf_files == (("a.gguf", 1000), ("b-00001-of-00002.gguf", 0))
    assert (disk_models.gguf_size("a.gguf"), disk_models.gguf_size("link.gguf")) == (1000, None)
    assert (disk_cache.device, disk_cache.gguf_files) == (os.stat(models).st_dev, None)


def _unlistable_models_dir(tmp_path: Path) -> dict:
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.gguf").write_bytes(b"x")
    models.chmod(0)
    try:
        (entry,) = hf.Probe(root=str(tmp_path)).disk(["/models"])
    finally:
        models.chmod(0o750)
    return entry


def _assert_unlisted(tmp_path: Path, entry: dict) -> None:
    assert "gguf_files" not in entry and "Permission denied" in entry["gguf_error"]
    assert entry["free_bytes"] > 0 and entry["device"] == os.stat(tmp_path / "models").st_dev
    write(tmp_path / "etc/os-release", "ID=debian\nVERSION_ID=13\n")
    (parsed,) = parse_probe("h", {**gather(tmp_path), "disk": [entry]}).disk
    assert parsed.gguf_files is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a 0000 directory anyway (the test below stands in)")
def test_disk_reports_a_models_directory_it_cannot_list(tmp_path):
    """The service user's 0750 models dir, probed as another user: free space yes, listing no (and says why)."""
    _assert_unlisted(tmp_path, _unlistable_models_dir(tmp_path))


def test_disk_reports_a_models_directory_it_cannot_list_even_as_root(tmp_path, monkeypatch):
    """The same with the listing refused the way the kernel refuses it, for a root test run."""
    def refuse(local):
        raise PermissionError(13, "Permission denied", local)

    monkeypatch.setattr(hf.Probe, "gguf_files", staticmethod(refuse))
    _assert_unlisted(tmp_path, _unlistable_models_dir(tmp_path))


def test_module_imports_nothing_from_generators():
    tree = ast.parse(MODULE_PATH.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    tops = {m.split(".")[0] for m in imported}
    assert "generators" not in tops
    assert tops <= {"__future__", "glob", "grp", "os", "re", "subprocess", "dataclasses", "typing", "ansible"}
    assert {m for m in imported if m.startswith("ansible")} == {"ansible.module_utils.basic"}


def ansible_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    }


@pytest.mark.integration  # an ansible run
def test_real_ansible_run_on_this_machine_in_check_mode(tmp_path):
    ansible = Path(sys.executable).with_name("ansible")
    result = subprocess.run(
        [str(ansible), "localhost", "-c", "local", "-i", "localhost,", "-M", str(ROLE / "library"),
         "-m", "llamafleet_host_facts", "-a", json.dumps({"disk_paths": [str(tmp_path / "not/yet")]}),
         "--check", "-t", str(tmp_path / "tree")],
        check=False, capture_output=True, text=True, env=ansible_env(tmp_path), cwd=REPO, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads((tmp_path / "tree" / "localhost").read_text())
    assert out["changed"] is False
    assert "skipped" not in out  # check mode ran the module, it did not skip it
    facts = parse_probe("localhost", out["raw"])
    release = dict(
        line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
    )
    assert facts.distro.id == release["ID"].strip('"')
    assert facts.kernel == platform.release()
    memtotal = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
    assert facts.ram_bytes == int(memtotal.split()[1]) * 1024
    assert facts.disk == (DiskSpace(str(tmp_path / "not/yet"), str(tmp_path), facts.disk[0].free_bytes,
                                    facts.disk[0].total_bytes, device=os.stat(tmp_path).st_dev),)


@pytest.mark.integration  # an ansible-playbook run
def test_the_role_sets_host_facts_raw_in_check_mode(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n"
        "  gather_facts: false\n"
        "  roles: [host_facts]\n"
        "  tasks:\n"
        "    - name: The raw facts are there\n"
        "      ansible.builtin.assert:\n"
        "        that:\n"
        "          - host_facts_raw.probe_version == 1\n"
        "          - host_facts_raw.os_release is string\n"
        "          - host_facts_raw.disk | length == 2\n"
    )
    ansible_playbook = Path(sys.executable).with_name("ansible-playbook")
    result = subprocess.run(
        [str(ansible_playbook), "-c", "local", "-i", "localhost,", str(playbook), "--check"],
        check=False, capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**ansible_env(tmp_path), "ANSIBLE_ROLES_PATH": str(REPO / "roles")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in result.stdout and "failed=0" in result.stdout
