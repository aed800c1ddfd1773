"""A loopback Hugging Face hub, just enough of its download protocol for huggingface_hub 2.x clients.

It speaks what ``hf_hub_download``/``get_hf_file_metadata``/``HfApi.get_paths_info`` use:

- ``HEAD|GET /{owner}/{name}/resolve/{revision}/{path}``: ``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag`` (the LFS
  sha256), ``X-Linked-Size``, ``Accept-Ranges``; ``Range: bytes=N-`` answered with 206 and ``Content-Range``;
- ``POST /api/models/{owner}/{name}/paths-info/{revision}`` (form: ``paths``, ``expand``): the tree entries with
  ``oid`` (git blob sha1) and ``lfs: {oid, size, pointerSize}``;
- the hub's errors: missing repo ``404 X-Error-Code: RepoNotFound``, missing revision ``RevisionNotFound``, missing
  file ``EntryNotFound``, gated repo ``403 X-Error-Code: GatedRepo``, a bad token ``401`` with
  ``X-Error-Message: Invalid credentials in Authorization header``.

Faults a test can switch on per file: ``corrupt`` (serve other bytes than the published sha256), ``cut_after``
(close the connection after that many body bytes, then answer 503 until ``down`` is cleared), ``rate`` (send the
body at about that many bytes per second, so a download lasts long enough to be watched).
Every request is recorded (method, path, Range header, whether a token was sent).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    """One file of a repo: its published bytes, and the bytes actually sent (different when corrupted)."""

    data: bytes
    sha256: str = ""
    git_sha1: str = ""
    corrupt: bool = False
    cut_after: int | None = None
    rate: int | None = None  # bytes per second of a body; None: as fast as the socket takes them

    def __post_init__(self) -> None:
        self.sha256, self.git_sha1 = _digests(self.data)

    def served(self) -> bytes:
        if not self.corrupt:
            return self.data
        middle = len(self.data) // 2
        return self.data[:middle] + bytes([self.data[middle] ^ 0xFF]) + self.data[middle + 1 :]


_DIGEST_CACHE: dict[int, tuple[bytes, str, str]] = {}


def _digests(data: bytes) -> tuple[str, str]:
    """sha256 and git blob sha1 of ``data``, computed once per bytes object (tests share the same 94 MiB model)."""
    cached = _DIGEST_CACHE.get(id(data))
    if cached is None or cached[0] is not data:
        git = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
        git.update(data)
        cached = (data, hashlib.sha256(data).hexdigest(), git.hexdigest())
        _DIGEST_CACHE[id(data)] = cached
    return cached[1], cached[2]


@dataclass
class Repo:
    files: dict[str, HubFile]
    revisions: tuple[str, ...] = ("main", COMMIT)
    gated: bool = False
    granted_tokens: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    range: str | None
    token: str | None


@dataclass
class Hub:
    repos: dict[str, Repo] = field(default_factory=dict)
    valid_tokens: frozenset[str] = frozenset()
    down: bool = False  # set after a cut: every request gets 503 until a test clears it
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def downloads(self, filename: str) -> list[Seen]:
        """GET requests of the resolve endpoint for one file: the transfers, not the metadata calls."""
        return [s for s in self.seen if s.method == "GET" and _resolved_file(s.path) == filename]


def _resolved_file(path: str) -> str | None:
    parts = path.lstrip("/").split("/", 4)
    return parts[4] if len(parts) == 5 and parts[2] == "resolve" else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    # -- plumbing
    def _token(self) -> str | None:
        auth = self.headers.get("Authorization")
        return auth.split(" ", 1)[1] if auth and auth.lower().startswith("bearer ") else None

    def _record(self) -> None:
        hub = self.server.hub
        with hub.lock:
            hub.seen.append(
                Seen(self.command, unquote(urlparse(self.path).path), self.headers.get("Range"), self._token())
            )

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _repo(self, repo_id: str, revision: str, for_content: bool) -> Repo | None:
        """The repo, or None after answering with the hub's error."""
        hub = self.server.hub
        token = self._token()
        if hub.down:
            self._error(503, None, "Service Unavailable")
            return None
        if token is not None and token not in hub.valid_tokens:
            self._error(401, None, "Invalid credentials in Authorization header")
            return None
        repo = hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        if revision not in repo.revisions:
            self._error(404, "RevisionNotFound", "Invalid rev id: " + revision)
            return None
        if for_content and repo.gated and token not in repo.granted_tokens:
            self._error(
                403 if token else 401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                f"Visit https://huggingface.co/{repo_id} to ask for access.",
            )
            return None
        return repo

    # -- resolve
    def do_HEAD(self) -> None:
        self._record()
        self._resolve(send_body=False)

    def do_GET(self) -> None:
        self._record()
        self._resolve(send_body=True)

    def _resolve(self, send_body: bool) -> None:
        path = unquote(urlparse(self.path).path).lstrip("/")
        parts = path.split("/", 4)
        if len(parts) != 5 or parts[2] != "resolve":
            self._error(404, None, "Not Found")
            return
        repo_id, revision, filename = f"{parts[0]}/{parts[1]}", parts[3], parts[4]
        repo = self._repo(repo_id, revision, for_content=True)
        if repo is None:
            return
        hub_file = repo.files.get(filename)
        if hub_file is None:
            self._error(404, "EntryNotFound", f'{filename} does not exist on "{revision}"', commit=COMMIT)
            return
        body = hub_file.served()
        size = len(body)
        start = 0
        status = 200
        range_header = self.headers.get("Range")
        if send_body and range_header and range_header.startswith("bytes="):
            first = range_header[len("bytes=") :].split("-", 1)[0]
            start = int(first) if first else 0
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hub_file.sha256}"')
        self.send_header("X-Linked-Etag", f'"{hub_file.sha256}"')
        self.send_header("X-Linked-Size", str(len(hub_file.data)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        if not send_body:
            return
        view = memoryview(body)[start:]
        if hub_file.cut_after is not None:
            self._send(view[: hub_file.cut_after], hub_file.rate)
            self.wfile.flush()
            hub_file.cut_after = None
            self.server.hub.down = True
            self.close_connection = True
            return
        self._send(view, hub_file.rate)

    def _send(self, view: memoryview, rate: int | None) -> None:
        """Write ``view``; with a ``rate``, a tenth of a second's worth at a time, then a pause."""
        if rate is None:
            self.wfile.write(view)
            return
        step = max(1, rate // 10)
        for offset in range(0, len(view), step):
            self.wfile.write(view[offset : offset + step])
            self.wfile.flush()
            time.sleep(step / rate)

    # -- paths-info
    def do_POST(self) -> None:
        self._record()
        path = unquote(urlparse(self.path).path).lstrip("/")
        parts = path.split("/")
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        if len(parts) != 6 or parts[:2] != ["api", "models"] or parts[4] != "paths-info":
            self._error(404, None, "Not Found")
            return
        repo_id, revision = f"{parts[2]}/{parts[3]}", parts[5]
        repo = self._repo(repo_id, revision, for_content=False)
        if repo is None:
            return
        entries = []
        for wanted in form.get("paths", []):
            hub_file = repo.files.get(wanted)
            if hub_file is None:
                continue  # the hub leaves unknown paths out
            size = len(hub_file.data)
            entries.append(
                {
                    "type": "file",
                    "path": wanted,
                    "size": size,
                    "oid": hub_file.git_sha1,
                    "lfs": {"oid": hub_file.sha256, "size": size, "pointerSize": 134},
                }
            )
        body = json.dumps(entries).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: Hub


def serve(hub: Hub, port: int = 0) -> tuple[_Server, str]:
    """Start the hub on 127.0.0.1 on ``port`` (0: a free one), in a daemon thread. Returns the server and its URL."""
    server = _Server(("127.0.0.1", port), _Handler)
    server.hub = hub
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
