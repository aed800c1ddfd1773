"""The constrained value types of the host description: names, ports, paths, cache types, backends.

Each pattern is written once here; :mod:`generators.spec.messages` words its error for users. Every pattern
matches the whole value: the ``Field(pattern=...)`` ones are run by pydantic-core's Rust regex, where ``$`` is the
end of the text (a trailing newline is refused, tests/spec/test_fullmatch.py checks it); the compiled ones below
are only ever used with :meth:`re.Pattern.fullmatch`, never ``match`` (whose ``$`` lets one trailing ``\\n``
through).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import Field

ROOT_KEY = "llamafleet"  # the host_vars key holding a host's description

NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,31}$"
MODEL_NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,47}$"
USER_RE = r"^[a-z_][a-z0-9_-]{0,31}$"
ALIAS_RE = r"^[A-Za-z0-9._:-]{1,64}$"
ENV_NAME_RE = r"^[A-Z_][A-Z0-9_]{0,63}$"
ENV_VALUE_RE = r"^[A-Za-z0-9._,:/=+@-]{0,256}$"
VERSION_RE = r"^[0-9]+(\.[0-9]+){0,3}$"
ALT_GCC_RE = r"^[0-9]+(\.[0-9]+){0,2}(:/[A-Za-z0-9._/+-]+)?$"
DISTRO_VERSION_RE = r"^[0-9]+(\.[0-9]+)?$"
CUDA_CC_RE = r"^[0-9]{1,2}\.[0-9]$"
GFX_RE = r"^gfx[0-9a-f]{3,4}$"
CHAT_TEMPLATE_RE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
OLLAMA_MODEL_RE = r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?$"
KEEP_ALIVE_RE = r"^(-1|[0-9]+[smh]?)$"

Name = Annotated[str, Field(pattern=NAME_RE)]
ModelName = Annotated[str, Field(pattern=MODEL_NAME_RE)]
UserName = Annotated[str, Field(pattern=USER_RE)]
Port = Annotated[int, Field(ge=1, le=65535)]
CacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
Backend = Literal["cpu", "cuda", "vulkan", "hip"]
LoadMode = Literal["auto", "none", "mmap", "mlock", "dio"]
Alias = Annotated[str, Field(pattern=ALIAS_RE)]
EnvName = Annotated[str, Field(pattern=ENV_NAME_RE)]
EnvValue = Annotated[str, Field(pattern=ENV_VALUE_RE)]
VersionText = Annotated[str, Field(pattern=VERSION_RE)]
AbsPath = Annotated[str, Field(min_length=2, max_length=4096)]  # checked further by absolute_path()
GPU_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9 ._+()-]{0,63}$"
GpuLayers = Annotated[int, Field(ge=0, le=999)] | Literal["auto", "all"]
Ctx = Annotated[int, Field(ge=256, le=4_194_304)] | Literal["native"]
Parallel = Annotated[int, Field(ge=1, le=256)] | Literal["auto"]

# Characters that would need quoting in a unit file or a shell: refused in paths instead.
# Compiled patterns: fullmatch only (see the module's docstring).
SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+-]*")
RELATIVE_FILE_RE = re.compile(r"[A-Za-z0-9._+][A-Za-z0-9._/+-]{0,254}")

HF_REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
HF_FILE_RE = re.compile(r"[A-Za-z0-9._+][A-Za-z0-9._/+-]{0,254}\.gguf")
HF_REVISION_RE = re.compile(r"[A-Za-z0-9._/][A-Za-z0-9._/-]{0,127}")
HF_SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf\Z")  # searched: anchored at the end with \Z
HF_ENDPOINT_RE = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")

IP_TEXT_RE = re.compile(r"[0-9A-Fa-f:.]{2,45}")  # no zone id (%...), no spaces
# Git: https (public forges), ssh (private ones), git (read-only daemon) and file (a local mirror: offline hosts
# and the tests). Refused: http (cleartext, a man in the middle picks the code that runs as root), scp-like
# ``user@host:path`` (git guesses its meaning) and every transport helper (``ext::`` runs a command).
GIT_URL_RE = re.compile(r"(?:(?:https|ssh|git)://[A-Za-z0-9._~@:\[\]-]+(?:/[A-Za-z0-9._~/+@:-]*)?"
                        r"|file:///[A-Za-z0-9._/+-]+)")
GIT_REF_RE = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._/+-]{0,254}")
PYPI_VERSION_RE = re.compile(r"[0-9A-Za-z.+!_-]{1,64}")

# Which backends each GPU vendor's devices can run.
GPU_VENDOR_BACKENDS: dict[str, tuple[str, ...]] = {
    "nvidia": ("cuda", "vulkan"),
    "amd": ("hip", "vulkan"),
    "intel": ("vulkan",),
    "mesa": ("vulkan",),  # a software Vulkan device (lavapipe): test hosts without a GPU
}


def absolute_path(value: str) -> str:
    """``value`` if it is a normalized absolute path needing no quoting; else ValueError."""
    if not SAFE_PATH.fullmatch(value) or posixpath.normpath(value) != value or value.startswith("//"):
        raise ValueError("must be a normalized absolute path of letters, digits and . _ / + - (no '..', no '//', "
                         "no trailing '/')")
    return value


def relative_file(value: str) -> str:
    """``value`` if it is a plain relative file name (inside a wheel or a repo); else ValueError."""
    if (not RELATIVE_FILE_RE.fullmatch(value) or posixpath.normpath(value) != value
            or ".." in PurePosixPath(value).parts):
        raise ValueError(f"{value!r} must be a relative file name of letters, digits and . _ / + - (no '..', "
                         "no leading '/' or '-', no '//')")
    return value


def ip_text(value: str) -> str:
    """``value`` if it is an IPv4 or IPv6 address without a zone id; else ValueError."""
    try:
        if not IP_TEXT_RE.fullmatch(value):
            raise ValueError
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} must be an IPv4 or IPv6 address (no zone id, no host name)") from None
    return value


def url_host(address: str) -> str:
    """An IP address as a URL's host: IPv6 in brackets (``[::1]``)."""
    return f"[{address}]" if ":" in address else address


def http_url(address: str, port: int, path: str = "") -> str:
    """The one way a URL is built from an address and a port (health checks, probes, clients, the proxy)."""
    return f"http://{url_host(address)}:{port}{path}"


def local_address(address: str) -> str:
    """Where a process on the host itself reaches a listener: a wildcard bind is asked on loopback."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)


def git_url(value: str) -> str:
    if not GIT_URL_RE.fullmatch(value):
        raise ValueError(f"{value!r} must be an https://, ssh://, git:// or file:/// URL of letters, digits and "
                         ". _ ~ / + @ : - (no spaces, no other transport)")
    return value


def git_ref(value: str) -> str:
    """A branch, tag or commit as ``git check-ref-format`` allows it (and no leading ``-``)."""
    bad = (not GIT_REF_RE.fullmatch(value) or ".." in value or "//" in value or "@{" in value
           or value.endswith((".", "/", ".lock")) or any(part.startswith(".") or part.endswith(".lock")
                                                         for part in value.split("/")))
    if bad:
        raise ValueError(f"{value!r} must be a branch, tag or commit (letters, digits and . _ / + -; no leading "
                         "'-' or '.', no '..', '//' or '.lock')")
    return value


def pypi_package(value: str) -> str:
    try:
        canonicalize_name(value, validate=True)
    except InvalidName:
        raise ValueError(f"{value!r} is not a valid PyPI project name") from None
    return value


def pypi_version(value: str) -> str:
    try:
        if not PYPI_VERSION_RE.fullmatch(value):
            raise InvalidVersion
        Version(value)
    except InvalidVersion:
        raise ValueError(f"{value!r} is not a valid version (PEP 440)") from None
    return value


def as_tuple(value: Any) -> Any:
    """YAML lists as tuples (the models are frozen); anything else unchanged for pydantic to judge."""
    return tuple(value) if isinstance(value, list) else value
