"""Record real llama-server streams into tests/programs/proxy/fixtures/ (run by hand; the tests replay the recordings).

    LLAMAFLEET_LLAMA_SERVER=/path/llama-server LLAMAFLEET_SMOLLM2_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf \
        python tests/programs/proxy/record_fixtures.py

SmolLM2's own chat template has no tool block, and with b11434's grammar a required tool call may still be preceded
by free content, which a 135M model fills forever. So the server gets llama.cpp's Qwen2.5 template
(fixtures/qwen2.5-tools.jinja, from llama.cpp's models/templates) and the tool-call requests prefill the assistant
turn with ``<tool_call>``: llama-server then streams a real, grammar-constrained tool call, token by token.
Each recording is NAME.request.json (what was sent) and NAME.sse (the response body, byte for byte).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEMPLATE = FIXTURES / "qwen2.5-tools.jinja"

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


def tool_request(prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": "local",
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 42,
        "tool_choice": "required",
        "tools": [WRITE_TOOL],
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": "<tool_call>\n"}],
    }


def chat_request(prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": "local",
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 42,
        "messages": [{"role": "user", "content": prompt}],
    }


RECORDINGS: dict[str, dict[str, Any]] = {
    "tool_call_write": tool_request("Write the lines a, b and c to the file abc.txt, one per line.", 40),
    "tool_call_quotes": tool_request('Write the text: she said "hi" and left.\nNext line: C:\\temp to note.txt', 40),
    "tool_call_poem": tool_request("Write a poem of four short lines about the sea to poem.txt.", 64),
    "content_plain": chat_request("Say hello in French.", 24),
    "content_unicode": chat_request("Write the words café, naïve and 東京 with an emoji.", 32),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_health(base: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("llama-server did not become healthy")


def record(base: str, body: dict[str, Any]) -> bytes:
    req = urllib.request.Request(
        base + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        return bytes(resp.read())


def main() -> int:
    server, model = os.environ["LLAMAFLEET_LLAMA_SERVER"], os.environ["LLAMAFLEET_SMOLLM2_GGUF"]
    port = free_port()
    cmd = [server, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-c", "2048", "-np", "1"]
    cmd += ["--alias", "local", "--no-webui", "--chat-template-file", str(TEMPLATE)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_health(base)
        only = set(sys.argv[1:])
        for name, body in RECORDINGS.items():
            if only and name not in only:
                continue
            data = record(base, body)
            (FIXTURES / f"{name}.request.json").write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
            (FIXTURES / f"{name}.sse").write_bytes(data)
            print(f"{name}: {len(data)} bytes, {data.count(b'data: ')} events")
    finally:
        proc.terminate()
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
