"""The status reader in front of a router (``serve: router``): llama-server's router answers /props, /slots and
/metrics per model and refuses them without ``?model=`` (HTTP 400, seen on the Molecule router host), so the reader
names the model /v1/models lists as loaded, and reads none of them while nothing is loaded."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import llamafleet_status
import pytest


class Router(BaseHTTPRequestHandler):
    """Answers as the b11434 router does: per-model endpoints need ?model=; /v1/models gives each model's state."""

    loaded: str | None = "tiny"
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        Router.seen.append(self.path)
        model = parse_qs(url.query).get("model", [None])[0]
        if url.path == "/health":
            self._send(200, {"status": "ok"})
        elif url.path == "/v1/models":
            self._send(200, {"data": [{"id": m, "status": {"value": "loaded" if m == Router.loaded else "unloaded"}}
                                      for m in ("local", "tiny")]})
        elif model is None:
            self._send(400, {"error": {"message": "model is required"}})
        else:
            self._send(200, {"model": model})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def router() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Router)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Router.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_router_is_read_for_its_loaded_model(router: str) -> None:
    Router.loaded = "tiny"
    read = llamafleet_status.read_server({"name": "main", "health_url": f"{router}/health", "router": {}}, 5)
    ends = read["endpoints"]
    assert {n: ends[n]["status"] for n in ends} == {"health": 200, "models": 200, "props": 200, "slots": 200,
                                                   "metrics": 200}
    assert json.loads(ends["slots"]["body"]) == {"model": "tiny"}
    assert "/metrics?model=tiny" in Router.seen


def test_a_router_with_nothing_loaded_says_so_instead_of_asking(router: str) -> None:
    Router.loaded = None
    ends = llamafleet_status.read_server({"name": "main", "health_url": f"{router}/health", "router": {}}, 5)["endpoints"]
    assert ends["props"] == {"status": None, "body": "", "error": "no model loaded (router)"}
    assert not [p for p in Router.seen if p.startswith(("/props", "/slots", "/metrics"))]


def test_a_plain_server_is_read_without_a_model(router: str) -> None:
    ends = llamafleet_status.read_server({"name": "main", "health_url": f"{router}/health"}, 5)["endpoints"]
    assert ends["slots"]["status"] == 400  # this scripted router refuses it: a plain server never gets ?model=
    assert "/slots" in Router.seen
