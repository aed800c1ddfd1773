"""Malformed host descriptions (tests/render/bad_hosts/*.yml) are each rejected by the CLI: non-zero exit, the host and
the expected field named on stderr, no traceback, and nothing written to --out.

Each file is a host_vars file whose second line says which field the error must name: ``# expect: <field>``.
The test builds a one-host inventory around it, named after the file, and runs the CLI's ``main`` in this
process (an exception escaping ``main`` is the traceback a user would see, and fails the test); a few cases
also run as ``python -m generators`` in a subprocess, to check the real exit status and stderr end to end.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hostsupport import BAD_HOSTS, ROOT

from generators.cli import main

CASES = sorted(BAD_HOSTS.glob("*.yml"))


def expected_field(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# expect: "):
            return line.removeprefix("# expect: ").strip()
    raise AssertionError(f"{path.name} has no '# expect: <field>' line")


def test_there_are_at_least_thirty_bad_hosts() -> None:
    assert len(CASES) >= 30


def one_host_inventory(case: Path, root: Path) -> Path:
    inventory = root / "inventory"
    (inventory / "host_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(f"all:\n  hosts:\n    {case.stem}:\n")
    (inventory / "host_vars" / f"{case.stem}.yml").write_text(case.read_text())
    return inventory


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_host_is_rejected_naming_host_and_field(
    case: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = case.stem
    inventory = one_host_inventory(case, tmp_path)
    out = tmp_path / "out"
    code = main(["render", "--inventory", str(inventory), "--host", host, "--out", str(out)])
    captured = capsys.readouterr()
    assert code != 0
    field = expected_field(case)
    lines = [line for line in captured.err.splitlines() if line.startswith(f"host {host}: {field}: ")]
    assert lines, f"no error naming host {host} and field {field}:\n{captured.err}"
    assert not out.exists(), "nothing may be written for an invalid host"
    assert captured.out == ""


SUBPROCESS_CASES = [BAD_HOSTS / f"{n}.yml" for n in ("unknown-gpu", "public-without-key", "not-a-mapping")]


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=[c.stem for c in SUBPROCESS_CASES])
def test_bad_host_exit_status_end_to_end(case: Path, tmp_path: Path) -> None:
    host = case.stem
    inventory = one_host_inventory(case, tmp_path)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "generators",
            "render",
            "--inventory",
            str(inventory),
            "--host",
            host,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    field = expected_field(case)
    lines = [line for line in done.stderr.splitlines() if line.startswith(f"host {host}: {field}: ")]
    assert lines, f"no error naming host {host} and field {field}:\n{done.stderr}"
    assert not out.exists(), "nothing may be written for an invalid host"
    assert done.stdout == ""
