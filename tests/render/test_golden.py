"""Golden renders: every example host (the five seeds and the Ollama variants) and the demo host.

A fresh render must be byte-identical to tests/render/golden/<host>/..., file modes included (kept in
tests/render/golden/<host>/MODES). After an intended change, regenerate and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/render/test_golden.py -q
    git diff tests/render/golden
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hostsupport import DEMO, EXAMPLE, EXAMPLE_HOSTS, GOLDEN, render

HOSTS = [(h, EXAMPLE) for h in EXAMPLE_HOSTS] + [("demo", DEMO)]


def _write(root: Path, files: dict) -> None:
    if root.exists():
        shutil.rmtree(root)
    for path, item in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(item.content, encoding="utf-8")
    modes = "".join(f"{item.mode} {path}\n" for path, item in sorted(files.items()))
    (root / "MODES").write_text(modes, encoding="utf-8")


@pytest.mark.parametrize(("host", "inventory"), HOSTS, ids=[h for h, _ in HOSTS])
def test_render_is_byte_identical_to_golden(host: str, inventory: Path) -> None:
    files = render(host, inventory)
    root = GOLDEN / host
    if os.environ.get("UPDATE_GOLDEN") == "1":
        _write(root, files)
    on_disk = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "MODES")
    assert on_disk == sorted(files), f"golden files for {host} differ in names: run UPDATE_GOLDEN=1 and review"
    for path, item in files.items():
        assert (root / path).read_text(encoding="utf-8") == item.content, f"{host}: {path} differs from golden"
    modes = "".join(f"{item.mode} {path}\n" for path, item in sorted(files.items()))
    assert (root / "MODES").read_text(encoding="utf-8") == modes


def test_every_seed_host_has_golden_units_and_clients() -> None:
    for host in EXAMPLE_HOSTS:
        names = {str(p.relative_to(GOLDEN / host)) for p in (GOLDEN / host).rglob("*") if p.is_file()}
        assert "manifest.json" in names
        assert any(n.startswith("clients/") for n in names), host
        if host.endswith("-ollama"):
            assert "ollama/override.conf" in names and not any(n.startswith("build/") for n in names)
        else:
            assert any(n.startswith("systemd/user/") for n in names) and "build/build-llamacpp.sh" in names
