"""The proxy: aiohttp in front of llama-server, re-chunking streamed chat completions, waiting out restarts.

Every request goes to the upstream unchanged, and every answer comes back unchanged, except a streamed chat
completion (``POST /v1/chat/completions`` with ``"stream": true``), whose events pass through
:class:`~llamafleet_sseproxy.rechunk.StreamRechunker`.

Zero-drop restarts: a monitor polls the upstream's ``/health``. While it is not 200 (llama-server stopped,
restarting, loading its model), new requests wait for it, up to ``wait_timeout`` seconds, instead of failing. A
request the upstream refuses, drops before answering, or answers 503 is retried the same way (llama-server
has no side effects to repeat). A stream that breaks after it started ends with an OpenAI-style error event
and ``data: [DONE]``. ``GET /proxy/health`` reports the upstream's state (200 when it is ready, else 503).

Only aiohttp and the standard library are imported: the package is installed on hosts on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from llamafleet_sseproxy.rechunk import KeepAlive, RechunkOptions, StreamRechunker

log = logging.getLogger("sseproxy")

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
HEALTH_PATH = "/proxy/health"
# RFC 9110 7.6.1 hop-by-hop headers, plus the ones aiohttp computes itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
UPSTREAM_ERRORS = (aiohttp.ClientError, TimeoutError, ConnectionError)


@dataclass(frozen=True)
class ProxyConfig:
    """Settings of one proxy process."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    upstream: str = "http://127.0.0.1:8081"
    keepalive: KeepAlive = "pass"
    split_open_brace: bool = False
    wait_timeout: float = 120.0  # how long a request waits for the upstream to become ready
    health_path: str = "/health"
    poll_ready: float = 2.0  # /health polling while the upstream is ready
    poll_down: float = 0.2  # ... and while it is not
    max_body: int = 64 << 20
    max_event_bytes: int = 1 << 20

    def rechunk_options(self) -> RechunkOptions:
        return RechunkOptions(
            keepalive=self.keepalive, split_open_brace=self.split_open_brace, max_event_bytes=self.max_event_bytes
        )


@dataclass
class UpstreamState:
    """What the monitor knows about the upstream; ``ready`` gates new requests."""

    ready: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    status: int | None = None
    error: str | None = None
    since: float = field(default_factory=time.time)
    checks: int = 0
    streams: int = 0
    retries: int = 0
    broken_streams: int = 0

    def set(self, ready: bool, status: int | None, error: str | None) -> None:
        if ready != self.ready.is_set():
            self.since = time.time()
            log.info("upstream %s (status %s, %s)", "ready" if ready else "not ready", status, error or "ok")
        self.status, self.error = status, error
        if ready:
            self.ready.set()
        else:
            self.ready.clear()

    def mark_down(self, why: str) -> None:
        """A request saw the upstream fail: gate new requests until /health says 200 again, and check now."""
        self.set(False, self.status, why)
        self.wake.set()

    async def wait_ready(self, deadline: float) -> bool:
        remaining = deadline - asyncio.get_running_loop().time()
        if self.ready.is_set():
            return True
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(self.ready.wait(), remaining)
        except TimeoutError:
            return False
        return True

    def report(self, upstream: str) -> dict[str, Any]:
        return {
            "upstream": upstream,
            "ready": self.ready.is_set(),
            "status": self.status,
            "error": self.error,
            "since": self.since,
            "checks": self.checks,
            "active_streams": self.streams,
            "retried_requests": self.retries,
            "broken_streams": self.broken_streams,
        }


async def monitor(session: aiohttp.ClientSession, cfg: ProxyConfig, state: UpstreamState) -> None:
    """Poll the upstream's /health forever: slowly while it is ready, quickly (or when woken) while it is not."""
    url = cfg.upstream.rstrip("/") + cfg.health_path
    probe_timeout = aiohttp.ClientTimeout(total=max(1.0, cfg.poll_ready))
    while True:
        state.checks += 1
        try:
            async with session.get(url, timeout=probe_timeout) as resp:
                await resp.read()
                state.set(resp.status == 200, resp.status, None if resp.status == 200 else f"/health {resp.status}")
        except UPSTREAM_ERRORS as exc:
            state.set(False, None, f"{type(exc).__name__}: {exc}")
        state.wake.clear()
        delay = cfg.poll_ready if state.ready.is_set() else cfg.poll_down
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.wake.wait(), delay)


def wants_stream(method: str, path: str, body: bytes) -> bool:
    """True for a streamed chat completion, the one kind of request whose answer is re-chunked."""
    if method != "POST" or path not in CHAT_PATHS:
        return False
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("stream") is True


def forward_headers(headers: Any, drop: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """End-to-end headers only (hop-by-hop ones and those named in Connection are dropped); repeats kept."""
    named = {h.strip().lower() for h in headers.get("Connection", "").split(",") if h.strip()}
    return [
        (key, value)
        for key, value in headers.items()
        if key.lower() not in HOP_BY_HOP and key.lower() not in named and key.lower() not in drop
    ]


def unavailable(cfg: ProxyConfig, state: UpstreamState) -> web.Response:
    message = f"upstream {cfg.upstream} not ready after {cfg.wait_timeout:g} s: {state.error or 'unknown'}"
    body = {"error": {"message": message, "type": "unavailable_error", "code": 503}}
    return web.json_response(body, status=503)


class Proxy:
    """Request handling; one instance per process, holding the upstream session and state."""

    def __init__(self, cfg: ProxyConfig) -> None:
        self.cfg = cfg
        self.state = UpstreamState()
        self.session: aiohttp.ClientSession | None = None
        self.base = cfg.upstream.rstrip("/")

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: the client session and the health monitor live as long as the app."""
        self.session = aiohttp.ClientSession(
            # No idle keep-alive connections to the upstream: llama-server's shutdown waits for open
            # connections, so a pooled one held a `systemctl restart` until SIGKILL (30 s, bench/restart_window.py).
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, force_close=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,  # bodies pass through as the upstream encoded them
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        task = asyncio.ensure_future(monitor(self.session, self.cfg, self.state))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self.session.close()

    async def health(self, request: web.Request) -> web.Response:
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # "uvloop" or "asyncio"
        report = {"proxy": "ok", "event_loop": loop, **self.state.report(self.cfg.upstream)}
        return web.json_response(report, status=200 if self.state.ready.is_set() else 503)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return await self.health(request)
        body = await request.read()
        rechunk = wants_stream(request.method, request.path, body)
        # the body is already read: the upstream must not be asked to say "100 Continue" again
        drop = frozenset({"expect", "accept-encoding"} if rechunk else {"expect"})
        headers = forward_headers(request.headers, drop)
        url = URL(self.base + request.raw_path, encoded=True)  # path and query exactly as received
        assert self.session is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.wait_timeout
        attempt = 0
        while True:
            if attempt:  # the last try failed: wait a moment, and never past the deadline
                self.state.retries += 1
                await asyncio.sleep(min(self.cfg.poll_down, max(0.0, deadline - loop.time())))
                if loop.time() >= deadline:
                    return unavailable(self.cfg, self.state)
            if not await self.state.wait_ready(deadline):
                return unavailable(self.cfg, self.state)
            attempt += 1
            try:
                resp = await self.session.request(
                    request.method,
                    url,
                    headers=headers,
                    data=body or None,
                    allow_redirects=False,
                    skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                )
            except UPSTREAM_ERRORS as exc:  # refused, or dropped before it answered: safe to send again
                self.state.mark_down(f"{type(exc).__name__}: {exc}")
                continue
            if resp.status == 503 and loop.time() < deadline:  # llama-server loading its model
                resp.close()
                self.state.mark_down("upstream answered 503")
                continue
            async with resp:
                out = await self.relay(request, resp, rechunk)
            if out is not None:
                return out
            # the upstream broke before the client got a byte: nothing is lost by asking again

    async def relay(
        self, request: web.Request, resp: aiohttp.ClientResponse, rechunk: bool
    ) -> web.StreamResponse | None:
        """Send the upstream's answer on as it arrives; re-chunk a streamed chat completion.

        Other event streams are only framed (sent on whole events, bytes unchanged), so that one that breaks can
        still end with a clean error event. The client's response starts with the first bytes it gets: until
        then an upstream that breaks costs nothing, and ``None`` tells the caller to ask again.
        """
        event_stream = resp.headers.get("Content-Type", "").startswith("text/event-stream")
        framed = resp.status == 200 and event_stream and "Content-Encoding" not in resp.headers
        headers = forward_headers(resp.headers)
        if resp.headers.get("Content-Length") is not None and not framed:
            headers.append(("Content-Length", resp.headers["Content-Length"]))
        out = web.StreamResponse(status=resp.status, reason=resp.reason, headers=headers)
        framer = StreamRechunker(self.cfg.rechunk_options(), repair=rechunk) if framed else None
        self.state.streams += 1
        try:
            while True:
                try:
                    chunk = await resp.content.readany()
                except UPSTREAM_ERRORS as exc:
                    if not out.prepared:
                        self.state.mark_down(f"upstream broke before answering ({type(exc).__name__}: {exc})")
                        return None
                    await self.broken(request, out, framer, exc)
                    return out
                if not chunk:
                    break
                data = framer.feed(chunk) if framer else chunk
                if data:
                    if not out.prepared:
                        await out.prepare(request)
                    await out.write(data)  # waits while the client is slower: backpressure to the upstream
            tail = framer.finish() if framer else b""
            if not out.prepared:
                await out.prepare(request)
            if tail:
                await out.write(tail)
            await out.write_eof()
        except ConnectionResetError:  # the client went away; leaving closes the upstream connection too
            log.info("client %s went away during %s", request.remote, request.path)
        finally:
            self.state.streams -= 1
        return out

    async def broken(
        self, request: web.Request, out: web.StreamResponse, framer: StreamRechunker | None, exc: BaseException
    ) -> None:
        """The upstream broke mid-answer: end an event stream with an error event; cut a plain body short."""
        self.state.broken_streams += 1
        message = f"upstream connection lost mid-stream ({type(exc).__name__}: {exc}); the server may be restarting"
        self.state.mark_down(message)
        log.warning("%s %s: %s", request.method, request.path, message)
        if framer is None:  # a plain body cannot carry an error: the client must see it cut, not complete
            if request.transport is not None:
                request.transport.close()
            return
        await out.write(framer.abort(message))
        await out.write_eof()


def build_app(cfg: ProxyConfig) -> web.Application:
    proxy = Proxy(cfg)
    app = web.Application(client_max_size=cfg.max_body)
    app.cleanup_ctx.append(proxy.context)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    return app


def make_runner(app: web.Application) -> web.AppRunner:
    """A runner that cancels a handler when its client disconnects (what aiohttp before 3.9 always does)."""
    if "handler_cancellation" in inspect.signature(web.Server.__init__).parameters:
        return web.AppRunner(app, handler_cancellation=True, access_log=None)
    return web.AppRunner(app, access_log=None)


async def serve(cfg: ProxyConfig, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when none is given)."""
    runner = make_runner(build_app(cfg))
    await runner.setup()
    site = web.TCPSite(runner, cfg.listen_host, cfg.listen_port)
    await site.start()
    log.info("listening on %s:%s, upstream %s", cfg.listen_host, cfg.listen_port, cfg.upstream)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
