"""A tiny scripted OpenAI-compatible server for the agent probe's tests: a model that calls tools by itself.

No small GGUF on the package lists calls a tool with ``tool_choice: auto`` (SmolLM2 and Gemma 3 270M answer text),
so the probe's pass is shown against this stand-in. It answers ``/v1/chat/completions`` like llama-server does:

- ``tool_choice: required`` -> a get_weather call with JSON arguments;
- ``tool_choice: auto`` with a write_file tool -> a write_file call of the path and content the request's prompt
  asks for (read back from between its ``<<<`` and ``>>>`` markers), written per ``variant``: ``correct``,
  ``double-escaped`` (``"a\\\\nb"``: literal backslash-n, what a model that escapes twice sends), ``fffd`` (the
  non-ASCII characters replaced by U+FFFD) or ``text`` (no call, a text answer);
- ``stream: true`` -> the same answer as SSE deltas, the arguments cut into 7-character pieces (escapes split
  across events, as llama-server streams them token by token);
- anything else -> a short text answer;

and ``GET /props`` and ``/slots`` with the recorded b11434 answers (tests/programs/probe/fixtures) for the
alias, slots and context it is started with.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "programs" / "probe" / "fixtures"
PROPS = json.loads((FIXTURES / "smollm2-chatml-json-tools-b11434.props.json").read_text())
SLOT = json.loads((FIXTURES / "smollm2-chatml-json-tools-b11434.slots.json").read_text())[0]
VARIANTS = ("correct", "double-escaped", "fffd", "text")
_ASKED = re.compile(r"Create the file (\S+?)\. .*?<<<\n(.*)\n>>>", re.S)


def _asked(body: dict[str, Any]) -> tuple[str, str]:
    text = "\n".join(str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "user")
    match = _ASKED.search(text)
    assert match, f"not the agent probe's prompt: {text[:200]!r}"
    return match.group(1), match.group(2)


def written(content: str, variant: str) -> str:
    """The content string the scripted model puts in write_file's arguments (before JSON encoding)."""
    if variant == "double-escaped":
        return content.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace('"', '\\"')
    if variant == "fffd":
        return "".join(c if c.isascii() else "\ufffd" for c in content)
    return content


class AgentUpstream:
    def __init__(self, port: int, variant: str = "correct", alias: str = "local", slots: int = 1,
                 n_ctx: int = 4096, build_info: str = "b11434-unknown") -> None:
        assert variant in VARIANTS
        self.port, self.variant = port, variant
        self.props = copy.deepcopy(PROPS) | {"model_alias": alias, "total_slots": slots, "build_info": build_info}
        self.props["default_generation_settings"]["n_ctx"] = n_ctx
        self.slots = [dict(SLOT, id=i, n_ctx=n_ctx) for i in range(slots)]
        self.requests: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None

    # --- answers ---

    def message(self, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        names = [t["function"]["name"] for t in body.get("tools") or []]
        if body.get("tool_choice") == "required" and "get_weather" in names:
            return {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "get_weather", "arguments": json.dumps({"city": "Oslo"})}}]}, "tool_calls"
        if body.get("tool_choice") == "auto" and "write_file" in names and self.variant != "text":
            path, content = _asked(body)
            args = json.dumps({"path": path, "content": written(content, self.variant)}, ensure_ascii=False)
            return {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c2", "type": "function", "function": {"name": "write_file", "arguments": args}}]}, "tool_calls"
        return {"role": "assistant", "content": "I would write the file like this: ..."}, "stop"

    def events(self, message: dict[str, Any], finish: str) -> list[dict[str, Any]]:
        def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
            return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}

        out = [chunk({"role": "assistant", "content": None})]
        if message.get("content"):
            out.append(chunk({"content": message["content"]}))
        for i, call in enumerate(message.get("tool_calls") or []):
            out.append(chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                              "function": {"name": call["function"]["name"], "arguments": ""}}]}))
            args = call["function"]["arguments"]
            for at in range(0, len(args), 7):
                out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": args[at:at + 7]}}]}))
        out.append(chunk({}, finish))
        return out

    # --- the server ---

    def start(self) -> AgentUpstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def send(self, code: int, payload: object) -> None:
                data = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?")[0]
                if path == "/props":
                    self.send(200, upstream.props)
                elif path == "/slots":
                    self.send(200, upstream.slots)
                else:
                    self.send(404, {"error": {"code": 404, "message": "File Not Found"}})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                upstream.requests.append(body)
                if self.path != "/v1/chat/completions":
                    self.send(404, {"error": {"code": 404, "message": "File Not Found"}})
                    return
                message, finish = upstream.message(body)
                if not body.get("stream"):
                    self.send(200, {"object": "chat.completion", "model": body.get("model"),
                                    "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for event in upstream.events(message, finish):
                    self.wfile.write(b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n")
                self.wfile.write(b"data: [DONE]\n\n")
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> AgentUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
