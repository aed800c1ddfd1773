"""Run the hf_models role's fetcher module the way hosts do: its own process, Ansible's JSON in and out.

The module (roles/hf_models/library/llamafleet_hf_fetch.py) runs as any Ansible module does outside Ansible:
``python llamafleet_hf_fetch.py ARGS.json``; check mode (``_ansible_check_mode``) is the plan.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import llamafleet_hf_fetch  # roles/hf_models/library, on pytest's pythonpath (pyproject.toml)

MODULE = Path(llamafleet_hf_fetch.__file__).resolve()
REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
GOOD_TOKEN = "hf_good0123456789"
HOST = "ws-test"
_OPTIONS = {"--repo": "repo", "--file": "file", "--revision": "revision", "--token-file": "token_file",
            "--reserve-bytes": "reserve_bytes"}


@dataclass(frozen=True)
class Result:
    rc: int
    out: dict | None  # the module's result when it succeeded
    err: str  # its failure message (msg), else its stderr

    @property
    def last_line(self) -> str:
        lines = self.err.strip().splitlines()
        return lines[-1] if lines else ""


def module_args(command: str, endpoint: str | None, dest: Path, *extra: str) -> dict[str, object]:
    """The module's arguments for a plan or fetch; ``extra`` takes ``--repo R``-style pairs, as the role's items."""
    assert command in ("plan", "fetch"), command
    args: dict[str, object] = {"host": HOST, "dest": str(dest), "repo": REPO, "file": FILE, "reserve_bytes": 0}
    if endpoint is not None:
        args["endpoint"] = endpoint
    assert len(extra) % 2 == 0, extra
    for option, value in zip(extra[::2], extra[1::2], strict=True):
        args[_OPTIONS[option]] = int(value) if option == "--reserve-bytes" else value
    return {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": command == "plan"}}


def run_hub(command: str, endpoint: str | None, dest: Path, *extra: str, env: dict[str, str] | None = None) -> Result:
    """Run the module as the hosts do: a separate process, its JSON result on stdout."""
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(dest.parent / "home"),  # no token or cache of the test runner leaks in
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **(env or {}),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=dest.parent) as args:
        json.dump(module_args(command, endpoint, dest, *extra), args)
        args.flush()
        proc = subprocess.run(
            [sys.executable, str(MODULE), args.name],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=300,
            check=False,
        )
    result = json.loads(proc.stdout)
    if result.get("failed"):
        return Result(proc.returncode, None, result["msg"])
    return Result(proc.returncode, result, proc.stderr)
