"""How much the verified-sidecar saves: the fetcher's plan (check mode) on a present model, sidecar valid vs. file
touched (re-hash).

    LLAMAFLEET_SMOLLM2_GGUF=... python bench/hub_recheck.py [ROUNDS]

Serves the smollm2 GGUF from the loopback fake hub (tests/support/fakehub.py), fetches it once (prints the loopback
transfer rate of the first fetch), then times ROUNDS plans of each kind in the same run and prints the ratio.
Both kinds make the same hub call (paths-info); the difference is the sha256 of the local file.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from fakehub import Hub, HubFile, Repo, serve

MODULE = ROOT / "roles" / "hf_models" / "library" / "llamafleet_hf_fetch.py"  # the hf_models role's fetcher


def hub_py(command: str, endpoint: str, dest: Path) -> float:
    """One plan (check mode) or fetch, run as Ansible runs the module: its own process, JSON in and out."""
    params = {"repo": "a/b", "file": "m.gguf", "dest": str(dest), "endpoint": endpoint, "reserve_bytes": 0}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as args:
        json.dump({"ANSIBLE_MODULE_ARGS": {**params, "_ansible_check_mode": command == "plan"}}, args)
        args.flush()
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(MODULE), args.name], capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
    result = json.loads(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(result.get("msg", proc.stderr))
    return elapsed


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    data = Path(os.environ["LLAMAFLEET_SMOLLM2_GGUF"]).read_bytes()
    server, endpoint = serve(Hub(repos={"a/b": Repo(files={"m.gguf": HubFile(data)})}))
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "models"
        first = hub_py("fetch", endpoint, dest)
        print(f"first fetch: {len(data) / 2**20:.1f} MiB in {first:.2f} s ({len(data) / 2**20 / first:.0f} MiB/s)")
        sidecar, rehash = [], []
        for i in range(rounds):
            sidecar.append(hub_py("plan", endpoint, dest))
            os.utime(dest / "m.gguf", ns=(i + 1, i + 1))  # the sidecar no longer matches: hash again
            rehash.append(hub_py("plan", endpoint, dest))
            hub_py("fetch", endpoint, dest)  # renews the sidecar
    server.shutdown()
    a, b = statistics.median(sidecar), statistics.median(rehash)
    print(f"plan, sidecar valid: median {a:.3f} s; plan, file re-hashed: median {b:.3f} s ({rounds} rounds)")
    print(f"ratio re-hash / sidecar: {b / a:.2f}x (for a {len(data) / 2**20:.0f} MiB file; grows with file size)")


if __name__ == "__main__":
    main()
