"""Record fixtures/b11434 again from the real llama-server (not a test: run it by hand).

    LLAMAFLEET_LLAMA_SERVER=... LLAMAFLEET_SMOLLM2_GGUF=... python tests/status/record_fixtures.py [PORT]

Serves SmolLM2 with ``--ctx-size 2048 --parallel 2 --metrics``, makes three chat completions, records /health,
/v1/models, /props, /slots and /metrics; then starts a 600-token completion and records /slots and /metrics
while it runs.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path

from proxy_support import LlamaServer, http_get

OUT = Path(__file__).parent / "fixtures" / "b11434"


def chat(url: str, content: str, max_tokens: int, **extra: object) -> None:
    body = {"model": "local", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **extra}
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        resp.read()


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 18600
    server = LlamaServer(Path(os.environ["LLAMAFLEET_LLAMA_SERVER"]), Path(os.environ["LLAMAFLEET_SMOLLM2_GGUF"]),
                         port=port, extra=("--metrics", "--parallel", "2")).start()
    try:
        for _ in range(3):
            chat(server.url, "Count from one to ten.", 48, temperature=0)
        for name, path in (("metrics.txt", "/metrics"), ("slots.json", "/slots"), ("props.json", "/props"),
                           ("models.json", "/v1/models"), ("health.json", "/health")):
            (OUT / name).write_bytes(http_get(server.url + path)[1])
        long = threading.Thread(target=chat, args=(server.url, "Write a long story.", 600), kwargs={"ignore_eos": True})
        long.start()
        time.sleep(1.5)
        (OUT / "slots-busy.json").write_bytes(http_get(server.url + "/slots")[1])
        (OUT / "metrics-busy.txt").write_bytes(http_get(server.url + "/metrics")[1])
        long.join()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
