"""Record what the real llama-server (b11434) serves into tests/programs/probe/fixtures/ (run by hand; the tests
read the recordings):

    eval "$(bash .ci/host-llama.sh)"; python tests/programs/probe/record_fixtures.py [GEMMA_GGUF]

Three servers, each with ``--jinja``: SmolLM2-135M with its own template (no tool block; ``-np 2`` so the slots
split the context), SmolLM2 with the demo's shipped ``chatml-json-tools`` template, and Gemma 3 270M (default
$LLAMAFLEET_GEMMA3_GGUF) with its own. For each: ``NAME.props.json``, ``NAME.slots.json`` and
``NAME.agent.json``, the answer to the probe module's agent request (tool_choice auto, write_file).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
FIXTURES = HERE / "fixtures"
MODULE = ROOT / "roles/probe/library/llamafleet_agent_probe.py"
TEMPLATE = ROOT / "generators/data/chat_templates/chatml-json-tools.jinja"
PORT = 18519  # agentprobe's range (18500-18519)


def load_module():
    spec = importlib.util.spec_from_file_location("llamafleet_agent_probe", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get(url: str, body: dict | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return {"http_status": exc.code, "body": json.loads(exc.read() or b"{}")}


def record(name: str, argv: list[str], agent_max_tokens: int = 200) -> None:
    probe = load_module()
    proc = subprocess.Popen([*argv, "--host", "127.0.0.1", "--port", str(PORT)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{PORT}"
        for _ in range(600):
            try:
                if urllib.request.urlopen(f"{base}/health", timeout=2).status == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        for path in ("props", "slots"):
            (FIXTURES / f"{name}.{path}.json").write_text(json.dumps(get(f"{base}/{path}"), indent=1) + "\n")
        answer = get(f"{base}/v1/chat/completions", probe.agent_body("probe", agent_max_tokens))
        (FIXTURES / f"{name}.agent.json").write_text(json.dumps(answer, indent=1, ensure_ascii=False) + "\n")
        print(name, json.dumps(answer, ensure_ascii=False)[:300])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    server, smollm2 = os.environ["LLAMAFLEET_LLAMA_SERVER"], os.environ["LLAMAFLEET_SMOLLM2_GGUF"]
    gemma = sys.argv[1] if len(sys.argv) > 1 else os.environ["LLAMAFLEET_GEMMA3_GGUF"]
    FIXTURES.mkdir(exist_ok=True)
    record("smollm2-b11434-np2", [server, "-m", smollm2, "-c", "4096", "-np", "2", "--alias", "local", "--jinja"])
    record("smollm2-chatml-json-tools-b11434", [server, "-m", smollm2, "-c", "4096", "-np", "1", "--alias", "local",
                                                "--jinja", "--chat-template-file", str(TEMPLATE)])
    record("gemma3-270m-b11434", [server, "-m", gemma, "-c", "4096", "-np", "1", "--alias", "gemma", "--jinja"])


if __name__ == "__main__":
    main()
