"""Unavailability while llama-server restarts (what an upgrade's switch does), direct and through the SSE proxy.

Starts a real llama-server and the SSE-repair proxy in front of it on loopback, keeps two clients sending
small chat completions (one direct, one through the proxy), restarts llama-server the way systemd does
(SIGTERM, wait, start the same command), and prints for each path: failed requests, the window without a
successful answer, and the slowest answer; then the proxy's figures as ratios of the direct ones.

    LLAMAFLEET_LLAMA_SERVER=... LLAMAFLEET_SMOLLM2_GGUF=... python bench/restart_window.py [--restarts 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ROOT = REPO / "roles" / "sse_proxy" / "files"  # holds llamafleet_sseproxy/, as <install_dir> on hosts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_health(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not become healthy")


@dataclass
class Client:
    name: str
    url: str
    ok: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of successful requests
    failed: int = 0

    def run(self, stop: threading.Event) -> None:
        body = json.dumps({"model": "local", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
        while not stop.is_set():
            start = time.monotonic()
            try:
                req = urllib.request.Request(self.url, data=body.encode(), headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=120) as r:
                    json.load(r)
                self.ok.append((start, time.monotonic()))
            except (urllib.error.URLError, OSError, ValueError):
                self.failed += 1
                time.sleep(0.05)

    def window(self, restarts: list[float]) -> float:
        """Worst time from a restart until a request sent after it is answered (seconds)."""
        worst = 0.0
        for when in restarts:
            answered = min((end for start, end in self.ok if start >= when), default=float("inf"))
            worst = max(worst, answered - when)
        return worst

    def slowest(self) -> float:
        return max((end - start for start, end in self.ok), default=0.0)


def stop_like_systemd(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after the unit's TimeoutStopSec (30 s), as `systemctl restart` does."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--paths", default="direct,proxy", help="which clients run (comma-separated)")
    parser.add_argument("--stop-timeout", type=float, default=10.0,
                        help="SIGKILL after this many seconds, like the unit's TimeoutStopSec")
    parser.add_argument("--gap", type=float, default=4.0, help="seconds of steady traffic between restarts")
    args = parser.parse_args()
    binary, model = os.environ["LLAMAFLEET_LLAMA_SERVER"], os.environ["LLAMAFLEET_SMOLLM2_GGUF"]
    up, px = free_port(), free_port()
    server_cmd = [binary, "--model", model, "--host", "127.0.0.1", "--port", str(up), "--ctx-size", "2048",
                  "--parallel", "2", "--alias", "local", "--threads", "1"]
    logs = open(os.devnull, "w")
    server = subprocess.Popen(server_cmd, stdout=logs, stderr=logs)
    proxy = subprocess.Popen([sys.executable, "-m", "llamafleet_sseproxy", "--listen", f"127.0.0.1:{px}",
                              "--upstream", f"http://127.0.0.1:{up}", "--wait-timeout", "120"],
                             cwd=PACKAGE_ROOT, env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)},
                             stdout=logs, stderr=logs)
    try:
        wait_health(f"http://127.0.0.1:{up}/health")
        wait_health(f"http://127.0.0.1:{px}/proxy/health")
        urls = {"direct": f"http://127.0.0.1:{up}/v1/chat/completions",
                "proxy": f"http://127.0.0.1:{px}/v1/chat/completions"}
        clients = [Client(name, urls[name]) for name in args.paths.split(",")]
        stop = threading.Event()
        threads = [threading.Thread(target=c.run, args=(stop,)) for c in clients]
        for t in threads:
            t.start()
        restarts = []
        for _ in range(args.restarts):
            time.sleep(args.gap)
            restarts.append(time.monotonic())
            stop_like_systemd(server, args.stop_timeout)
            server = subprocess.Popen(server_cmd, stdout=logs, stderr=logs)
        time.sleep(args.gap)
        stop.set()
        for t in threads:
            t.join()
    finally:
        for p in (proxy, server):
            stop_like_systemd(p, timeout=10)
    print(f"{args.restarts} restarts of llama-server under steady load (one client per path)")
    print(f"{'path':8} {'answered':>9} {'failed':>7} {'window s':>9} {'slowest s':>10}")
    for c in clients:
        print(f"{c.name:8} {len(c.ok):9d} {c.failed:7d} {c.window(restarts):9.2f} {c.slowest():10.2f}")
    if len(clients) == 2:
        direct, proxied = clients
        print(f"proxy/direct: failed {proxied.failed}/{direct.failed}, "
              f"window ratio {proxied.window(restarts) / max(direct.window(restarts), 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
