"""The one conftest: shared fixtures, and the `integration` marker that `make test-fast` leaves out.

A test is `integration` when it needs something outside the Python process that a fresh checkout does not give:
a real llama-server or the smollm2 GGUF (LLAMAFLEET_* from /tmp/host-llama.env or .ci/host-llama.sh), systemd,
podman, or an ansible-playbook run. It is marked so by its folder (tests/roles/, tests/llama_server/), by the
fixtures below that hand out those things (INTEGRATION_FIXTURES), or by an explicit `@pytest.mark.integration`
where a test calls a system tool itself. `python -m pytest -m "not integration"` runs the rest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakehub import Hub, HubFile, Repo, serve
from fit_harness import SHAPES, write_model
from hubcli import FILE, GOOD_TOKEN, REPO
from proxy_support import ProxyProcess, ScriptedUpstream

TESTS = Path(__file__).resolve().parent
INTEGRATION_DIRS = ("roles", "llama_server")
INTEGRATION_FIXTURES = frozenset({"llama_server_bin", "smollm2_gguf", "smollm2_bytes"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(item.path).resolve().relative_to(TESTS).parts[0]
        if folder in INTEGRATION_DIRS or INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


# --- the real llama-server and model (host-side tests) ---


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    """The real llama-server (env LLAMAFLEET_LLAMA_SERVER); tests that need it fail without it."""
    path = os.environ.get("LLAMAFLEET_LLAMA_SERVER")
    if not path:
        pytest.fail("set LLAMAFLEET_LLAMA_SERVER to a llama-server binary")
    assert os.access(path, os.X_OK), f"{path} is not executable"
    return Path(path)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 (env LLAMAFLEET_SMOLLM2_GGUF); tests that need it fail without it."""
    path = os.environ.get("LLAMAFLEET_SMOLLM2_GGUF")
    if not path:
        pytest.fail("set LLAMAFLEET_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf")
    assert Path(path).read_bytes()[:4] == b"GGUF", f"{path} is not a GGUF file"
    return Path(path)


@pytest.fixture(scope="session")
def smollm2_bytes(smollm2_gguf: Path) -> bytes:
    """The bytes of the real SmolLM2-135M-Instruct Q4_1 GGUF, as the fake hub serves them."""
    return smollm2_gguf.read_bytes()


# --- the fit planner: synthetic GGUFs of real architectures, written once per session ---


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gguf")
    return {arch: write_model(root / f"{arch}.gguf", shape) for arch, shape in SHAPES.items()}


# --- the SSE-repair proxy: a scripted upstream and proxies in front of it ---


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    up = ScriptedUpstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def proxy(upstream: ScriptedUpstream) -> Iterator[ProxyProcess]:
    """The proxy with its defaults (keep-alive comments passed on, no brace split)."""
    p = ProxyProcess(f"http://127.0.0.1:{upstream.port}").start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def proxy_strict(upstream: ScriptedUpstream) -> Iterator[ProxyProcess]:
    """The proxy with keep-alive comments dropped and the opening brace split off."""
    p = ProxyProcess(f"http://127.0.0.1:{upstream.port}", ("--keepalive", "drop", "--split-open-brace")).start()
    yield p
    p.stop()


# --- the model fetcher: a loopback hub serving the real smollm2 GGUF ---


@pytest.fixture(scope="session")
def smollm2_parts(smollm2_bytes: bytes) -> list[bytes]:
    """The model cut in three byte ranges: the fetcher treats the parts of a split GGUF as opaque files."""
    third = len(smollm2_bytes) // 3
    return [smollm2_bytes[:third], smollm2_bytes[third : 2 * third], smollm2_bytes[2 * third :]]


@pytest.fixture
def hub(smollm2_bytes: bytes, smollm2_parts: list[bytes]) -> Iterator[tuple[Hub, str]]:
    """A fresh hub per test: one public repo with the model, a split copy in three parts, and gated repos."""
    model, parts = smollm2_bytes, smollm2_parts
    stem = "split/SmolLM2-135M-Instruct-Q4_1"
    state = Hub(
        repos={
            REPO: Repo(
                files={
                    FILE: HubFile(model),
                    **{f"{stem}-{i:05d}-of-00003.gguf": HubFile(p) for i, p in enumerate(parts, start=1)},
                    "broken/only-00001-of-00002.gguf": HubFile(parts[0]),
                }
            ),
            "meta-llama/Gated-GGUF": Repo(files={FILE: HubFile(model)}, gated=True),
            "owner/granted-GGUF": Repo(files={FILE: HubFile(model)}, gated=True, granted_tokens=frozenset({GOOD_TOKEN})),
        },
        valid_tokens=frozenset({GOOD_TOKEN, "hf_valid_but_not_granted"}),
    )
    server, endpoint = serve(state)
    yield state, endpoint
    server.shutdown()
    server.server_close()
