"""Parse what the host probe read (``roles/host_facts/library/llamafleet_host_facts.py``) into typed facts.

Pure: the module's raw JSON in, :class:`ProbedFacts` out. Every malformed fact is one :class:`Problem` naming the
fact (``facts.<what>``); all of them are raised together as one :class:`SpecError` for the host. A tool the host
does not have is ``None`` in the raw input and ``None`` (or empty) here, never a problem; a tool that is present
but failed (``nvidia-smi`` without its kernel driver, ``vulkaninfo`` without a Vulkan driver) is listed in
:attr:`ProbedFacts.tool_failures` with its first line of output, for the plan to explain.

Rules worth knowing:

* NVIDIA GPUs come from ``nvidia-smi`` (name, compute capability, memory in MiB, driver); AMD and Intel GPUs from
  ``/sys/class/drm/card*/device`` (PCI ids, ``mem_info_vram_total``, ``mem_info_gtt_total``). A DRM card and an
  ``nvidia-smi`` line with the same PCI slot are one GPU. Cards of other vendors (virtual display adapters) are
  listed in :attr:`ProbedFacts.ignored_cards`.
* The gfx target comes from the KFD node with the card's PCI slot (``domain`` and ``location_id``):
  ``gfx_target_version`` is major*10000 + minor*100 + stepping, written ``gfx{major}{minor:x}{stepping:x}``
  (110501 -> gfx1151, 90010 -> gfx90a).
* ``unified`` (the GPU's memory is the host's): the Vulkan device of the same PCI id says INTEGRATED_GPU; without
  one, an AMD GPU whose gfx target is an APU's, or an Intel GPU without ``mem_info_vram_total``.
* Vulkan devices keep ``vulkaninfo --summary``'s order and ``GPU<n>`` index (seed 000: the iGPU is GPU0, the T1200
  GPU1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from generators.errors import Problem, SpecError

FIELD = "facts"
PROBE_VERSION = 1

VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x8086": "intel"}
NVIDIA_FIELDS = ("index", "name", "compute_cap", "memory.total", "driver_version", "pci.bus_id")
VULKAN_TYPES = {
    "PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU": "integrated",
    "PHYSICAL_DEVICE_TYPE_DISCRETE_GPU": "discrete",
    "PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU": "virtual",
    "PHYSICAL_DEVICE_TYPE_CPU": "cpu",
    "PHYSICAL_DEVICE_TYPE_OTHER": "other",
}
# gfx targets of AMD APUs (the GPU shares the host's memory): Carrizo, Raven/Picasso, Renoir/Cezanne, Van Gogh,
# Rembrandt, Raphael/Mendocino, Phoenix/Hawk Point, Strix Point, Strix Halo, Krackan. Used only when vulkaninfo
# does not say INTEGRATED_GPU itself.
AMD_APU_GFX = frozenset(
    {"gfx801", "gfx902", "gfx909", "gfx90c", "gfx1033", "gfx1035", "gfx1036", "gfx1037", "gfx1103", "gfx1150",
     "gfx1151", "gfx1152", "gfx1153"}
)
_SLOT = re.compile(r"^(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")
_COMPILER = re.compile(r"^(?:(gcc|g\+\+)-(\d+)|gcc(\d+)-(gcc|g\+\+))$")


# -- the facts ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Distro:
    id: str  # os-release ID: debian, ubuntu, fedora, arch
    version_id: str | None  # VERSION_ID ("24.04", "44"); None on rolling releases (Arch)
    like: tuple[str, ...] = ()  # ID_LIKE
    codename: str | None = None
    pretty_name: str | None = None


@dataclass(frozen=True)
class ProbedGpu:
    vendor: str  # nvidia | amd | intel
    name: str | None  # nvidia-smi's name, else the Vulkan device name of the same PCI id
    pci_id: str | None  # "10de:2684" (vendor:device); None for an nvidia-smi GPU without a DRM card
    pci_slot: str | None  # "0000:01:00.0"
    subsystem_id: str | None = None  # "1043:889a"
    kernel_driver: str | None = None  # nvidia, amdgpu, i915, xe
    card: str | None = None  # "card1"
    render_node: str | None = None  # "renderD128"
    vram_bytes: int | None = None
    gtt_bytes: int | None = None
    unified: bool = False
    compute_capability: str | None = None  # "8.9"
    gfx_target: str | None = None  # "gfx1151"
    driver_version: Version | None = None  # the NVIDIA driver's
    nvidia_index: int | None = None  # nvidia-smi's index (CUDA_VISIBLE_DEVICES order by default is PCI order)


@dataclass(frozen=True)
class VulkanDevice:
    index: int  # vulkaninfo's GPU<n>
    name: str
    type: str  # integrated | discrete | virtual | cpu | other
    pci_id: str | None  # "10de:1fbc" from vendorID/deviceID; None for a non-PCI vendor (llvmpipe's 0x10005)
    api_version: str | None = None
    driver_name: str | None = None
    driver_info: str | None = None


@dataclass(frozen=True)
class AltCompiler:
    """A GCC installed beside the system one: its version and its C and C++ drivers (either may be absent)."""

    major: int
    version: Version
    cc: str | None
    cxx: str | None


@dataclass(frozen=True)
class Toolchain:
    nvcc: Version | None = None
    nvcc_path: str | None = None
    gcc: Version | None = None  # the system gcc (`gcc -dumpfullversion`)
    gcc_path: str | None = None
    gxx: Version | None = None
    gxx_path: str | None = None
    alternates: tuple[AltCompiler, ...] = ()  # ascending by major
    glibc: Version | None = None
    hip: Version | None = None  # `hipconfig --version` up to its git suffix: 6.4.43484
    rocm_path: str | None = None

    @property
    def gcc_major(self) -> int | None:
        return self.gcc.major if self.gcc is not None else None


@dataclass(frozen=True)
class DiskSpace:
    path: str  # the directory asked about
    checked: str  # its nearest existing parent, where statvfs ran
    free_bytes: int
    total_bytes: int
    device: int | None = None  # st_dev of checked: entries with the same device share a filesystem (older probes: None)
    #: the regular *.gguf files directly in path (name, bytes), sorted; None when path was not listed (it does not
    #: exist, an older probe, or it could not be read)
    gguf_files: tuple[tuple[str, int], ...] | None = None

    def gguf_size(self, name: str) -> int | None:
        """The size of the GGUF file ``name`` directly in the path, None when the listing does not have it."""
        return dict(self.gguf_files or ()).get(name)


@dataclass(frozen=True)
class DeviceNode:
    path: str  # /dev/dri/renderD128, /dev/kfd
    gid: int
    group: str | None  # None when the gid has no name on the host
    mode: str  # "0660"


@dataclass(frozen=True)
class ToolFailure:
    tool: str  # nvidia-smi, vulkaninfo, nvcc, ...
    path: str
    message: str  # "exit 9: NVIDIA-SMI has failed because ...", "timed out"


@dataclass(frozen=True)
class ProbedFacts:
    host: str
    distro: Distro
    kernel: str | None
    gpus: tuple[ProbedGpu, ...]
    vulkan_devices: tuple[VulkanDevice, ...]
    toolchain: Toolchain
    ram_bytes: int | None
    disk: tuple[DiskSpace, ...]
    device_nodes: tuple[DeviceNode, ...]
    uid_min: int | None
    kfd_present: bool = False  # /dev/kfd exists (the amdgpu KFD driver is loaded)
    tool_failures: tuple[ToolFailure, ...] = ()
    ignored_cards: tuple[str, ...] = ()  # "card0 1234:1111 (bochs-drm)"

    @property
    def device_groups(self) -> tuple[str, ...]:
        """The groups owning the render and KFD nodes, in node order, once each (gids without a name as "gid N")."""
        out: list[str] = []
        for node in self.device_nodes:
            name = node.group if node.group is not None else f"gid {node.gid}"
            if name not in out:
                out.append(name)
        return tuple(out)

    def free_bytes(self, path: str) -> int | None:
        entry = self.disk_entry(path)
        return entry.free_bytes if entry is not None else None

    def disk_entry(self, path: str) -> DiskSpace | None:
        """What the probe measured for ``path`` (one of the module's ``disk_paths``), None when it was not asked."""
        for entry in self.disk:
            if entry.path == path:
                return entry
        return None

    def vulkan_index(self, gpu: ProbedGpu) -> int | None:
        """The Vulkan device index of a GPU (matched by PCI id), None when vulkaninfo did not list it."""
        matches = [d.index for d in self.vulkan_devices if gpu.pci_id is not None and d.pci_id == gpu.pci_id]
        return matches[0] if matches else None


# -- parsing -----------------------------------------------------------------------------------------------------
class _Collector:
    """Problems found so far; every helper returns None on a problem so parsing goes on and reports them all."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, fact: str, message: str) -> None:
        self.problems.append(Problem(f"{FIELD}.{fact}" if fact else FIELD, message))


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _short(text: str, limit: int = 80) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _command(p: _Collector, fact: str, record: Any) -> Mapping[str, Any] | None:
    """A command record, or None when the tool is absent. Shape errors are problems."""
    if record is None:
        return None
    if not isinstance(record, Mapping) or not isinstance(record.get("stdout", ""), str):
        p.add(fact, f"expected a command result (argv, rc, stdout, stderr), got {_short(str(record))}")
        return None
    return record


def _succeeded(record: Mapping[str, Any]) -> bool:
    return record.get("rc") == 0 and not record.get("timed_out")


def _failure(tool: str, record: Mapping[str, Any]) -> ToolFailure:
    argv = record.get("argv") or [tool]
    path = str(argv[0]) if argv else tool
    if record.get("timed_out"):
        message = "timed out"
    else:
        detail = _first_line(str(record.get("stderr") or "")) or _first_line(str(record.get("stdout") or ""))
        rc = record.get("rc")
        message = f"exit {rc}" if rc is not None else "did not run"
        if detail:
            message += f": {detail}"
    return ToolFailure(tool=tool, path=path, message=message)


def _version(p: _Collector, fact: str, text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        p.add(fact, f"{text!r} is not a version")
        return None


def _int(p: _Collector, fact: str, text: str, what: str) -> int | None:
    value = text.strip()
    if re.fullmatch(r"\d+", value):
        return int(value)
    p.add(fact, f"{what} {_short(value)} is not a number")
    return None


def normalize_slot(text: str) -> str | None:
    """ "00000000:01:00.0" (nvidia-smi) and "0000:01:00.0" (sysfs) -> "0000:01:00.0"; None when it is not one."""
    match = _SLOT.fullmatch(text.strip())
    if match is None:
        return None
    domain, bus, dev, fn = match.groups()
    return f"{int(domain or '0', 16):04x}:{int(bus, 16):02x}:{int(dev, 16):02x}.{fn}"


def gfx_target(version: int) -> str | None:
    """KFD's gfx_target_version -> the LLVM target: 110501 -> gfx1151, 90010 -> gfx90a; None when it is not one."""
    major, minor, step = version // 10000, (version // 100) % 100, version % 100
    if major < 1 or minor > 15 or step > 15:
        return None
    return f"gfx{major}{minor:x}{step:x}"


def _os_release(p: _Collector, text: Any) -> Distro:
    if not isinstance(text, str) or not text.strip():
        p.add("os_release", "/etc/os-release is missing or empty")
        return Distro(id="unknown", version_id=None)
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z0-9_]+", key):
            p.add("os_release", f"line {number} is not KEY=value: {_short(line)}")
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    distro_id = values.get("ID")
    if not distro_id:
        p.add("os_release", "has no ID= line")
        distro_id = "unknown"
    return Distro(
        id=distro_id,
        version_id=values.get("VERSION_ID") or None,
        like=tuple(values.get("ID_LIKE", "").split()),
        codename=values.get("VERSION_CODENAME") or None,
        pretty_name=values.get("PRETTY_NAME") or None,
    )


@dataclass(frozen=True)
class _SmiGpu:
    index: int
    name: str
    cc: str | None
    vram: int | None
    driver: Version | None
    slot: str


def _nvidia_smi(p: _Collector, record: Mapping[str, Any]) -> list[_SmiGpu]:
    out: list[_SmiGpu] = []
    fact = "nvidia_smi"
    for number, line in enumerate(str(record.get("stdout", "")).splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(NVIDIA_FIELDS):
            p.add(
                fact,
                f"line {number} has {len(fields)} fields, expected {len(NVIDIA_FIELDS)} "
                f"({', '.join(NVIDIA_FIELDS)}): {_short(line)}",
            )
            continue
        index_text, name, cc, memory, driver, bus = fields
        at = f"{fact}[{index_text}]"
        index = _int(p, at, index_text, "index")
        if cc in ("[N/A]", ""):
            cc_value = None
        elif re.fullmatch(r"\d+\.\d+", cc):
            cc_value = cc
        else:
            p.add(at, f"compute_cap {_short(cc)} is not MAJOR.MINOR")
            cc_value = None
        # memory.total is MiB with nounits; "[N/A]" on GPUs without dedicated memory (unified, e.g. GB10).
        vram = None if memory == "[N/A]" else _int(p, at, memory, "memory.total")
        slot = normalize_slot(bus)
        if slot is None:
            p.add(at, f"pci.bus_id {_short(bus)} is not a PCI address")
        version = _version(p, f"{at}.driver_version", driver) if driver not in ("[N/A]", "") else None
        if index is None or slot is None or (vram is None and memory != "[N/A]"):
            continue
        out.append(_SmiGpu(index, name, cc_value, vram * 2**20 if vram is not None else None, version, slot))
    return out


def _hexid(p: _Collector, fact: str, text: Any, what: str) -> str | None:
    if text is None:
        return None
    value = str(text).strip().lower()
    if not re.fullmatch(r"0x[0-9a-f]{4}", value):
        p.add(fact, f"{what} {_short(value)} is not a PCI id (0xNNNN)")
        return None
    return value


def _vulkan_id(p: _Collector, fact: str, text: str | None, what: str) -> int | None:
    if text is None:
        return None
    if not re.fullmatch(r"0x[0-9a-fA-F]{1,8}", text):
        p.add(fact, f"{what} {_short(text)} is not a hexadecimal id")
        return None
    return int(text, 16)


@dataclass(frozen=True)
class _Card:
    card: str
    vendor: str  # nvidia | amd | intel
    pci_id: str
    slot: str | None
    subsystem: str | None
    driver: str | None
    render: str | None
    vram: int | None
    gtt: int | None


def _uevent(text: Any) -> dict[str, str]:
    values: dict[str, str] = {}
    if isinstance(text, str):
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
    return values


def _drm_cards(p: _Collector, cards: Any) -> tuple[list[_Card], list[str]]:
    out: list[_Card] = []
    ignored: list[str] = []
    if not isinstance(cards, list):
        p.add("drm_cards", f"expected a list, got {_short(str(cards))}")
        return out, ignored
    for position, card in enumerate(cards):
        if not isinstance(card, Mapping):
            p.add(f"drm_cards[{position}]", "expected a mapping")
            continue
        name = str(card.get("card") or f"#{position}")
        fact = f"drm_cards[{name}]"
        if card.get("vendor") is None:  # not a PCI device (simpledrm, a platform framebuffer)
            ignored.append(f"{name} {card.get('slot') or '?'} ({card.get('driver') or 'no driver'})")
            continue
        vendor_id = _hexid(p, fact, card.get("vendor"), "vendor")
        device_id = _hexid(p, fact, card.get("device"), "device")
        if vendor_id is None or device_id is None:
            continue
        uevent = _uevent(card.get("uevent"))
        driver = card.get("driver") or uevent.get("DRIVER")
        pci_id = f"{vendor_id[2:]}:{device_id[2:]}"
        vendor = VENDORS.get(vendor_id)
        if vendor is None:
            ignored.append(f"{name} {pci_id} ({driver or 'no driver'})")
            continue
        slot_text = uevent.get("PCI_SLOT_NAME") or str(card.get("slot") or "")
        slot = normalize_slot(slot_text)
        if slot is None:
            p.add(fact, f"PCI slot {_short(slot_text)} is not a PCI address")
        sub_vendor = _hexid(p, fact, card.get("subsystem_vendor"), "subsystem_vendor")
        sub_device = _hexid(p, fact, card.get("subsystem_device"), "subsystem_device")
        subsystem = f"{sub_vendor[2:]}:{sub_device[2:]}" if sub_vendor and sub_device else None
        vram = gtt = None
        if card.get("mem_info_vram_total") is not None:
            vram = _int(p, f"{fact}.mem_info_vram_total", str(card["mem_info_vram_total"]), "mem_info_vram_total")
        if card.get("mem_info_gtt_total") is not None:
            gtt = _int(p, f"{fact}.mem_info_gtt_total", str(card["mem_info_gtt_total"]), "mem_info_gtt_total")
        render = card.get("render_node")
        out.append(_Card(name, vendor, pci_id, slot, subsystem, driver, render, vram, gtt))
    return out, ignored


@dataclass(frozen=True)
class _KfdNode:
    node: str
    gfx: str
    slot: str | None


def _kfd_nodes(p: _Collector, nodes: Any) -> list[_KfdNode]:
    """The GPU nodes of the KFD topology (CPU nodes have gfx_target_version 0)."""
    out: list[_KfdNode] = []
    if not isinstance(nodes, list):
        p.add("kfd_nodes", f"expected a list, got {_short(str(nodes))}")
        return out
    for position, entry in enumerate(nodes):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("properties"), str):
            p.add(f"kfd_nodes[{position}]", "expected a mapping with the node's properties text")
            continue
        node = str(entry.get("node", position))
        fact = f"kfd_nodes[{node}]"
        props: dict[str, str] = {}
        for line in entry["properties"].splitlines():
            parts = line.split()
            if len(parts) == 2:
                props[parts[0]] = parts[1]
        if "gfx_target_version" not in props:
            p.add(fact, "properties have no gfx_target_version line")
            continue
        version = _int(p, f"{fact}.gfx_target_version", props["gfx_target_version"], "gfx_target_version")
        if version is None or version == 0:
            continue  # a CPU node
        target = gfx_target(version)
        if target is None:
            p.add(
                f"{fact}.gfx_target_version",
                f"{version} is not a known gfx target (major*10000 + minor*100 + stepping, minor and stepping 0-15)",
            )
            continue
        slot = None
        if re.fullmatch(r"\d+", props.get("location_id", "")):
            location = int(props["location_id"])
            domain = int(props["domain"]) if re.fullmatch(r"\d+", props.get("domain", "")) else 0
            slot = f"{domain:04x}:{location >> 8:02x}:{(location >> 3) & 0x1F:02x}.{location & 0x7}"
        out.append(_KfdNode(node, target, slot))
    return out


def _vulkan(p: _Collector, record: Mapping[str, Any]) -> list[VulkanDevice]:
    """The ``Devices:`` section of ``vulkaninfo --summary``: ``GPU<n>:`` blocks of ``key = value`` lines."""
    devices: list[VulkanDevice] = []
    blocks: list[tuple[int, dict[str, str]]] = []
    in_devices = False
    current: dict[str, str] | None = None
    for line in str(record.get("stdout", "")).splitlines():
        stripped = line.strip()
        if stripped == "Devices:":
            in_devices = True
            continue
        if not in_devices:
            continue
        match = re.fullmatch(r"GPU(\d+):", stripped)
        if match:
            current = {}
            blocks.append((int(match.group(1)), current))
            continue
        if current is not None and "=" in stripped:
            key, _, value = stripped.partition("=")
            current[key.strip()] = value.strip()
    if not in_devices:
        p.add("vulkaninfo", "the output has no 'Devices:' section")
        return devices
    for index, props in blocks:
        fact = f"vulkaninfo.GPU{index}"
        missing = [k for k in ("deviceName", "deviceType") if k not in props]
        if missing:
            p.add(fact, f"has no {' or '.join(missing)}")
            continue
        kind = VULKAN_TYPES.get(props["deviceType"])
        if kind is None:
            p.add(fact, f"deviceType {_short(props['deviceType'])} is not a Vulkan device type")
            continue
        # vendorID is a PCI vendor id, or a Khronos one above 0xFFFF (Mesa's llvmpipe: 0x10005)
        vendor = _vulkan_id(p, fact, props.get("vendorID"), "vendorID")
        device = _vulkan_id(p, fact, props.get("deviceID"), "deviceID")
        pci_id = None
        if vendor is not None and device is not None and vendor <= 0xFFFF and device <= 0xFFFF:
            pci_id = f"{vendor:04x}:{device:04x}"
        api = props.get("apiVersion")
        if api is not None:  # older vulkaninfo prints "4206847 (1.3.255)"
            inner = re.search(r"\(([\d.]+)\)", api)
            api = inner.group(1) if inner else api
        devices.append(
            VulkanDevice(
                index=index,
                name=props["deviceName"],
                type=kind,
                pci_id=pci_id,
                api_version=api,
                driver_name=props.get("driverName"),
                driver_info=props.get("driverInfo"),
            )
        )
    indices = [d.index for d in devices]
    if indices != sorted(indices) or len(set(indices)) != len(indices):
        p.add("vulkaninfo", f"devices are not listed GPU0, GPU1, ... in order: {indices}")
    return devices


def _merge_gpus(
    cards: list[_Card], smi: list[_SmiGpu], kfd: list[_KfdNode], vulkan: list[VulkanDevice]
) -> list[ProbedGpu]:
    gpus: list[ProbedGpu] = []
    smi_by_slot = {g.slot: g for g in smi}
    used_smi: set[str] = set()
    amd_cards = [c for c in cards if c.vendor == "amd"]
    kfd_by_slot = {n.slot: n for n in kfd if n.slot is not None}
    unplaced_kfd = [n for n in kfd if n.slot is None]
    for card in cards:
        vk = next((d for d in vulkan if d.pci_id == card.pci_id), None)
        name = vk.name if vk is not None else None
        cc = driver = index = None
        vram = card.vram
        if card.vendor == "nvidia" and card.slot in smi_by_slot:
            s = smi_by_slot[card.slot]
            used_smi.add(s.slot)
            name, cc, driver, index = s.name, s.cc, s.driver, s.index
            vram = s.vram if s.vram is not None else vram
        gfx = None
        if card.vendor == "amd":
            node = kfd_by_slot.get(card.slot) if card.slot is not None else None
            if node is None and len(amd_cards) == 1 and len(unplaced_kfd) == 1:
                node = unplaced_kfd[0]  # an old kernel without location_id: one GPU node, one AMD card
            gfx = node.gfx if node is not None else None
        if vk is not None:
            unified = vk.type == "integrated"
        elif card.vendor == "amd":
            unified = gfx in AMD_APU_GFX
        elif card.vendor == "intel":
            unified = card.vram is None
        else:
            unified = False
        gpus.append(
            ProbedGpu(
                vendor=card.vendor,
                name=name,
                pci_id=card.pci_id,
                pci_slot=card.slot,
                subsystem_id=card.subsystem,
                kernel_driver=card.driver,
                card=card.card,
                render_node=card.render,
                vram_bytes=vram,
                gtt_bytes=card.gtt,
                unified=unified,
                compute_capability=cc,
                gfx_target=gfx,
                driver_version=driver,
                nvidia_index=index,
            )
        )
    for s in smi:  # NVIDIA GPUs without a DRM card (nvidia-drm not loaded)
        if s.slot in used_smi:
            continue
        gpus.append(
            ProbedGpu(
                vendor="nvidia",
                name=s.name,
                pci_id=None,
                pci_slot=s.slot,
                kernel_driver="nvidia",
                vram_bytes=s.vram,
                compute_capability=s.cc,
                driver_version=s.driver,
                nvidia_index=s.index,
            )
        )
    return gpus


def _compilers(p: _Collector, entries: Any, failures: list[ToolFailure]) -> tuple[dict[str, Any], list[AltCompiler]]:
    system: dict[str, Any] = {}
    if not isinstance(entries, list):
        p.add("compilers", f"expected a list, got {_short(str(entries))}")
        return system, []
    system_real: set[str] = set()
    alts: dict[tuple[str, int], dict[str, Any]] = {}
    parsed: list[tuple[Mapping[str, Any], Version]] = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "path" not in entry:
            p.add(f"compilers[{position}]", "expected a mapping with name, path and version")
            continue
        path = str(entry["path"])
        fact = f"compilers[{path}]"
        record = _command(p, fact, entry.get("version"))
        if record is None:
            continue
        if not _succeeded(record):
            failures.append(_failure(path, record))
            continue
        text = _first_line(str(record.get("stdout", "")))
        version = _version(p, fact, text)
        if version is None:
            continue
        parsed.append((entry, version))
        if entry.get("system"):
            key = "gcc" if entry.get("name") == "gcc" else "gxx"
            system[key] = version
            system[f"{key}_path"] = path
            system_real.add(str(entry.get("realpath") or path))
    for entry, version in parsed:
        if entry.get("system"):
            continue
        if str(entry.get("realpath") or entry["path"]) in system_real:
            continue  # gcc-12 on Debian 12 is the system gcc under its versioned name
        base = str(entry["path"]).rsplit("/", 1)[-1]
        match = _COMPILER.fullmatch(base)
        if match is None:
            p.add(f"compilers[{entry['path']}]", f"{base!r} is not a gcc-NN, g++-NN, gccNN-gcc or gccNN-g++ name")
            continue
        kind = match.group(1) or match.group(4)
        major = int(match.group(2) or match.group(3))
        if version.major != major:
            p.add(f"compilers[{entry['path']}]", f"reports version {version}, not {major}.x")
            continue
        directory = str(entry["path"]).rsplit("/", 1)[0]
        slot = alts.setdefault((directory, major), {"version": version, "cc": None, "cxx": None})
        slot["cc" if kind == "gcc" else "cxx"] = str(entry["path"])
        slot["version"] = max(slot["version"], version)
    out = [
        AltCompiler(major=major, version=v["version"], cc=v["cc"], cxx=v["cxx"])
        for (_, major), v in sorted(alts.items(), key=lambda item: (item[0][1], item[0][0]))
    ]
    return system, out


def _nvcc(p: _Collector, record: Mapping[str, Any]) -> Version | None:
    # "Cuda compilation tools, release 12.8, V12.8.93"
    match = re.search(r"release\s+[\d.]+,\s+V(\d+(?:\.\d+)+)", str(record.get("stdout", "")))
    if match is None:
        p.add("nvcc", f"no 'release X.Y, VX.Y.Z' line in nvcc --version: {_short(str(record.get('stdout', '')))}")
        return None
    return _version(p, "nvcc", match.group(1))


def _glibc(p: _Collector, raw: Any, failures: list[ToolFailure]) -> Version | None:
    if not isinstance(raw, Mapping):
        p.add("glibc", f"expected getconf and ldd results, got {_short(str(raw))}")
        return None
    getconf = _command(p, "glibc.getconf", raw.get("getconf"))
    if getconf is not None and _succeeded(getconf):
        match = re.fullmatch(r"glibc\s+(\S+)", _first_line(str(getconf.get("stdout", ""))))
        if match is None:
            p.add("glibc.getconf", f"expected 'glibc X.Y', got {_short(str(getconf.get('stdout', '')))}")
            return None
        return _version(p, "glibc.getconf", match.group(1))
    ldd = _command(p, "glibc.ldd", raw.get("ldd"))
    if ldd is not None and _succeeded(ldd):
        # "ldd (Ubuntu GLIBC 2.39-0ubuntu8.4) 2.39" / "ldd (GNU libc) 2.43"
        words = _first_line(str(ldd.get("stdout", ""))).split()
        if not words or not words[0] == "ldd":
            p.add("glibc.ldd", f"expected 'ldd (...) X.Y', got {_short(str(ldd.get('stdout', '')))}")
            return None
        return _version(p, "glibc.ldd", words[-1])
    for name, record in (("getconf", getconf), ("ldd", ldd)):
        if record is not None:
            failures.append(_failure(name, record))
    return None  # a musl host, or neither tool: the plan decides what that means


def _hip(p: _Collector, raw: Any, failures: list[ToolFailure]) -> tuple[Version | None, str | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, Mapping):
        p.add("hipconfig", f"expected version and rocmpath results, got {_short(str(raw))}")
        return None, None
    version = path = None
    record = _command(p, "hipconfig.version", raw.get("version"))
    if record is not None:
        if _succeeded(record):
            # "6.4.43484-123eb5128": the release and HIP's patch number, then the git hash
            text = _first_line(str(record.get("stdout", "")))
            match = re.match(r"(\d+\.\d+(?:\.\d+)?)", text)
            if match is None:
                p.add("hipconfig.version", f"{text!r} does not start with a version")
            else:
                version = _version(p, "hipconfig.version", match.group(1))
        else:
            failures.append(_failure("hipconfig", record))
    record = _command(p, "hipconfig.rocmpath", raw.get("rocmpath"))
    if record is not None and _succeeded(record):
        path = _first_line(str(record.get("stdout", ""))) or None
    return version, path


def _meminfo(p: _Collector, text: Any) -> int | None:
    if text is None:
        return None
    match = re.search(r"^MemTotal:\s+(\S+)\s+kB\s*$", str(text), re.MULTILINE)
    if match is None:
        p.add("meminfo", f"expected 'MemTotal: N kB', got {_short(str(text))}")
        return None
    kib = _int(p, "meminfo", match.group(1), "MemTotal")
    return kib * 1024 if kib is not None else None


def _disk(p: _Collector, entries: Any) -> list[DiskSpace]:
    out: list[DiskSpace] = []
    if not isinstance(entries, list):
        p.add("disk", f"expected a list, got {_short(str(entries))}")
        return out
    for position, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "path" not in entry:
            p.add(f"disk[{position}]", "expected a mapping with path, checked, free_bytes")
            continue
        fact = f"disk[{entry['path']}]"
        if "error" in entry:
            p.add(fact, f"statvfs of {entry.get('checked')} failed: {entry['error']}")
            continue
        free, total = entry.get("free_bytes"), entry.get("total_bytes")
        if not isinstance(free, int) or isinstance(free, bool) or not isinstance(total, int) or free < 0:
            p.add(fact, f"free_bytes {free!r} / total_bytes {total!r} are not byte counts")
            continue
        device, files = entry.get("device"), entry.get("gguf_files")
        if device is not None and (not isinstance(device, int) or isinstance(device, bool) or device < 0):
            p.add(fact, f"device {device!r} is not a device number")
            continue
        if files is not None and not _byte_counts(files):
            p.add(fact, f"gguf_files {_short(str(files))} is not a mapping of file names to byte counts")
            continue
        listed = None if files is None else tuple(sorted((str(k), int(v)) for k, v in files.items()))
        out.append(DiskSpace(str(entry["path"]), str(entry.get("checked") or entry["path"]), free, total, device,
                             listed))
    return out


def _byte_counts(value: Any) -> bool:
    """A mapping of names to non-negative ints (bools are not counts)."""
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in value.items()
    )


def _device_nodes(p: _Collector, entries: Any) -> list[DeviceNode]:
    out: list[DeviceNode] = []
    if not isinstance(entries, list):
        p.add("device_nodes", f"expected a list, got {_short(str(entries))}")
        return out
    for position, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("gid"), int):
            p.add(f"device_nodes[{position}]", "expected a mapping with path, gid, group, mode")
            continue
        group = entry.get("group")
        out.append(
            DeviceNode(str(entry.get("path")), int(entry["gid"]), str(group) if group else None, str(entry.get("mode")))
        )
    return out


def _uid_min(p: _Collector, text: Any) -> int | None:
    if text is None:
        return None
    value = None
    for line in str(text).splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "UID_MIN":
            value = _int(p, "login_defs", parts[1], "UID_MIN")
    return value


def parse_probe(host: str, raw: Any) -> ProbedFacts:
    """The host's facts from the probe module's ``raw`` result; :class:`SpecError` listing every malformed fact."""
    p = _Collector()
    if not isinstance(raw, Mapping):
        raise SpecError(host, [Problem(FIELD, f"expected the probe's raw result (a mapping), got {_short(str(raw))}")])
    if raw.get("probe_version") != PROBE_VERSION:
        raise SpecError(
            host,
            [Problem(FIELD, f"probe_version {raw.get('probe_version')!r}, this parser reads {PROBE_VERSION}")],
        )
    failures: list[ToolFailure] = []

    distro = _os_release(p, raw.get("os_release"))

    kernel = None
    record = _command(p, "uname_r", raw.get("uname_r"))
    if record is not None:
        if _succeeded(record):
            kernel = _first_line(str(record.get("stdout", ""))) or None
        else:
            failures.append(_failure("uname", record))

    smi: list[_SmiGpu] = []
    record = _command(p, "nvidia_smi", raw.get("nvidia_smi"))
    if record is not None:
        if _succeeded(record):
            smi = _nvidia_smi(p, record)
        else:
            failures.append(_failure("nvidia-smi", record))

    cards, ignored = _drm_cards(p, raw.get("drm_cards", []))
    kfd = _kfd_nodes(p, raw.get("kfd_nodes", []))

    vulkan: list[VulkanDevice] = []
    record = _command(p, "vulkaninfo", raw.get("vulkaninfo"))
    if record is not None:
        if _succeeded(record):
            vulkan = _vulkan(p, record)
        else:
            failures.append(_failure("vulkaninfo", record))

    gpus = _merge_gpus(cards, smi, kfd, vulkan)

    nvcc = nvcc_path = None
    record = _command(p, "nvcc", raw.get("nvcc"))
    if record is not None:
        argv = record.get("argv") or []
        if _succeeded(record):
            nvcc = _nvcc(p, record)
            nvcc_path = str(argv[0]) if argv else None
        else:
            failures.append(_failure("nvcc", record))
    system, alternates = _compilers(p, raw.get("compilers", []), failures)
    glibc = _glibc(p, raw.get("glibc"), failures)
    hip, rocm_path = _hip(p, raw.get("hipconfig"), failures)
    toolchain = Toolchain(
        nvcc=nvcc,
        nvcc_path=nvcc_path,
        gcc=system.get("gcc"),
        gcc_path=system.get("gcc_path"),
        gxx=system.get("gxx"),
        gxx_path=system.get("gxx_path"),
        alternates=tuple(alternates),
        glibc=glibc,
        hip=hip,
        rocm_path=rocm_path,
    )
    nodes = _device_nodes(p, raw.get("device_nodes", []))
    facts = ProbedFacts(
        host=host,
        distro=distro,
        kernel=kernel,
        gpus=tuple(gpus),
        vulkan_devices=tuple(vulkan),
        toolchain=toolchain,
        ram_bytes=_meminfo(p, raw.get("meminfo")),
        disk=tuple(_disk(p, raw.get("disk", []))),
        device_nodes=tuple(nodes),
        uid_min=_uid_min(p, raw.get("login_defs")),
        kfd_present=any(n.path == "/dev/kfd" for n in nodes),
        tool_failures=tuple(failures),
        ignored_cards=tuple(ignored),
    )
    if p.problems:
        raise SpecError(host, p.problems)
    return facts
