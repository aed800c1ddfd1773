#!/usr/bin/python3
# -*- coding: utf-8 -*-
# Copyright: llamafleet contributors
# Apache-2.0
"""Gather what a host has, raw and read-only, for the controller to parse (generators/facts/probe.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: llamafleet_host_facts
short_description: Read a host's GPUs, toolchains, memory, disk and device groups, changing nothing
description:
  - Returns the raw text of the files and commands llamafleet decides a host's plan from; the controller parses
    it (C(generators/facts/probe.py)). Nothing on the host changes, so check mode runs it the same way.
  - "Files: /etc/os-release, per /sys/class/drm/card*/device the PCI ids, slot, driver, mem_info_vram_total and
    mem_info_gtt_total, /sys/class/kfd/kfd/topology/nodes/*/properties, the MemTotal line of /proc/meminfo, the
    UID_MIN lines of /etc/login.defs."
  - "Commands (each with a timeout; a missing tool is null, never a failure): uname -r, nvidia-smi --query-gpu,
    vulkaninfo --summary, nvcc --version, gcc/g++ -dumpfullversion and every gcc-NN, g++-NN, gccNN-gcc and
    gccNN-g++ installed, getconf GNU_LIBC_VERSION (ldd --version when that fails), hipconfig --version and
    --rocmpath."
  - Also, per path in O(disk_paths), the free and total bytes and the device number of its filesystem (of its
    nearest existing parent), the sizes of the regular C(*.gguf) files directly in it when it is an existing
    directory, and the owner group of /dev/dri/renderD* and /dev/kfd.
options:
  disk_paths:
    description: Directories whose free space is reported (where builds and models go); a path that does not
      exist yet is measured at its nearest existing parent. The C(*.gguf) files directly in an existing one are
      listed with their sizes (models already downloaded).
    type: list
    elements: str
    default: [/var/cache/llamafleet, /var/lib/llamafleet/models]
  command_timeout:
    description: Seconds each command may run; one that runs longer is reported as timed out.
    type: int
    default: 20
author: llamafleet
"""

RETURN = r"""
raw:
  description: The raw facts (see the module source for the shape); the controller parses them.
  returned: always
  type: dict
  contains:
    disk:
      description:
        - One entry per O(disk_paths) item, in order.
        - "C(path) (as asked), C(checked) (its nearest existing parent, where statvfs ran), C(free_bytes) (free to
          an unprivileged user), C(total_bytes) and C(device) (C(st_dev) of C(checked); entries with the same
          number share a filesystem)."
        - "C(gguf_files) (file name to bytes: the regular C(*.gguf) files directly in C(path)) when C(path) is an
          existing directory that could be listed; C(gguf_error) (why not) when listing it failed."
        - C(error) instead of the sizes when statvfs failed.
      returned: always
      type: list
      elements: dict
      sample:
        - path: /var/lib/llamafleet/models
          checked: /var/lib/llamafleet/models
          free_bytes: 80788062208
          total_bytes: 270553174016
          device: 2049
          gguf_files: {qwen2.5-3b-instruct-q4_k_m.gguf: 2104932768}
"""

import glob
import grp
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Callable

from ansible.module_utils.basic import AnsibleModule

PROBE_VERSION = 1

# Where toolkits put their tools when they are not on a non-login shell's PATH.
EXTRA_TOOL_DIRS = ("/usr/local/cuda/bin", "/opt/cuda/bin", "/opt/rocm/bin")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
COMPILER_DIRS = ("/usr/bin", "/usr/local/bin")
# gcc-14 / g++-14 (Debian, Ubuntu, Arch, Fedora's gcc14 package) and gcc14-gcc / gcc14-g++ (older Fedora compat).
ALT_COMPILER = re.compile(r"^(?:(?:gcc|g\+\+)-\d+|gcc\d+-(?:gcc|g\+\+))$")
CARD = re.compile(r"^card\d+$")
DRM_DEVICE_FILES = (
    "vendor",
    "device",
    "subsystem_vendor",
    "subsystem_device",
    "class",
    "mem_info_vram_total",
    "mem_info_gtt_total",
    "uevent",
)
NVIDIA_SMI_QUERY = "index,name,compute_cap,memory.total,driver_version,pci.bus_id"

Runner = Callable[[list, float], dict]


def run_command(argv: list, timeout: float) -> dict:
    """Run one read-only command; its result is a record, never an exception."""
    env = dict(os.environ, LC_ALL="C", LANG="C")
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return {
            "argv": list(argv),
            "rc": None,
            "stdout": _text(exc.stdout),
            "stderr": _text(exc.stderr),
            "timed_out": True,
        }
    except OSError as exc:
        return {"argv": list(argv), "rc": None, "stdout": "", "stderr": str(exc), "timed_out": False}
    return {
        "argv": list(argv),
        "rc": proc.returncode,
        "stdout": _text(proc.stdout),
        "stderr": _text(proc.stderr),
        "timed_out": False,
    }


def _text(data) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data


def _group_name(gid: int):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


@dataclass
class Probe:
    """Reads one host. ``root`` prefixes every file and tool path (tests point it at a fake tree); ``run`` runs
    a command (argv with the host path of the tool, made absolute under ``root``); ``group_name`` maps a gid."""

    root: str = "/"
    run: Runner = run_command
    group_name: Callable[[int], object] = _group_name
    timeout: float = 20
    path_env: str = field(default_factory=lambda: os.environ.get("PATH") or DEFAULT_PATH)

    # -- helpers ---------------------------------------------------------------------------------------------
    def at(self, path: str) -> str:
        """The local path of a host path."""
        return os.path.join(self.root, path.lstrip("/"))

    def host_path(self, local: str) -> str:
        rel = os.path.relpath(local, self.root)
        return "/" + ("" if rel == "." else rel)

    def read(self, path: str):
        try:
            with open(self.at(path), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return None

    def which(self, name: str):
        """The host path of a tool: PATH first, then the toolkits' usual bin directories."""
        dirs = []
        for directory in [*self.path_env.split(":"), *DEFAULT_PATH.split(":"), *EXTRA_TOOL_DIRS]:
            if directory and directory.startswith("/") and directory not in dirs:
                dirs.append(directory)
        for directory in dirs:
            candidate = os.path.join(directory, name)
            local = self.at(candidate)
            if os.path.isfile(local) and os.access(local, os.X_OK):
                return candidate
        return None

    def command(self, name: str, *args: str):
        """Run a tool found by :meth:`which`; None when the host does not have it."""
        path = self.which(name)
        if path is None:
            return None
        return self.tool(path, *args)

    def tool(self, path: str, *args: str) -> dict:
        record = self.run([self.at(path), *args], self.timeout)
        record["argv"] = [path, *args]
        return record

    # -- readers ---------------------------------------------------------------------------------------------
    def meminfo(self):
        text = self.read("/proc/meminfo")
        if text is None:
            return None
        return "".join(line for line in text.splitlines(keepends=True) if line.startswith("MemTotal:"))

    def login_defs(self):
        text = self.read("/etc/login.defs")
        if text is None:
            return None
        return "".join(
            line for line in text.splitlines(keepends=True) if re.match(r"^\s*UID_MIN\s", line)
        )

    def drm_cards(self) -> list:
        base = self.at("/sys/class/drm")
        try:
            names = sorted((n for n in os.listdir(base) if CARD.match(n)), key=lambda n: int(n[4:]))
        except OSError:
            return []
        cards = []
        for name in names:
            device = os.path.join(base, name, "device")
            if not os.path.exists(device):
                continue
            card = {"card": name, "slot": os.path.basename(os.path.realpath(device))}
            driver = os.path.join(device, "driver")
            card["driver"] = os.path.basename(os.path.realpath(driver)) if os.path.exists(driver) else None
            for entry in DRM_DEVICE_FILES:
                card[entry] = self.read(self.host_path(os.path.join(device, entry)))
            try:
                renders = sorted(n for n in os.listdir(os.path.join(device, "drm")) if n.startswith("renderD"))
            except OSError:
                renders = []
            card["render_node"] = renders[0] if renders else None
            cards.append(card)
        return cards

    def kfd_nodes(self) -> list:
        base = self.at("/sys/class/kfd/kfd/topology/nodes")
        try:
            names = sorted((n for n in os.listdir(base) if n.isdigit()), key=int)
        except OSError:
            return []
        nodes = []
        for name in names:
            node = f"/sys/class/kfd/kfd/topology/nodes/{name}"
            properties = self.read(node + "/properties")
            if properties is None:
                continue
            nodes.append({"node": name, "properties": properties})
        return nodes

    def compilers(self) -> list:
        """The system gcc and g++, then every alternate version installed, each with its version output."""
        found = []
        seen = set()
        for name in ("gcc", "g++"):
            path = self.which(name)
            if path is not None:
                found.append((name, path, True))
                seen.add(path)
        for directory in COMPILER_DIRS:
            for local in sorted(glob.glob(self.at(directory) + "/*")):
                base = os.path.basename(local)
                path = os.path.join(directory, base)
                if path in seen or not ALT_COMPILER.match(base):
                    continue
                if not (os.path.isfile(local) and os.access(local, os.X_OK)):
                    continue
                seen.add(path)
                found.append((base, path, False))
        records = []
        for name, path, system in found:
            real = self.host_path(os.path.realpath(self.at(path)))
            records.append(
                {
                    "name": name,
                    "path": path,
                    "realpath": real,
                    "system": system,
                    "version": self.tool(path, "-dumpfullversion", "-dumpversion"),
                }
            )
        return records

    def glibc(self) -> dict:
        getconf = self.command("getconf", "GNU_LIBC_VERSION")
        ldd = None
        if getconf is None or getconf["rc"] != 0:
            ldd = self.command("ldd", "--version")
        return {"getconf": getconf, "ldd": ldd}

    def disk(self, paths: list) -> list:
        """Per path: its nearest existing parent (``checked``), that filesystem's free and total bytes and device
        number (paths with the same ``device`` share a filesystem), and, when the path is itself an existing
        directory, the sizes of the regular ``*.gguf`` files directly in it (models already there)."""
        out = []
        for path in paths:
            wanted = os.path.normpath(path) if path.startswith("/") else "/" + path
            checked = wanted
            while not os.path.exists(self.at(checked)) and checked != "/":
                checked = os.path.dirname(checked)
            try:
                stat = os.statvfs(self.at(checked))
                device = os.stat(self.at(checked)).st_dev
            except OSError as exc:
                out.append({"path": path, "checked": checked, "error": str(exc)})
                continue
            entry = {
                "path": path,
                "checked": checked,
                "free_bytes": stat.f_bavail * stat.f_frsize,
                "total_bytes": stat.f_blocks * stat.f_frsize,
                "device": device,
            }
            if checked == wanted and os.path.isdir(self.at(checked)):
                try:
                    entry["gguf_files"] = self.gguf_files(self.at(checked))
                except OSError as exc:  # e.g. the service user's 0750 models dir, read as another user
                    entry["gguf_error"] = str(exc)
            out.append(entry)
        return out

    @staticmethod
    def gguf_files(local: str) -> dict:
        """The regular (not symlinked, not hidden) ``*.gguf`` files directly in a directory: name -> bytes."""
        found = {}
        with os.scandir(local) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.endswith(".gguf"):
                    continue
                if entry.is_file(follow_symlinks=False):
                    found[entry.name] = entry.stat(follow_symlinks=False).st_size
        return dict(sorted(found.items()))

    def device_nodes(self) -> list:
        locals_ = sorted(glob.glob(self.at("/dev/dri") + "/renderD*"))
        if os.path.exists(self.at("/dev/kfd")):
            locals_.append(self.at("/dev/kfd"))
        nodes = []
        for local in locals_:
            try:
                stat = os.stat(local)
            except OSError:
                continue
            nodes.append(
                {
                    "path": self.host_path(local),
                    "gid": stat.st_gid,
                    "group": self.group_name(stat.st_gid),
                    "mode": format(stat.st_mode & 0o7777, "04o"),
                }
            )
        return nodes

    def gather(self, disk_paths: list) -> dict:
        return {
            "probe_version": PROBE_VERSION,
            "os_release": self.read("/etc/os-release"),
            "uname_r": self.command("uname", "-r"),
            "nvidia_smi": self.command(
                "nvidia-smi", f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"
            ),
            "drm_cards": self.drm_cards(),
            "kfd_nodes": self.kfd_nodes(),
            "vulkaninfo": self.command("vulkaninfo", "--summary"),
            "nvcc": self.command("nvcc", "--version"),
            "compilers": self.compilers(),
            "glibc": self.glibc(),
            "hipconfig": {
                "version": self.command("hipconfig", "--version"),
                "rocmpath": self.command("hipconfig", "--rocmpath"),
            },
            "meminfo": self.meminfo(),
            "disk": self.disk(disk_paths),
            "device_nodes": self.device_nodes(),
            "login_defs": self.login_defs(),
        }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "disk_paths": {
                "type": "list",
                "elements": "str",
                "default": ["/var/cache/llamafleet", "/var/lib/llamafleet/models"],
            },
            "command_timeout": {"type": "int", "default": 20},
        },
        supports_check_mode=True,
    )
    probe = Probe(timeout=module.params["command_timeout"])
    raw = probe.gather(module.params["disk_paths"])
    module.exit_json(changed=False, raw=raw)


if __name__ == "__main__":
    main()
