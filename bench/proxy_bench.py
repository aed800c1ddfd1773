"""Throughput and added latency of the SSE-repair proxy against a direct connection, from the same run.

    python bench/proxy_bench.py [--rounds 3] [--events 20000] [--paced-interval-ms 10] [--ttfb-only]

A fast upstream (aiohttp, in a process of its own) streams chat-completion chunks that look like
code generation (newlines, quotes, non-ASCII, a backslash escape cut in two), one write per event as llama-server
does, each stamped with the time it was sent. A lean client (raw aiohttp reads, no JSON parsing) counts events
and measures each one's latency. Every measurement is taken twice, directly and through the proxy (the real
process, ``python -m llamafleet_sseproxy``), interleaved round by round; the printed ratios compare the medians.

First the time to first byte: one-event streams sent one after another on a keep-alive client session, direct
and through the proxy; printed as the added median time to first byte vs direct (goal: at most 1 ms).

Then two regimes, at 1 and 64 concurrent streams:
- saturated: the upstream sends as fast as it can, so the proxy's cost per event is what limits it;
- paced: every stream sends one event per interval (llama-server speeds, with room to spare): the throughput a
  client sees, and the latency the proxy adds per event.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ROOT = REPO / "roles" / "sse_proxy" / "files"  # holds llamafleet_sseproxy/, as <install_dir> on hosts
# JSON string contents: newlines and quotes escaped, a non-ASCII word, and a backslash ("\\\\") cut from its "n"
TOKENS = ["def", " parse", "(", "text", "):", "\\n", "    ", "return", ' \\"', "caf\u00e9", ' \\"', "\\\\", "n", "}"]
TEMPLATE = (
    '{{"choices":[{{"finish_reason":null,"index":0,"delta":{{"content":"{tok}"}}}}],"created":1763780000,'
    '"id":"chatcmpl-bench","model":"local","system_fingerprint":"bench","object":"chat.completion.chunk","t":'
)
EVENTS = [("data: " + TEMPLATE.format(tok=t)).encode() for t in TOKENS]
FINISH = (
    b'data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1763780000,"id":"chatcmpl-bench",'
    b'"model":"local","system_fingerprint":"bench","object":"chat.completion.chunk"}\n\ndata: [DONE]\n\n'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the upstream -----------------------------------------------------------------------------------------------


async def chat(request: web.Request) -> web.StreamResponse:
    doc = await request.json()
    n, interval = int(doc["n"]), float(doc["interval"])
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    clock = time.perf_counter_ns
    for i in range(n):
        await resp.write(EVENTS[i % len(EVENTS)] + str(clock()).encode() + b"}\n\n")
        if interval:
            await asyncio.sleep(interval)
    await resp.write(FINISH)
    await resp.write_eof()
    return resp


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve_upstream(port: int) -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def start(cmd: list[str], ready_url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{cmd} did not become ready")


def start_upstream(port: int) -> subprocess.Popen[bytes]:
    """The upstream runs in a process of its own, on the same event loop the proxy gets (uvloop when installed)."""
    return start([sys.executable, __file__, "--upstream-only", str(port)], f"http://127.0.0.1:{port}/health")


def start_proxy(port: int, upstream: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "llamafleet_sseproxy", "--listen", f"127.0.0.1:{port}"]
    cmd += ["--upstream", f"http://127.0.0.1:{upstream}", "--log-level", "WARNING"]
    return start(cmd, f"http://127.0.0.1:{port}/proxy/health")


# --- the client -------------------------------------------------------------------------------------------------


@dataclass
class Result:
    events: int
    seconds: float
    latencies_us: list[float]
    cpu_s: float = 0.0  # CPU time the proxy process used meanwhile (user + system)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def one_stream(session: ClientSession, url: str, n: int, interval: float, lat: list[float]) -> int:
    body = {"model": "local", "stream": True, "n": n, "interval": interval, "messages": []}
    count = 0
    buf = b""
    clock = time.perf_counter_ns
    async with session.post(url + "/v1/chat/completions", json=body) as resp:
        while True:
            data = await resp.content.readany()
            if not data:
                break
            now = clock()
            buf += data
            *events, buf = buf.split(b"\n\n")
            for ev in events:
                t = ev.rfind(b'"t":')
                if t >= 0:
                    count += 1
                    lat.append((now - int(ev[t + 4 : -1])) / 1000)
    return count


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(url: str, streams: int, n: int, interval: float, pid: int | None = None) -> Result:
    lat: list[float] = []
    conn = TCPConnector(limit=0)
    async with ClientSession(connector=conn, timeout=ClientTimeout(total=None)) as session:
        cpu0 = cpu_seconds(pid)
        start = time.perf_counter()
        counts = await asyncio.gather(*(one_stream(session, url, n, interval, lat) for _ in range(streams)))
        seconds = time.perf_counter() - start
        cpu = cpu_seconds(pid) - cpu0
    assert all(c == n for c in counts), counts
    return Result(sum(counts), seconds, lat, cpu)


async def first_bytes(url: str, requests: int) -> list[float]:
    """Time to first byte (µs) of ``requests`` one-event streams sent one after another on a keep-alive client
    session, as an agent sends its turns: what a fresh upstream connection per request costs shows up here."""
    body = {"model": "local", "stream": True, "n": 1, "interval": 0.0, "messages": []}
    out: list[float] = []
    clock = time.perf_counter_ns
    async with ClientSession(connector=TCPConnector(limit=0), timeout=ClientTimeout(total=None)) as session:
        for _ in range(requests):
            t0 = clock()
            async with session.post(url + "/v1/chat/completions", json=body) as resp:
                await resp.content.readany()
                out.append((clock() - t0) / 1000)
                await resp.read()
    return out


def report_ttfb(direct: list[float], proxied: list[float]) -> dict[str, float]:
    d, p = statistics.median(direct), statistics.median(proxied)
    row = {"direct_ttfb_ms": d / 1000, "proxy_ttfb_ms": p / 1000, "added_ttfb_ms": (p - d) / 1000, "ttfb_ratio": p / d}
    print(
        f"{'time to first byte':<22} direct {row['direct_ttfb_ms']:.3f} ms  proxy {row['proxy_ttfb_ms']:.3f} ms  "
        f"ratio {row['ttfb_ratio']:.2f}  added median time to first byte vs direct +{row['added_ttfb_ms']:.3f} ms "
        f"(goal <= 1 ms; {len(direct)} sequential requests each)",
        flush=True,
    )
    return row


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] if len(values) > 1 else values[0]


def report(name: str, direct: list[Result], proxied: list[Result]) -> dict[str, float]:
    d_rate = statistics.median(r.rate for r in direct)
    p_rate = statistics.median(r.rate for r in proxied)
    d_lat = [x for r in direct for x in r.latencies_us]
    p_lat = [x for r in proxied for x in r.latencies_us]
    row = {
        "direct_ev_s": d_rate,
        "proxy_ev_s": p_rate,
        "ratio": p_rate / d_rate,
        "p50_added_ms": (pct(p_lat, 50) - pct(d_lat, 50)) / 1000,
        "p99_added_ms": (pct(p_lat, 99) - pct(d_lat, 99)) / 1000,
        "direct_p99_ms": pct(d_lat, 99) / 1000,
        "proxy_p99_ms": pct(p_lat, 99) / 1000,
        "proxy_cpu_us_per_event": 1e6 * sum(r.cpu_s for r in proxied) / sum(r.events for r in proxied),
    }
    print(
        f"{name:<22} direct {d_rate:>9.0f} ev/s  proxy {p_rate:>9.0f} ev/s  ratio {row['ratio']:.3f}  "
        f"latency p50 +{row['p50_added_ms']:.3f} ms  p99 +{row['p99_added_ms']:.3f} ms "
        f"(p99 direct {row['direct_p99_ms']:.3f} ms, proxy {row['proxy_p99_ms']:.3f} ms)  "
        f"proxy CPU {row['proxy_cpu_us_per_event']:.1f} us/event",
        flush=True,
    )
    return row


async def run(args: argparse.Namespace, direct_url: str, proxy_url: str, pid: int) -> None:
    plans = [
        ("saturated, 1 stream", 1, args.events, 0.0),
        ("saturated, 64 streams", 64, max(1, args.events // 64), 0.0),
        ("paced, 1 stream", 1, args.paced_events, args.paced_interval_ms / 1000),
        ("paced, 64 streams", 64, args.paced_events, args.paced_interval_ms / 1000),
    ]
    await measure(proxy_url, 4, 200, 0.0)  # warm both paths up
    await measure(direct_url, 4, 200, 0.0)
    d_first: list[float] = []
    p_first: list[float] = []
    for _ in range(args.rounds):  # interleaved, like the rest
        d_first += await first_bytes(direct_url, args.ttfb_requests)
        p_first += await first_bytes(proxy_url, args.ttfb_requests)
    report_ttfb(d_first, p_first)
    if args.ttfb_only:
        return
    for name, streams, n, interval in plans:
        direct: list[Result] = []
        proxied: list[Result] = []
        for _ in range(args.rounds):
            direct.append(await measure(direct_url, streams, n, interval))
            proxied.append(await measure(proxy_url, streams, n, interval, pid))
        report(name, direct, proxied)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="interleaved direct/proxy rounds per measurement")
    p.add_argument("--events", type=int, default=20000, help="events per saturated measurement (all streams)")
    p.add_argument("--paced-events", type=int, default=300, help="events per stream when paced")
    p.add_argument("--paced-interval-ms", type=float, default=10.0, help="time between a paced stream's events")
    p.add_argument("--ttfb-requests", type=int, default=200, help="sequential requests per time-to-first-byte round")
    p.add_argument("--ttfb-only", action="store_true", help="measure the time to first byte only")
    p.add_argument("--upstream-only", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.upstream_only:
        from llamafleet_sseproxy.__main__ import run as run_loop  # the proxy's own choice (PYTHONPATH from start)

        run_loop(serve_upstream(args.upstream_only))
        return 0
    up_port, proxy_port = free_port(), free_port()
    upstream = start_upstream(up_port)
    proxy = start_proxy(proxy_port, up_port)
    try:
        print(
            f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}; {len(TOKENS)}-token code-like stream; "
            f"event loop {'uvloop' if importlib.util.find_spec('uvloop') else 'asyncio'}"
        )
        asyncio.run(run(args, f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{proxy_port}", proxy.pid))
    finally:
        for proc in (proxy, upstream):
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
