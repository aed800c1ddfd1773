"""Fixtures for the fit planner tests: synthetic GGUFs of real architectures, written once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fit_harness import SHAPES, write_model


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gguf")
    return {arch: write_model(root / f"{arch}.gguf", shape) for arch, shape in SHAPES.items()}


@pytest.fixture(scope="session")
def smollm2() -> Path:
    path = os.environ.get("LLAMAFLEET_SMOLLM2_GGUF")
    if not path:
        raise RuntimeError("set LLAMAFLEET_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf")
    return Path(path)
