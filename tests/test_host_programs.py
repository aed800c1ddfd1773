"""Programs that run on hosts live in the roles that install them and import nothing from the controller package.

Every .py under roles/*/files (shipped as files: the SSE proxy package, the CUDA bundle extractor) and
roles/*/library (Ansible modules: the hub fetcher) is parsed and every import, function-level ones included,
is checked. generators/ itself holds none of them any more.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOST_PROGRAMS = sorted(
    p for pattern in ("roles/*/files/**/*.py", "roles/*/library/**/*.py") for p in ROOT.glob(pattern)
)
MOVED = ("generators/sseproxy", "generators/hub.py", "generators/bundle.py")


def imported_modules(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


def test_the_known_host_programs_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in HOST_PROGRAMS}
    assert {
        "roles/sse_proxy/files/llamafleet_sseproxy/__main__.py",
        "roles/hf_models/library/llamafleet_hf_fetch.py",
        "roles/llamacpp/files/llamafleet_bundle.py",
    } <= names


@pytest.mark.parametrize("path", HOST_PROGRAMS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_host_program_imports_nothing_from_generators(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = [m for m in imported_modules(tree) if m == "generators" or m.startswith("generators.")]
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}: host programs cannot import the controller package"


def test_the_check_catches_an_import_of_generators() -> None:
    tree = ast.parse("def f():\n    from generators.render import manifest\n    import generators\n")
    assert imported_modules(tree) == ["generators.render", "generators"]


@pytest.mark.parametrize("moved", MOVED)
def test_generators_holds_no_host_program(moved: str) -> None:
    assert not (ROOT / moved).exists(), f"{moved} runs on hosts: it belongs to the role that installs it"


def test_no_role_reaches_into_generators_by_path() -> None:
    offenders = [
        p.relative_to(ROOT).as_posix()
        for p in ROOT.glob("roles/**/*.yml")
        if "/../../generators" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []
