"""``serve: router`` against the real llama-server: the rendered preset INI and the rendered ExecStart, run as they are.

Two models through one router: SmolLM2-135M (real weights) and a small GGUF written with the ``gguf`` package (qwen3
layout, zero weights), with ``router.models_max: 1``. A request naming a model loads it; the other is evicted
(``GET /models`` status); ``/v1/models`` lists both. The only changes to what the render wrote: the binary's path,
the port (this test's range) and the INI's path (a temporary file holding the rendered text byte for byte).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generators.pipeline import render_hostvars

PORT = 18580


def spec(smollm2: Path, tiny: Path) -> dict[str, Any]:
    return {"llamafleet": {
        "user": "llama",
        "distro": {"name": "debian", "version": "13"},
        "llamacpp": {"build": 11434, "source": {"pypi": {}}, "native": False},
        "models": [{"name": "smollm2", "path": str(smollm2)}, {"name": "tiny", "path": str(tiny)}],
        "servers": [
            {"name": "main", "model": "smollm2", "alias": "local", "ctx": 2048, "threads": 2},
            {"name": "second", "model": "tiny", "alias": "tiny", "ctx": 1024, "threads": 1, "parallel": 2},
        ],
        "serve": "router",
        "router": {"models_max": 1},
    }}


def call(url: str, body: dict[str, Any] | None = None, timeout: float = 120) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def statuses(base: str) -> dict[str, str]:
    return {m["id"]: m["status"]["value"] for m in call(base + "/models")[1]["data"]}


def wait(predicate: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def router(llama_server_bin: Path, smollm2_gguf: Path, models: dict[str, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, list[str]]]:
    rendered = render_hostvars("router-test", spec(smollm2_gguf, models["qwen3"]))
    unit = rendered.plan.servers[0]
    router_plan = rendered.plan.router
    assert router_plan is not None
    ini = next(f.content for f in rendered.files if f.path == router_plan.render_path)
    root = tmp_path_factory.mktemp("router")
    (root / "preset.ini").write_text(ini)
    argv = list(unit.argv)
    argv[0] = str(llama_server_bin)
    argv[argv.index("--port") + 1] = str(PORT)
    argv[argv.index("--models-preset") + 1] = str(root / "preset.ini")
    log = (root / "router.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")} | dict(unit.environment)
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    base = f"http://127.0.0.1:{PORT}"
    try:
        def healthy() -> bool:
            assert proc.poll() is None, (root / "router.log").read_text()[-3000:]
            try:
                return call(base + "/health", timeout=2)[0] == 200
            except OSError:
                return False
        wait(healthy, "the router's /health")
        yield base, ini, argv
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        log.close()


def chat(base: str, model: str) -> tuple[int, dict[str, Any]]:
    return call(base + "/v1/chat/completions", {"model": model, "max_tokens": 4,
                                                "messages": [{"role": "user", "content": "Say hi."}]})


def test_the_rendered_router_serves_both_models_one_at_a_time(router: tuple[str, str, list[str]]) -> None:
    base, ini, argv = router
    print("\nExecStart:", " ".join(argv[1:]))
    print("preset INI:\n" + ini)
    assert argv[argv.index("--models-max") + 1] == "1"
    # SmolLM2 is the default model (servers[0]'s): load-on-startup
    wait(lambda: statuses(base) == {"local": "loaded", "tiny": "unloaded"}, "local loaded at start")
    print("at start:", statuses(base))

    listed = {m["id"] for m in call(base + "/v1/models")[1]["data"]}
    assert listed == {"local", "tiny"}, listed

    code, body = chat(base, "tiny")
    assert code == 200, body
    assert body["model"] == "tiny"
    wait(lambda: statuses(base) == {"local": "unloaded", "tiny": "loaded"}, "tiny loaded, local evicted")
    print("after a request naming tiny:", statuses(base))

    code, body = chat(base, "local")
    assert code == 200, body
    assert body["model"] == "local"
    assert body["choices"][0]["message"]["content"]
    wait(lambda: statuses(base) == {"local": "loaded", "tiny": "unloaded"}, "local loaded, tiny evicted")
    print("after a request naming local:", statuses(base))

    code, body = chat(base, "no-such-model")
    assert code in (400, 404), (code, body)


def test_each_model_runs_with_its_own_preset_flags(router: tuple[str, str, list[str]]) -> None:
    base, _, _ = router
    by_id = {m["id"]: m for m in call(base + "/models")[1]["data"]}
    code, _ = chat(base, "tiny")
    assert code == 200
    args = next(m for m in call(base + "/models")[1]["data"] if m["id"] == "tiny")["status"]["args"]
    print("tiny's child:", " ".join(args[1:]))
    assert args[args.index("--ctx-size") + 1] == "1024" and args[args.index("--parallel") + 1] == "2"
    assert args[args.index("--threads") + 1] == "1"
    assert set(by_id) == {"local", "tiny"}
