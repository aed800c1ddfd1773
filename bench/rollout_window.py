"""Unavailability during a whole rolling upgrade, per host, direct and through the SSE proxy.

On every host (a podman container provisioned by site.yml, the SSE proxy in front of llama-server), two clients
keep sending small chat completions from inside the host while a command runs (the rollout): one straight to
llama-server (port 9080), one through the proxy (port 8080, the port agents use). Afterwards it prints, per host
and path: requests sent, failed, the window without a successful answer (the longest gap between two successes,
failures or not) and the slowest answer; then the proxy's window as a ratio of the direct one. The last line is
the summary as JSON (the upgrade test reads it).

    python bench/rollout_window.py --hosts lf-up1,lf-up2,lf-up3 -- ansible-playbook -i INV playbooks/upgrade.yml -e llamacpp_build=N

molecule/upgrade/test_rolling_upgrade.py runs it around its real three-host upgrade (`make test-upgrade`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time

PATHS = {"direct": 9080, "proxy": 8080}
LOG = "/tmp/llamafleet-rollout-{port}.jsonl"
STOP = "/tmp/llamafleet-rollout.stop"
# The client inside the host: one small completion after another until the stop file appears; one JSON line each.
CLIENT = """
import json, os, sys, time, urllib.request
port, log, stop, interval = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
body = json.dumps({"model": "local", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}).encode()
with open(log, "w", buffering=1) as out:
    while not os.path.exists(stop):
        start = time.time()
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=600) as r:
                ok = r.status == 200 and bool(json.load(r)["choices"])
            error = None
        except Exception as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"[:200]
        out.write(json.dumps({"start": start, "end": time.time(), "ok": ok, "error": error}) + "\\n")
        time.sleep(interval)
"""


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


def start_clients(hosts: list[str], interval: float) -> None:
    for host in hosts:
        podman("exec", host, "rm", "-f", STOP)
        for port in PATHS.values():
            podman("exec", "-d", host, "python3", "-c", CLIENT, str(port), LOG.format(port=port), STOP, str(interval))


def stop_clients(hosts: list[str]) -> dict[str, dict[str, list[dict]]]:
    for host in hosts:
        podman("exec", host, "touch", STOP)
    time.sleep(2)
    records: dict[str, dict[str, list[dict]]] = {}
    for host in hosts:
        records[host] = {}
        for path, port in PATHS.items():
            out = podman("exec", host, "cat", LOG.format(port=port), check=False).stdout
            records[host][path] = [json.loads(line) for line in out.splitlines() if line.strip()]
    return records


def summarise(reqs: list[dict]) -> dict[str, float | int | str | None]:
    """Sent, failed, the longest time without a successful answer, the slowest answer, the first error."""
    ok_ends = [r["end"] for r in reqs if r["ok"]]
    gaps = [b - a for a, b in itertools.pairwise(ok_ends)]
    durations = [r["end"] - r["start"] for r in reqs if r["ok"]]
    errors = [r["error"] for r in reqs if not r["ok"]]
    return {
        "sent": len(reqs),
        "failed": len(errors),
        "window_s": max(gaps, default=0.0),
        "slowest_s": max(durations, default=0.0),
        "median_s": statistics.median(durations) if durations else 0.0,
        "first_error": errors[0] if errors else None,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", required=True, help="comma-separated podman containers")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between a client's requests")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the rollout to run (after --)")
    args = p.parse_args()
    hosts = args.hosts.split(",")
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    start_clients(hosts, args.interval)
    started = time.monotonic()
    try:
        rc = subprocess.run(command, check=False).returncode
    finally:
        records = stop_clients(hosts)
    print(f"\nrollout: rc={rc} in {time.monotonic() - started:.0f} s; a request every {args.interval:g} s per client")
    summary: dict[str, object] = {"rc": rc, "hosts": {}}
    for host in hosts:
        row = {path: summarise(reqs) for path, reqs in records[host].items()}
        summary["hosts"][host] = row  # type: ignore[index]
        d, x = row["direct"], row["proxy"]
        ratio = x["window_s"] / d["window_s"] if d["window_s"] else float("nan")
        print(
            f"{host}: direct {d['sent']} sent, {d['failed']} failed, window {d['window_s']:.1f} s | "
            f"proxy {x['sent']} sent, {x['failed']} failed, window {x['window_s']:.1f} s, "
            f"slowest answer {x['slowest_s']:.1f} s (median {x['median_s']:.2f} s) | proxy/direct window {ratio:.2f}"
        )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
