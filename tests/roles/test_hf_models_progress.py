"""roles/hf_models on this machine (connection local, as the current user) against the loopback fake hub serving
slowly: a fetch prints how far it got every round (the bytes of the .part files, summed over a split GGUF's parts),
then `done` with the fetcher's result; check mode fetches nothing; a second run fetches nothing and prints no
progress; a fetch cut off mid-way fails the play with the fetcher's one-line message.

The role runs whole: the venv is a temporary one that sees this interpreter's huggingface_hub (a .pth file), so its
version matches and nothing is installed; hf_models_packages is empty, so no package manager runs; the fetcher runs
with the venv's python, as on hosts."""

from __future__ import annotations

import getpass
import importlib.metadata
import json
import os
import re
import site
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakehub import Hub, HubFile, Repo, serve
from hostsupport import ANSIBLE_PLAYBOOK, ansible_env

REPO = "owner/slow-GGUF"
FILE = "slow-Q4_1.gguf"
SPLIT = "split/slow-00001-of-00003.gguf"
SPLIT_NAMES = [f"slow-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]
MIB = 1 << 20
# huggingface_hub writes a download in chunks of 10 MiB (constants.DOWNLOAD_CHUNK_SIZE), so a .part file grows in
# steps of that. The split model: three parts of two chunks, 10 s at the hub's rate; the single file is cut off.
CHUNK = 10 * MIB
PART_SIZE, RATE = 2 * CHUNK, 6 * MIB
MODEL_SIZE = 4 * CHUNK
ROUND = 2  # hf_models_fetch_poll
PLAY = """---
- name: Fetch models from the slow hub
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: hf_models
"""
UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
PROGRESS = re.compile(r'"msg": "(?P<name>[^":]+): (?P<state>downloading|verifying|done|failed)(?P<rest>[^"]*)"')
BYTES = re.compile(r"^, (?P<got>[\d.]+) (?P<gu>\w+) of (?P<total>[\d.]+) (?P<tu>\w+) \((?P<pct>\d+) %\), (?P<s>\d+) s$")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv whose python imports this interpreter's packages (huggingface_hub among them)."""
    root = tmp_path_factory.mktemp("hub") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    purelib = subprocess.run(
        [str(root / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    Path(purelib).mkdir(parents=True, exist_ok=True)
    (Path(purelib) / "llamafleet-test-parent.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return root


@pytest.fixture
def slow_hub() -> Iterator[tuple[Hub, str, bytes, list[bytes]]]:
    model = os.urandom(MODEL_SIZE)
    parts = [os.urandom(PART_SIZE) for _ in SPLIT_NAMES]
    files = {FILE: HubFile(model, rate=RATE),
             **{f"split/{n}": HubFile(p, rate=RATE) for n, p in zip(SPLIT_NAMES, parts, strict=True)}}
    state = Hub(repos={REPO: Repo(files=files)})
    server, endpoint = serve(state)
    yield state, endpoint, model, parts
    server.shutdown()
    server.server_close()


def run_role(tmp_path: Path, venv: Path, endpoint: str, models: list[dict],
             *args: str) -> subprocess.CompletedProcess[str]:
    """The role as a play runs it. The service user is the current user, so its `become_user` is this user and
    Ansible runs those tasks without become; the interpreter is an inventory variable, so the role's own
    ansible_python_interpreter (the venv's python) still wins for the fetcher."""
    variables = {
        "hf_models_list": models,
        "hf_models_dir": str(tmp_path / "models"),
        "hf_models_user": getpass.getuser(),
        "hf_models_venv": str(venv),
        "hf_models_hub_version": importlib.metadata.version("huggingface_hub"),
        "hf_models_endpoint": endpoint,
        "hf_models_reserve_bytes": 0,
        "hf_models_fetch_poll": ROUND,
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "hosts").write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "hosts"), str(tmp_path / "play.yml"),
         "-e", f"@{tmp_path / 'vars.json'}", *args],
        capture_output=True, text=True, env=ansible_env(json_results=True), timeout=300, check=False,
    )


def progress(out: str, name: str) -> list[tuple[str, str]]:
    """The progress lines the play printed for one model, as (state, the rest of the line)."""
    return [(m["state"], m["rest"]) for m in PROGRESS.finditer(out) if m["name"] == name]


def downloaded_bytes(rest: str, total: str) -> int:
    """The bytes of a `downloading` line, after checking its total and percentage."""
    m = BYTES.match(rest)
    assert m, rest
    assert f"{m['total']} {m['tu']}" == total, rest
    got = float(m["got"]) * UNITS[m["gu"]]
    assert int(m["pct"]) == int(got * 100 // (float(m["total"]) * UNITS[m["tu"]])), rest
    return int(got)


def test_fetch_prints_progress_rounds_then_done_and_runs_once(tmp_path: Path, venv: Path, slow_hub) -> None:
    state, endpoint, _, parts = slow_hub
    models = [{"repo": REPO, "file": SPLIT}]
    dest = tmp_path / "models"
    name = f"{SPLIT_NAMES[0]} (3 parts)"

    check = run_role(tmp_path, venv, endpoint, models, "--check")
    assert check.returncode == 0, check.stdout[-3000:]
    assert f"{REPO}/{SPLIT}: would download 60.0 MiB ({3 * PART_SIZE} bytes)" in check.stdout
    assert progress(check.stdout, name) == [] and state.downloads(f"split/{SPLIT_NAMES[0]}") == []
    assert not dest.exists() or not any(dest.iterdir())

    first = run_role(tmp_path, venv, endpoint, models)
    out = first.stdout
    assert first.returncode == 0, out[-4000:]
    lines = progress(out, name)
    states = [s for s, _ in lines]
    assert states[-1] == "done" and states.count("done") == 1, lines
    assert set(states[:-1]) <= {"downloading", "verifying"}, lines
    got = [downloaded_bytes(rest, "60.0 MiB") for s, rest in lines if s == "downloading"]  # summed over the parts
    assert len(got) >= 2, lines
    assert got == sorted(got) and got[0] < got[-1] < 3 * PART_SIZE, got
    assert re.fullmatch(rf", 60\.0 MiB downloaded and verified \(sha256\) in {re.escape(str(dest))}, \d+ s",
                        lines[-1][1]), lines[-1]

    assert [(dest / n).read_bytes() for n in SPLIT_NAMES] == parts
    assert sorted(p.name for p in dest.glob(".*.part")) == []
    assert all((dest / f".{n}.verified.json").is_file() for n in SPLIT_NAMES)
    assert [len(state.downloads(f"split/{n}")) for n in SPLIT_NAMES] == [1, 1, 1]

    again = run_role(tmp_path, venv, endpoint, models)
    assert again.returncode == 0, again.stdout[-3000:]
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0 ", again.stdout), again.stdout[-1500:]
    assert progress(again.stdout, name) == []
    assert "Start the fetch in the background" not in again.stdout
    assert [len(state.downloads(f"split/{n}")) for n in SPLIT_NAMES] == [1, 1, 1]


def test_a_fetch_cut_off_midway_fails_the_play_with_the_fetchers_message(tmp_path: Path, venv: Path,
                                                                        slow_hub) -> None:
    state, endpoint, _, _ = slow_hub
    cut = 2 * CHUNK  # what reached the disk when the connection drops; the fetcher's retry then gets 503
    state.repos[REPO].files[FILE].cut_after = cut  # then the hub answers 503
    dest = tmp_path / "models"
    result = run_role(tmp_path, venv, endpoint, [{"repo": REPO, "file": FILE}])
    out = result.stdout
    assert result.returncode == 2, out[-4000:]
    part = next(dest.glob(f".{FILE}.*.part"))
    assert part.stat().st_size == cut
    messages = re.findall(r'"msg": "(host localhost: repo [^"]*)"', out)
    assert len(messages) == 1, messages
    assert re.fullmatch(
        rf"host localhost: repo {REPO}: download of {FILE} stopped after 20\.0 MiB of 40\.0 MiB \(.*\): "
        rf"run again: the next run resumes from the bytes already in {re.escape(str(part))}",
        messages[0],
    ), messages[0]
    failing = out[: out.index(messages[0])].rsplit("TASK [", 1)[1]
    assert failing.startswith("hf_models : Refuse the models that could not be fetched"), failing[:200]
    lines = progress(out, FILE)
    assert lines[-1] == ("failed", lines[-1][1]) and "20.0 MiB of 40.0 MiB on disk" in lines[-1][1], lines
    assert not (dest / FILE).exists()
    assert re.search(r"localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=1 ", out), out[-1500:]
