"""Survey: do real llama-server tool-call streams ever cut a UTF-8 character or a JSON escape between events?

Run by hand; it records every stream into tests/programs/proxy/fixtures/split_survey/ and prints what it saw.
test_proxy_split_survey.py replays the recordings (the proxy's repair and an AI-SDK-style reassembly).

    eval "$(bash .ci/host-llama.sh)"; python tests/programs/proxy/record_split_survey.py

Servers (``--jinja``, tools-capable templates, ``tool_choice: required``):
- ``smollm2-chatml``: SmolLM2-135M with the template the fleet ships for it (generators/data/chat_templates/
  chatml-json-tools.jinja), the exact setup of a host whose model has no tool block;
- ``smollm2-hermes``: SmolLM2-135M with llama.cpp's Qwen2.5 template (a ``<tool_call>`` format, the assistant
  turn prefilled with ``<tool_call>`` as record_fixtures.py explains);
- ``gemma3``: Gemma 3 270M (SentencePiece vocabulary with byte fallback) with its own template.

Prompts ask for file content with é, ✓, an emoji, CJK, quotes, tabs, newlines and backslashes. Half the requests
also pin ``content`` to such a string through the tool's JSON schema (``enum``): the grammar then makes the model
spell exactly those characters, choosing at temperature > 0 between whole-character tokens and byte tokens
(SmolLM2's byte-level BPE, Gemma's ``<0xF0>``… fallback) and between ``\\n`` and ``\\`` + ``n`` pieces — the token
boundaries a split would need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
OUT = HERE / "fixtures" / "split_survey"
PORT = int(os.environ.get("SURVEY_PORT", "18561"))

HAZARDS = [
    'café ✓ 東京 🎉\n\tshe said "hi"\nC:\\temp naïve 😀',
    "日本語\t\"x\"\\\\n ñ ✓✓ 🌊🎉 é\r\nend",
]
PROMPTS = [
    "Write a file notes.txt with two lines: the first 'café ✓', the second '東京 🎉'.",
    'Write to quote.txt the text: she said "hi"\tand left.\nNext line: C:\\temp',
    "Save the words naïve, résumé, 日本語 and the emoji 😀 to words.txt, one per line, with a tab before each.",
    "Write a short poem with accents (é, è, ñ), a check mark ✓ and an emoji 🌊 to poem.txt.",
]
TEMPERATURES = [0.8, 1.3]


def write_tool(pinned: str | None) -> dict[str, Any]:
    content: dict[str, Any] = {"type": "string"}
    path: dict[str, Any] = {"type": "string"}
    if pinned is not None:
        content["enum"] = [pinned]
        path["enum"] = ["notes.txt"]
    return {
        "type": "function",
        "function": {
            "name": "write",
            "description": "Write a file",
            "parameters": {
                "type": "object",
                "properties": {"path": path, "content": content},
                "required": ["path", "content"],
            },
        },
    }


SERVERS: dict[str, dict[str, Any]] = {
    "smollm2-chatml": {
        "model": "LLAMAFLEET_SMOLLM2_GGUF",
        "template": REPO / "generators" / "data" / "chat_templates" / "chatml-json-tools.jinja",
        "prefill": None,
        "free_seeds": [7, 99991],  # with each prompt, at the first temperature
        "pinned_seeds": [1, 42, 1234],  # with each hazard and temperature
    },
    "smollm2-hermes": {
        "model": "LLAMAFLEET_SMOLLM2_GGUF",
        "template": HERE / "fixtures" / "qwen2.5-tools.jinja",
        "prefill": "<tool_call>\n",
        "free_seeds": [],  # fixtures/tool_call_*.sse hold free calls of this setup at temperature 0
        "pinned_seeds": [1, 42],
    },
    # a 262k vocabulary makes every grammar-constrained token slow on 2 cores: fewer runs
    "gemma3": {"model": "LLAMAFLEET_GEMMA3_GGUF", "template": None, "prefill": None, "free_seeds": [7],
               "pinned_seeds": [42]},
}


def request(prompt: str, seed: int, temperature: float, pinned: str | None, prefill: str | None) -> dict[str, Any]:
    messages: list[dict[str, str]] = [{"role": "user", "content": prompt}]
    if prefill:
        messages.append({"role": "assistant", "content": prefill})
    return {
        "model": "local",
        "stream": True,
        "max_tokens": 64 if pinned is None else 80,  # 80: one whole call of either hazard
        "temperature": temperature,
        "seed": seed,
        "tool_choice": "required",
        "tools": [write_tool(pinned)],
        "messages": messages,
    }


def wait_health(base: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("llama-server did not become healthy")


def post(base: str, body: dict[str, Any]) -> bytes:
    req = urllib.request.Request(
        base + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        return bytes(resp.read())


def argument_deltas(stream: bytes) -> list[bytes]:
    """The raw bytes of every tool-call ``arguments`` delta, as the JSON string literal's decoded value in UTF-8."""
    out: list[bytes] = []
    for event in stream.split(b"\n\n"):
        if not event.startswith(b"data: ") or event == b"data: [DONE]":
            continue
        chunk = json.loads(event[6:].decode("utf-8", "surrogateescape"))
        for choice in chunk.get("choices", []):
            for call in (choice.get("delta") or {}).get("tool_calls") or []:
                args = (call.get("function") or {}).get("arguments")
                if isinstance(args, str):
                    out.append(args.encode("utf-8", "surrogatepass"))
    return out


def main() -> int:
    server_bin = os.environ["LLAMAFLEET_LLAMA_SERVER"]
    only = set(sys.argv[1:])
    OUT.mkdir(parents=True, exist_ok=True)
    for name, conf in SERVERS.items():
        if only and name not in only:
            continue
        model = os.environ[conf["model"]]
        cmd = [server_bin, "-m", model, "--host", "127.0.0.1", "--port", str(PORT), "-c", "4096", "-np", "1"]
        cmd += ["--alias", "local", "--no-webui", "--jinja", "-t", "2"]
        if conf["template"] is not None:
            cmd += ["--chat-template-file", str(conf["template"])]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{PORT}"
            wait_health(base)
            runs = [(pi, p, s, TEMPERATURES[0], None) for pi, p in enumerate(PROMPTS) for s in conf["free_seeds"]]
            runs += [
                (hi, PROMPTS[hi], seed, t, h)
                for hi, h in enumerate(HAZARDS)
                for seed in conf["pinned_seeds"]
                for t in TEMPERATURES
            ]
            n = 0
            for pi, prompt, seed, temperature, pinned in runs:
                body = request(prompt, seed, temperature, pinned, conf["prefill"])
                kind = f"pinned{pi}" if pinned else f"free{pi}"
                tag = f"{name}-{kind}-s{seed}-t{temperature:g}"
                if (OUT / f"{tag}.sse").exists():  # recorded by an earlier, interrupted run
                    continue
                data = post(base, body)
                (OUT / f"{tag}.request.json").write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n")
                (OUT / f"{tag}.sse").write_bytes(data)
                deltas = argument_deltas(data)
                bad = [d for d in deltas if not _utf8(d) or d.endswith(b"\\")]
                n += 1
                print(f"{tag}: {data.count(b'data: ')} events, {len(deltas)} argument deltas, suspect {bad[:3]}",
                      flush=True)
            print(f"{name}: {n} streams")
        finally:
            proc.terminate()
            proc.wait(30)
    return 0


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return "\ufffd" not in data.decode("utf-8")


if __name__ == "__main__":
    sys.exit(main())
