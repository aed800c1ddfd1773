"""The proxy: aiohttp in front of llama-server, re-chunking streamed chat completions, waiting out restarts.

Every request goes to the upstream unchanged, and every answer comes back unchanged, except a streamed chat
completion (``POST /v1/chat/completions`` with ``"stream": true``), whose events pass through
:class:`~llamafleet_sseproxy.rechunk.StreamRechunker`.

Zero-drop restarts: a monitor polls the upstream's ``/health``. While it is not 200 (llama-server stopped,
restarting, loading its model), new requests wait for it, up to ``wait_timeout`` seconds, instead of failing. A
request is sent again only when it never reached the upstream (the connection was refused) or the upstream
answered 503 (loading): one whose connection drops once it was sent is never replayed (a request that crashes
llama-server must not crash it again), the client gets a 502. A stream that breaks after it started ends with
an OpenAI-style error event and ``data: [DONE]``. ``GET /proxy/health`` reports the upstream's state (200 when
it is ready, else 503); on a bind beyond loopback only to a client holding the API key. ``GET /proxy/metrics``
is the proxy's own counters in Prometheus' text format (:class:`ProxyMetrics`: streams, repairs, held requests,
errors, upstream connections); it needs the API key whenever the proxy has one, on any bind.

Under abuse: with an API key (``api_key``) every request but the upstream's own ``/health`` needs
``Authorization: Bearer <key>``, checked (in constant time) before the body is read; at most
``max_concurrent`` requests are in flight (503 beyond), ``max_connections`` client connections are open (the
longest-idle one is closed to make room, a new one is refused with 503 when none is idle), bodies are capped
(413), header lines and counts too (aiohttp's parser answers 400), and a connection idle for ``idle_timeout``
seconds (before its first request or between requests) is closed. Upstream connections are pooled (kept alive
for ``upstream_keepalive`` seconds, shorter than llama-server's own keep-alive, so the proxy is the side that
closes them and a request never meets a connection the upstream is closing).

Only aiohttp and the standard library are imported: the package is installed on hosts on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import inspect
import ipaddress
import json
import logging
import resource
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
METRICS_PATH = "/proxy/metrics"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text exposition format
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
# the upstream's readiness endpoints stay open without a key (llama-server itself exempts them)
PUBLIC_PATHS = frozenset({"/health", "/v1/health"})
FD_RESERVE = 32  # descriptors kept free for the listening socket, the monitor, logs and the event loop


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
    max_body: int = 16 << 20
    max_event_bytes: int = 1 << 20
    api_key: str | None = None  # when set, requests need "Authorization: Bearer <api_key>"
    max_concurrent: int = 64  # requests in flight; 503 beyond
    max_connections: int = 1024  # open client connections (lowered to what RLIMIT_NOFILE allows)
    idle_timeout: float = 30.0  # seconds a client connection may sit without a request in flight
    upstream_keepalive: float = 2.0  # seconds an idle pooled upstream connection is kept
    max_line_size: int = 8190  # request line and each header line, bytes
    max_headers: int = 100  # header fields per request

    @property
    def loopback(self) -> bool:
        """Whether the proxy listens on loopback only (then /proxy/health tells everything to anyone)."""
        if self.listen_host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.listen_host).is_loopback
        except ValueError:
            return False

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


@dataclass
class ProxyMetrics:
    """The proxy's counters since it started, served at ``/proxy/metrics`` (Prometheus' text format)."""

    requests: int = 0  # admitted requests forwarded to the upstream
    streams: int = 0  # streamed chat completions (the ones the re-chunker sees)
    repaired_streams: int = 0  # ... of which at least one event was re-chunked
    repaired_events: int = 0  # events re-chunked, over every stream
    held: int = 0  # requests that arrived while the upstream was not ready and waited for it
    connects: int = 0  # upstream connections opened (pooled ones are reused without counting again)
    connect_failures: int = 0  # upstream connections refused or failed
    errors: dict[str, int] = field(default_factory=dict)  # kind -> answers the proxy made up, or streams it cut

    ERROR_KINDS = ("unauthorized", "too_large", "busy", "unavailable", "upstream_lost", "broken_stream")

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def trace(self) -> aiohttp.TraceConfig:
        """Counts the upstream session's new connections."""
        config = aiohttp.TraceConfig()

        async def created(session: Any, ctx: Any, params: Any) -> None:
            self.connects += 1

        config.on_connection_create_end.append(created)
        return config

    def text(self, state: UpstreamState, active: int, guard: ConnectionGuard | None) -> str:
        """Every counter and gauge, one ``# HELP``/``# TYPE`` pair each."""
        rows: list[tuple[str, str, str, list[tuple[str, float]]]] = [
            ("requests_total", "counter", "Requests forwarded to llama-server", [("", self.requests)]),
            ("streams_total", "counter", "Streamed chat completions relayed", [("", self.streams)]),
            ("repaired_streams_total", "counter", "Streams in which at least one event was re-chunked",
             [("", self.repaired_streams)]),
            ("repaired_events_total", "counter", "Stream events re-chunked", [("", self.repaired_events)]),
            ("held_requests_total", "counter", "Requests that waited for llama-server to become ready",
             [("", self.held)]),
            ("retried_requests_total", "counter", "Requests sent again after the upstream refused or reset them",
             [("", state.retries)]),
            ("upstream_connects_total", "counter", "Connections opened to llama-server", [("", self.connects)]),
            ("upstream_connect_failures_total", "counter", "Connections to llama-server that failed",
             [("", self.connect_failures)]),
            ("errors_total", "counter", "Error answers the proxy sent and streams it cut, by kind",
             [(f'kind="{kind}"', self.errors.get(kind, 0)) for kind in self.ERROR_KINDS]),
            ("upstream_ready", "gauge", "1 while llama-server answers /health with 200",
             [("", int(state.ready.is_set()))]),
            ("active_requests", "gauge", "Requests in flight", [("", active)]),
            ("active_streams", "gauge", "Answers being relayed", [("", state.streams)]),
        ]
        if guard is not None:
            rows += [
                ("connections", "gauge", "Open client connections", [("", guard.count())]),
                ("refused_connections_total", "counter", "Client connections refused at the limit",
                 [("", guard.refused)]),
            ]
        out = []
        for name, kind, help_text, samples in rows:
            full = "llamafleet_proxy_" + name
            out += [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"]
            out += [f"{full}{{{labels}}} {value}" if labels else f"{full} {value}" for labels, value in samples]
        return "\n".join(out) + "\n"


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


def error(status: int, message: str, kind: str, close: bool = False, **headers: str) -> web.Response:
    """An OpenAI-style error answer; ``close`` ends the connection after it (the body is then never read)."""
    body = {"error": {"message": message, "type": kind, "code": status}}
    resp = web.json_response(body, status=status, headers=headers or None)
    if close:
        resp.force_close()
    return resp


def unavailable(cfg: ProxyConfig, state: UpstreamState) -> web.Response:
    message = f"upstream {cfg.upstream} not ready after {cfg.wait_timeout:g} s: {state.error or 'unknown'}"
    return error(503, message, "unavailable_error")


def fd_budget(wanted: int, max_concurrent: int) -> int:
    """Client connections the open-file limit allows: raise the soft limit to the hard one, keep room for one
    upstream connection per request in flight and a reserve."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return min(wanted, max(8, soft - FD_RESERVE - 2 * max_concurrent))


class ConnectionGuard:
    """Counts the client connections of one aiohttp server: closes those idle past ``idle_timeout`` (a client
    that connects and sends nothing, or half a request line, or nothing after its last answer), and keeps their
    number under ``limit`` by closing the longest-idle one, or refusing the new one when every one is busy."""

    _BODY = b'{"error": {"message": "too many open connections", "type": "unavailable_error", "code": 503}}'
    REFUSAL = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Retry-After: 1\r\nContent-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
    )

    def __init__(self, limit: int, idle_timeout: float) -> None:
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.idle_since: dict[asyncio.BaseTransport, float] = {}  # open connections; absent while busy
        self.busy: dict[asyncio.BaseTransport, int] = {}
        self.refused = 0
        self.closed_idle = 0

    def attach(self, server: web.Server) -> None:
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self.opened(transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            transport = handler.transport
            self.idle_since.pop(transport, None)
            self.busy.pop(transport, None)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def count(self) -> int:
        return len(self.idle_since) + len(self.busy)

    def opened(self, transport: asyncio.Transport) -> None:
        now = asyncio.get_running_loop().time()
        if self.count() >= self.limit:
            if self.idle_since:
                oldest = min(self.idle_since, key=self.idle_since.__getitem__)
                self.idle_since.pop(oldest)
                self.closed_idle += 1
                oldest.close()
            else:
                self.refused += 1
                # answer, half-close, and stop reading: closing now, with the client's request unread, would send
                # a reset that can overtake the answer; the descriptor goes a second later
                transport.pause_reading()
                transport.write(self.REFUSAL)
                if transport.can_write_eof():
                    transport.write_eof()
                asyncio.get_running_loop().call_later(1.0, transport.close)
                return
        self.idle_since[transport] = now

    def start(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is None:
            return
        self.idle_since.pop(transport, None)
        self.busy[transport] = self.busy.get(transport, 0) + 1

    def end(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is None or transport not in self.busy:
            return
        self.busy[transport] -= 1
        if not self.busy[transport]:
            del self.busy[transport]
            if not transport.is_closing():
                self.idle_since[transport] = asyncio.get_running_loop().time()

    async def sweep(self) -> None:
        """Close connections idle past the timeout, forever."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.05, self.idle_timeout / 4))
            cutoff = loop.time() - self.idle_timeout
            for transport in [t for t, since in self.idle_since.items() if since <= cutoff]:
                self.idle_since.pop(transport, None)
                self.closed_idle += 1
                transport.close()


class Proxy:
    """Request handling; one instance per process, holding the upstream sessions and state."""

    def __init__(self, cfg: ProxyConfig, guard: ConnectionGuard | None = None) -> None:
        self.cfg = cfg
        self.state = UpstreamState()
        self.guard = guard
        self.session: aiohttp.ClientSession | None = None
        self.base = cfg.upstream.rstrip("/")
        self.active = 0  # requests in flight
        self.key = cfg.api_key.encode() if cfg.api_key else None
        self.metrics = ProxyMetrics()

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: the client sessions and the health monitor live as long as the app."""
        # Requests share a pool of keep-alive connections, each closed after upstream_keepalive idle seconds:
        # before llama-server's own keep-alive gives up on it (so no request meets a connection being closed),
        # and soon after traffic stops (llama-server's shutdown waits for open connections).
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, keepalive_timeout=self.cfg.upstream_keepalive),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,  # bodies pass through as the upstream encoded them
            cookie_jar=aiohttp.DummyCookieJar(),
            trace_configs=[self.metrics.trace()],
        )
        # The monitor opens a connection per check: a pooled one, used every poll, would never go idle, and
        # would hold llama-server's shutdown (bench/restart_window.py measured 30 s until SIGKILL).
        probes = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, force_close=True),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        tasks = [asyncio.ensure_future(monitor(probes, self.cfg, self.state))]
        if self.guard is not None:
            tasks.append(asyncio.ensure_future(self.guard.sweep()))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.session.close()
        await probes.close()

    def authorized(self, request: web.Request) -> bool:
        """Whether the request carries the key (always true without one); compared in constant time."""
        if self.key is None:
            return True
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key)

    async def health(self, request: web.Request) -> web.Response:
        ready = self.state.ready.is_set()
        if not self.cfg.loopback and (self.key is None or not self.authorized(request)):
            return web.json_response({"proxy": "ok"}, status=200 if ready else 503)
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # "uvloop" or "asyncio"
        report = {"proxy": "ok", "event_loop": loop, **self.state.report(self.cfg.upstream)}
        report["active_requests"] = self.active
        if self.guard is not None:
            report["connections"] = self.guard.count()
            report["connection_limit"] = self.guard.limit
            report["refused_connections"] = self.guard.refused
        return web.json_response(report, status=200 if ready else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        """The counters in Prometheus' text format (the key's check was in :meth:`admission`)."""
        text = self.metrics.text(self.state, self.active, self.guard)
        return web.Response(body=text.encode(), headers={"Content-Type": METRICS_TYPE})

    def admission(self, request: web.Request) -> web.Response | None:
        """The refusal a request gets from its headers alone (key, announced size), or None to go on."""
        if request.path == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return None
        if not (request.path in PUBLIC_PATHS and request.method in ("GET", "HEAD")) and not self.authorized(request):
            self.metrics.error("unauthorized")
            auth = {"WWW-Authenticate": "Bearer"}
            return error(401, "invalid or missing API key", "authentication_error", close=True, **auth)
        if request.content_length is not None and request.content_length > self.cfg.max_body:
            self.metrics.error("too_large")
            message = f"request body of {request.content_length} bytes is over the limit of {self.cfg.max_body}"
            return error(413, message, "invalid_request_error", close=True)
        return None

    async def expect(self, request: web.Request) -> web.Response | None:
        """``Expect: 100-continue``: the client waits for a go before sending its body; refuse it first."""
        refusal = self.admission(request)
        if refusal is not None:
            return refusal
        if request.version == aiohttp.HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer proper has not started
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return await self.health(request)
        refusal = self.admission(request)
        if refusal is not None:
            return refusal
        if request.path == METRICS_PATH and request.method in ("GET", "HEAD"):
            return await self.metrics_page(request)
        if self.active >= self.cfg.max_concurrent:
            self.metrics.error("busy")
            message = f"{self.active} requests in flight, the limit is {self.cfg.max_concurrent}"
            return error(503, message, "unavailable_error", close=True, **{"Retry-After": "1"})
        self.active += 1
        transport = request.transport
        if self.guard is not None:
            self.guard.start(transport)
        try:
            return await self.forward(request)
        finally:
            self.active -= 1
            if self.guard is not None:
                self.guard.end(transport)

    async def forward(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.metrics.error("too_large")
            return error(
                413, f"request body over the limit of {self.cfg.max_body} bytes", "invalid_request_error", True
            )
        rechunk = wants_stream(request.method, request.path, body)
        # the body is already read: the upstream must not be asked to say "100 Continue" again
        drop = frozenset({"expect", "accept-encoding"} if rechunk else {"expect"})
        headers = forward_headers(request.headers, drop)
        url = URL(self.base + request.raw_path, encoded=True)  # path and query exactly as received
        assert self.session is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.wait_timeout
        attempt = 0
        self.metrics.requests += 1
        if not self.state.ready.is_set():
            self.metrics.held += 1
        while True:
            if attempt:  # the last try never reached the upstream: wait a moment, and never past the deadline
                self.state.retries += 1
                await asyncio.sleep(min(self.cfg.poll_down, max(0.0, deadline - loop.time())))
                if loop.time() >= deadline:
                    return self.unavailable()
            if not await self.state.wait_ready(deadline):
                return self.unavailable()
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
            except aiohttp.ClientConnectorError as exc:  # refused: nothing was sent, safe to send again
                self.metrics.connect_failures += 1
                self.state.mark_down(f"{type(exc).__name__}: {exc}")
                continue
            except UPSTREAM_ERRORS as exc:  # sent, then dropped: never replayed (it may be what broke it)
                self.state.mark_down(f"{type(exc).__name__}: {exc}")
                if getattr(exc, "errno", None) in (errno.ECONNRESET, errno.EPIPE):
                    # ... except a reset before any answer: the upstream closed with our request unread (a socket
                    # closed with nothing unread sends a FIN: "server disconnected"), e.g. a pooled connection of
                    # a llama-server just killed. It never read the request: safe to send again.
                    continue
                message = f"upstream connection lost before it answered ({type(exc).__name__}); not sent again"
                log.warning("%s %s: %s", request.method, request.path, message)
                self.metrics.error("upstream_lost")
                return error(502, message, "upstream_error")
            if resp.status == 503 and loop.time() < deadline:  # llama-server loading its model
                resp.close()
                self.state.mark_down("upstream answered 503")
                continue
            async with resp:
                return await self.relay(request, resp, rechunk)

    def unavailable(self) -> web.Response:
        self.metrics.error("unavailable")
        return unavailable(self.cfg, self.state)

    async def relay(self, request: web.Request, resp: aiohttp.ClientResponse, rechunk: bool) -> web.StreamResponse:
        """Send the upstream's answer on as it arrives; re-chunk a streamed chat completion.

        Other event streams are only framed (sent on whole events, bytes unchanged), so that one that breaks can
        still end with a clean error event. A plain answer that breaks before its first byte is a 502.
        """
        event_stream = resp.headers.get("Content-Type", "").startswith("text/event-stream")
        framed = resp.status == 200 and event_stream and "Content-Encoding" not in resp.headers
        headers = forward_headers(resp.headers)
        if resp.headers.get("Content-Length") is not None and not framed:
            headers.append(("Content-Length", resp.headers["Content-Length"]))
        out = web.StreamResponse(status=resp.status, reason=resp.reason, headers=headers)
        framer = StreamRechunker(self.cfg.rechunk_options(), repair=rechunk) if framed else None
        self.state.streams += 1
        if framer is not None and rechunk:
            self.metrics.streams += 1
        try:
            while True:
                try:
                    chunk = await resp.content.readany()
                except UPSTREAM_ERRORS as exc:
                    if not out.prepared and framer is None:
                        self.state.broken_streams += 1
                        self.metrics.error("upstream_lost")
                        self.state.mark_down(f"upstream broke before answering ({type(exc).__name__}: {exc})")
                        return error(
                            502, f"upstream connection lost mid-answer ({type(exc).__name__})", "upstream_error"
                        )
                    if not out.prepared:
                        await out.prepare(request)
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
            if framer is not None and framer.events_changed:
                self.metrics.repaired_streams += 1
                self.metrics.repaired_events += framer.events_changed
        return out

    async def broken(
        self, request: web.Request, out: web.StreamResponse, framer: StreamRechunker | None, exc: BaseException
    ) -> None:
        """The upstream broke mid-answer: end an event stream with an error event; cut a plain body short."""
        self.state.broken_streams += 1
        self.metrics.error("broken_stream")
        message = f"upstream connection lost mid-stream ({type(exc).__name__}: {exc}); the server may be restarting"
        self.state.mark_down(message)
        log.warning("%s %s: %s", request.method, request.path, message)
        if framer is None:  # a plain body cannot carry an error: the client must see it cut, not complete
            if request.transport is not None:
                request.transport.close()
            return
        await out.write(framer.abort(message))
        await out.write_eof()


@web.middleware
async def origin_form(request: web.Request, handler: Any) -> web.StreamResponse:
    """400 for a request target that is not a path (absolute-form, as sent to a forward proxy; authority-form, as
    CONNECT sends; ``*``): before routing, which would answer 404, or build an upstream URL from it."""
    if not request.raw_path.startswith("/") or request.method == "CONNECT":
        return error(400, "request target must be a path (origin-form)", "invalid_request_error", close=True)
    return await handler(request)


def build_app(cfg: ProxyConfig, guard: ConnectionGuard | None = None) -> web.Application:
    proxy = Proxy(cfg, guard)
    app = web.Application(client_max_size=cfg.max_body, middlewares=[origin_form])
    app.cleanup_ctx.append(proxy.context)
    app.router.add_route("*", "/{tail:.*}", proxy.handle, expect_handler=proxy.expect)
    return app


def make_runner(app: web.Application, cfg: ProxyConfig) -> web.AppRunner:
    """A runner that cancels a handler when its client disconnects (what aiohttp before 3.9 always does), with
    the idle timeout and the header limits."""
    kwargs: dict[str, Any] = {
        "access_log": None,
        "keepalive_timeout": cfg.idle_timeout,
        "max_line_size": cfg.max_line_size,
        "max_field_size": cfg.max_line_size,
        "max_headers": cfg.max_headers,
    }
    if "handler_cancellation" in inspect.signature(web.Server.__init__).parameters:
        kwargs["handler_cancellation"] = True
    return web.AppRunner(app, **kwargs)


async def serve(cfg: ProxyConfig, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when none is given)."""
    guard = ConnectionGuard(fd_budget(cfg.max_connections, cfg.max_concurrent), cfg.idle_timeout)
    runner = make_runner(build_app(cfg, guard), cfg)
    await runner.setup()
    assert runner.server is not None
    guard.attach(runner.server)
    site = web.TCPSite(runner, cfg.listen_host, cfg.listen_port, backlog=1024)
    await site.start()
    log.info(
        "listening on %s:%s, upstream %s, %s; at most %d connections, %d requests in flight",
        cfg.listen_host,
        cfg.listen_port,
        cfg.upstream,
        "API key required" if cfg.api_key else "no API key",
        guard.limit,
        cfg.max_concurrent,
    )
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
