"""Test support for the SSE-repair proxy: a scripted aiohttp upstream, the proxy as a real process, stream builders.

The scripted upstream is a real HTTP server (aiohttp, in a thread of the test process) that answers a streamed
chat completion with the exact bytes a test scripts, chunk by chunk, as llama-server would; the proxy under test
runs as its own process (``python -m llamafleet_sseproxy``, the package alone on PYTHONPATH), and clients are real ones (``openai``, aiohttp).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import openai
from aiohttp import web

REPO = Path(__file__).resolve().parents[2]
PACKAGE_ROOT = REPO / "roles" / "sse_proxy" / "files"  # holds llamafleet_sseproxy/, as <install_dir> on hosts
FIXTURES = REPO / "tests" / "programs" / "proxy" / "fixtures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- streams as llama-server writes them ----------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {
        "choices": [{"finish_reason": finish, "index": index, "delta": delta}],
        "created": 1763780000,
        "id": "chatcmpl-test",
        "model": "local",
        "system_fingerprint": "b11434-test",
        "object": "chat.completion.chunk",
    }


def event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogateescape") + b"\n\n"


DONE = b"data: [DONE]\n\n"


def tool_call_events(fragments: list[str], name: str = "write", call_id: str = "call_1") -> list[bytes]:
    """A tool call streamed like llama-server: the name with the first fragment, then one fragment per event."""
    out = [event(chunk({"role": "assistant", "content": None}))]
    for i, frag in enumerate(fragments):
        call: dict[str, Any] = {"index": 0, "function": {"arguments": frag}}
        if i == 0:
            call = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": frag}}
        out.append(event(chunk({"tool_calls": [call]})))
    out.append(event(chunk({}, finish="tool_calls")))
    return [*out, DONE]


def content_events(fragments: list[str]) -> list[bytes]:
    out = [event(chunk({"role": "assistant", "content": None}))]
    out += [event(chunk({"content": frag})) for frag in fragments]
    return [*out, event(chunk({}, finish="stop")), DONE]


def split_bytes(events: list[bytes], size: int) -> list[bytes]:
    """The same stream cut into TCP-sized pieces of ``size`` bytes (events split anywhere, even mid-line)."""
    data = b"".join(events)
    return [data[i : i + size] for i in range(0, len(data), size)]


# --- the scripted upstream ------------------------------------------------------------------------------------


@dataclass
class Script:
    """What the upstream answers to a chat completion whose last user message names this script."""

    chunks: list[bytes]
    status: int = 200
    break_after: int | None = None  # close the connection after this many chunks, mid-stream
    delay: float = 0.0  # seconds between chunks
    drop: bool = False  # close the connection on receiving the request, before any answer


@dataclass
class ScriptedUpstream:
    """A real aiohttp server that stands in for llama-server, on its own loop in a thread."""

    port: int = field(default_factory=free_port)
    scripts: dict[str, Script] = field(default_factory=dict)
    health: int = 200
    chat_status: int | None = None  # answer every chat completion with this status (e.g. 503 while "loading")
    requests: list[dict[str, Any]] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # bytes of each script written so far
    finished: set[str] = field(default_factory=set)  # scripts written to the end
    abandoned: set[str] = field(default_factory=set)  # scripts whose reader went away mid-stream
    peers: list[int] = field(default_factory=list)  # the client port of each request to an echoed path
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    def start(self) -> ScriptedUpstream:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(5)
        self._loop.close()
        self._loop = None

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(10)

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def _stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        if self.health == 200:
            return web.json_response({"status": "ok"})
        return web.json_response({"error": {"code": 503, "message": "Loading model"}}, status=self.health)

    async def _models(self, request: web.Request) -> web.Response:
        body = b'{"object":"list","data":[{"id":"local","object":"model","owned_by":"llamacpp"}]}'
        return web.Response(body=body, content_type="application/json", headers={"X-Upstream": "scripted"})

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername")[1])
        doc = {
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body.decode("latin-1"),
        }
        return web.json_response(doc, status=404 if request.path.startswith("/missing") else 200)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        doc = await request.json()
        self.requests.append(doc)
        if self.chat_status is not None:
            err = {"error": {"code": self.chat_status, "message": "Loading model", "type": "unavailable_error"}}
            return web.json_response(err, status=self.chat_status)
        name = doc["messages"][-1]["content"]
        script = self.scripts[name]
        if script.drop:
            assert request.transport is not None
            request.transport.close()  # the upstream dies on this request: not a byte of an answer
            return web.Response()
        if not doc.get("stream"):
            return web.Response(body=b"".join(script.chunks), status=script.status, content_type="application/json")
        resp = web.StreamResponse(status=script.status, headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, piece in enumerate(script.chunks):
            if script.break_after is not None and i == script.break_after:
                assert request.transport is not None
                request.transport.close()  # the upstream dies mid-stream: no terminating chunk
                return resp
            try:
                await resp.write(piece)  # waits while the reader (the proxy) does not keep up
            except ConnectionResetError:
                self.abandoned.add(name)
                raise
            self.sent[name] = self.sent.get(name, 0) + len(piece)
            if script.delay:
                await asyncio.sleep(script.delay)
        await resp.write_eof()
        self.finished.add(name)
        return resp


# --- the proxy, as the process a host runs --------------------------------------------------------------------


@dataclass
class ProxyProcess:
    upstream: str
    args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    listen: str = "127.0.0.1"  # the proxy's bind address (clients always come in on 127.0.0.1)
    nofile: int | None = None  # the proxy's open-file limit (soft and hard), as a unit's LimitNOFILE sets it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ProxyProcess:
        python = os.environ.get("LLAMAFLEET_PROXY_PYTHON", sys.executable)  # e.g. one with the distro's aiohttp
        cmd = [python, "-m", "llamafleet_sseproxy", "--listen", f"{self.listen}:{self.port}"]
        if self.nofile is not None:  # prlimit sets the limit, then executes the proxy (same process)
            cmd = ["prlimit", f"--nofile={self.nofile}:{self.nofile}", "--", *cmd]
        cmd += ["--upstream", self.upstream, "--poll-interval", "0.5", *self.args]
        env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}  # as the unit runs it: no generators/ in reach
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - read back and closed by stop()
        self.proc = subprocess.Popen(cmd, cwd=PACKAGE_ROOT, env=env, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited: {self.stop()}")
            try:
                status, _ = http_get(self.url + "/proxy/health")
                if status in (200, 503):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("proxy did not answer /proxy/health")

    def stop(self) -> str:
        """Stop the proxy; its log (stderr)."""
        assert self.proc is not None and self.log is not None
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        self.log.close()
        return text

    def client(self, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="sk-local", max_retries=0, **kw)


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def http_post(url: str, doc: Any, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        url, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


# --- reading a stream with the openai client ------------------------------------------------------------------

WRITE_TOOL = {
    "type": "function",
    "function": {
        "name": "write",
        "description": "Write a file",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
}


@dataclass
class Received:
    """What an OpenAI client saw, fragment by fragment."""

    content: list[str] = field(default_factory=list)
    arguments: dict[int, list[str]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    finish: str | None = None

    def args(self, index: int = 0) -> str:
        return "".join(self.arguments.get(index, []))


def receive(client: openai.OpenAI, script: str, **kw: Any) -> Received:
    got = Received()
    stream = client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": script}], stream=True, tools=[WRITE_TOOL], **kw
    )
    for c in stream:
        for choice in c.choices:
            delta = choice.delta
            if delta.content is not None:
                got.content.append(delta.content)
            for call in delta.tool_calls or []:
                if call.function is not None and call.function.name:
                    got.names[call.index] = call.function.name
                if call.function is not None and call.function.arguments is not None:
                    got.arguments.setdefault(call.index, []).append(call.function.arguments)
            if choice.finish_reason is not None:
                got.finish = choice.finish_reason
    return got


def boundaries(fragments: list[str]) -> Iterator[int]:
    """Positions in the concatenation where one fragment ends and the next begins."""
    pos = 0
    for frag in fragments[:-1]:
        pos += len(frag)
        yield pos


# --- the real llama-server ------------------------------------------------------------------------------------


@dataclass
class LlamaServer:
    """A real llama-server on loopback, started and stopped (or killed) by the test."""

    binary: Path
    model: Path
    port: int = field(default_factory=free_port)
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> LlamaServer:
        cmd = [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--alias", "local", "--no-webui", "-c", "2048", "-t", "2", *self.extra]
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.proc.returncode}")
            try:
                if http_get(self.url + "/health", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("llama-server did not become healthy")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
