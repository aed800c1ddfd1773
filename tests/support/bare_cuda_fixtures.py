"""Probe fixtures of CUDA hosts with no nvcc yet, derived from the recorded ones in tests/facts/fixtures.

* ``debian13-rtx4090-bare``: the fresh Debian 13 container (``debian13-container-bare``: no compiler, glibc 2.41)
  with ``rtx4090-desktop``'s NVIDIA driver view (nvidia-smi, the DRM card, its render node) added;
* ``ubuntu2404-rtx4090-bare``: ``rtx4090-desktop`` (Ubuntu 24.04, GCC 13, glibc 2.39) without its nvcc.

``UPDATE_FIXTURES=1 python -m pytest tests/plan/test_toolkits.py`` rewrites them; a test keeps them equal.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "facts" / "fixtures"
NVIDIA_VIEW = ("nvidia_smi", "drm_cards", "device_nodes")  # what the driver and its GPU show the probe


def raw(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "raw.json").read_text())


def derived() -> dict[str, dict[str, Any]]:
    gpu = raw("rtx4090-desktop")
    debian = raw("debian13-container-bare")
    debian.update({key: copy.deepcopy(gpu[key]) for key in NVIDIA_VIEW})
    ubuntu = copy.deepcopy(gpu)
    ubuntu["nvcc"] = None  # `nvcc` not found: the module records no command
    return {"debian13-rtx4090-bare": debian, "ubuntu2404-rtx4090-bare": ubuntu}


def text(probe: dict[str, Any]) -> str:
    return json.dumps(probe, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    for name, probe in derived().items():
        (FIXTURES / name / "raw.json").write_text(text(probe))
