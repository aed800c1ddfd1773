"""Run generators/hub.py the way hosts do: its own process, one JSON line on stdout, one error line on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HUB_PY = Path(__file__).resolve().parents[2] / "generators" / "hub.py"
REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
GOOD_TOKEN = "hf_good0123456789"
HOST = "ws-test"


@dataclass(frozen=True)
class Result:
    rc: int
    out: dict | None
    err: str

    @property
    def last_line(self) -> str:
        lines = self.err.strip().splitlines()
        return lines[-1] if lines else ""


def run_hub(command: str, endpoint: str | None, dest: Path, *extra: str, env: dict[str, str] | None = None) -> Result:
    """Run hub.py as the hosts do: a separate process, its one JSON line on stdout, its error line on stderr."""
    args = [sys.executable, str(HUB_PY), command, "--host", HOST, "--dest", str(dest)]
    if endpoint is not None:
        args += ["--endpoint", endpoint]
    if not any(a == "--repo" for a in extra):
        args += ["--repo", REPO]
    if not any(a == "--file" for a in extra):
        args += ["--file", FILE]
    if "--reserve-bytes" not in extra:
        args += ["--reserve-bytes", "0"]
    args += list(extra)
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(dest.parent / "home"),  # no token or cache of the test runner leaks in
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **(env or {}),
    }
    proc = subprocess.run(args, capture_output=True, text=True, env=full_env, timeout=300, check=False)
    out = json.loads(proc.stdout) if proc.returncode == 0 else None
    return Result(proc.returncode, out, proc.stderr)
