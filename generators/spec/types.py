"""The constrained value types of the host description: names, ports, paths, cache types, backends.

Each pattern is written once here; :mod:`generators.spec.messages` words its error for users.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

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
AbsPath = Annotated[str, Field(min_length=2)]  # checked further by absolute_path()
GpuLayers = Annotated[int, Field(ge=0, le=999)] | Literal["auto", "all"]
Ctx = Annotated[int, Field(ge=256, le=4_194_304)] | Literal["native"]
Parallel = Annotated[int, Field(ge=1, le=256)] | Literal["auto"]

# Characters that would need quoting in a unit file or a shell: refused in paths instead.
SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")

HF_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
HF_FILE_RE = re.compile(r"^[A-Za-z0-9._+-][A-Za-z0-9._/+-]{0,254}\.gguf$")
HF_REVISION_RE = re.compile(r"^[A-Za-z0-9._/-]{1,128}$")
HF_SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
HF_ENDPOINT_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")

# Which backends each GPU vendor's devices can run.
GPU_VENDOR_BACKENDS: dict[str, tuple[str, ...]] = {
    "nvidia": ("cuda", "vulkan"),
    "amd": ("hip", "vulkan"),
    "intel": ("vulkan",),
    "mesa": ("vulkan",),  # a software Vulkan device (lavapipe): test hosts without a GPU
}


def absolute_path(value: str) -> str:
    """``value`` if it is an absolute path needing no quoting and without ``..``; else ValueError."""
    if not SAFE_PATH.match(value) or ".." in PurePosixPath(value).parts:
        raise ValueError("must be an absolute path of letters, digits and . _ / + - (no '..')")
    return value


def as_tuple(value: Any) -> Any:
    """YAML lists as tuples (the models are frozen); anything else unchanged for pydantic to judge."""
    return tuple(value) if isinstance(value, list) else value
