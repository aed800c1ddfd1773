"""The hf_models fetcher module against a loopback hub serving the real smollm2 GGUF: verified, resumable,
disk-checked; plan = check mode."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from hubcli import FILE, GOOD_TOKEN, HOST, REPO, run_hub

STEM = "split/SmolLM2-135M-Instruct-Q4_1"


def _token_file(tmp_path: Path, token: str, mode: int = 0o600) -> Path:
    path = tmp_path / "hf-token"
    path.write_text(token + "\n")
    path.chmod(mode)
    return path


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.glob("*.part")) + sorted(p.name for p in dest.glob(".*.part"))


def _assert_error(result, *words: str) -> None:
    assert result.rc == 1, result
    line = result.last_line
    assert line.startswith(f"host {HOST}: repo "), line
    for word in words:
        assert word in line, (word, line)


# ------------------------------------------------------------------------------------------------ happy path


def test_fetch_downloads_verifies_and_moves_into_place(hub, smollm2_bytes, tmp_path):
    state, endpoint = hub
    dest = tmp_path / "models"
    result = run_hub("fetch", endpoint, dest)
    assert result.rc == 0, result.err
    final = dest / FILE
    assert result.out["changed"] is True
    assert result.out["path"] == str(final)
    assert [f["action"] for f in result.out["files"]] == ["downloaded"]
    assert result.out["bytes_to_download"] == len(smollm2_bytes)
    assert final.read_bytes() == smollm2_bytes
    assert _leftovers(dest) == []
    sidecar = json.loads((dest / f".{FILE}.verified.json").read_text())
    assert sidecar["sha256"] == hashlib.sha256(smollm2_bytes).hexdigest()
    assert sidecar["size"] == len(smollm2_bytes)
    assert len(state.downloads(FILE)) == 1
    assert all(s.token is None for s in state.seen), "no token file given: no token may be sent"


def test_second_run_downloads_nothing(hub, tmp_path):
    state, endpoint = hub
    dest = tmp_path / "models"
    assert run_hub("fetch", endpoint, dest).rc == 0
    before = len(state.downloads(FILE))
    seen_before = len(state.seen)
    again = run_hub("fetch", endpoint, dest)
    assert again.rc == 0, again.err
    assert again.out["changed"] is False
    assert again.out["files"][0]["action"] == "present"
    assert again.out["bytes_to_download"] == 0
    assert len(state.downloads(FILE)) == before
    assert [s.method for s in state.seen[seen_before:]] == ["POST"], "a present file needs only the paths-info call"


def test_touched_file_is_rehashed_and_kept(hub, tmp_path):
    state, endpoint = hub
    dest = tmp_path / "models"
    assert run_hub("fetch", endpoint, dest).rc == 0
    final = dest / FILE
    os.utime(final, ns=(1_000_000_000, 1_000_000_000))  # sidecar no longer describes it: must re-hash, not trust
    sidecar = dest / f".{FILE}.verified.json"
    recorded = sidecar.read_text()
    plan = run_hub("plan", endpoint, dest)
    assert plan.rc == 0 and plan.out["changed"] is False, plan.err
    assert sidecar.read_text() == recorded, "plan (check mode) must not write"
    before = len(state.downloads(FILE))
    result = run_hub("fetch", endpoint, dest)
    assert result.rc == 0, result.err
    assert result.out["changed"] is False
    assert len(state.downloads(FILE)) == before
    assert json.loads((dest / f".{FILE}.verified.json").read_text())["mtime_ns"] == 1_000_000_000


def test_changed_file_is_replaced_with_the_published_one(hub, smollm2_bytes, tmp_path):
    _, endpoint = hub
    dest = tmp_path / "models"
    assert run_hub("fetch", endpoint, dest).rc == 0
    final = dest / FILE
    data = bytearray(final.read_bytes())
    data[1000] ^= 0x01  # same size, other content: only hashing can tell
    final.write_bytes(bytes(data))
    plan = run_hub("plan", endpoint, dest)
    assert plan.rc == 0, plan.err
    assert plan.out["changed"] is True and plan.out["bytes_to_download"] == len(smollm2_bytes)
    result = run_hub("fetch", endpoint, dest)
    assert result.rc == 0, result.err
    assert result.out["changed"] is True
    assert final.read_bytes() == smollm2_bytes


def test_plan_reports_bytes_and_writes_nothing(hub, smollm2_bytes, tmp_path):
    state, endpoint = hub
    dest = tmp_path / "models"
    result = run_hub("plan", endpoint, dest)
    assert result.rc == 0, result.err
    assert result.out["changed"] is True
    assert result.out["bytes_to_download"] == len(smollm2_bytes)
    assert result.out["files"][0]["action"] == "download"
    assert result.out["files"][0]["sha256"] == hashlib.sha256(smollm2_bytes).hexdigest()
    assert not dest.exists()
    assert state.downloads(FILE) == []


def test_hf_endpoint_environment_variable_is_honoured(hub, smollm2_bytes, tmp_path):
    _, endpoint = hub
    dest = tmp_path / "models"
    result = run_hub("fetch", None, dest, env={"HF_ENDPOINT": endpoint})
    assert result.rc == 0, result.err
    assert (dest / FILE).read_bytes() == smollm2_bytes


# ------------------------------------------------------------------------------------------------ faults


def test_corrupted_transfer_fails_and_leaves_nothing(hub, tmp_path):
    state, endpoint = hub
    state.repos[REPO].files[FILE].corrupt = True
    dest = tmp_path / "models"
    result = run_hub("fetch", endpoint, dest)
    _assert_error(result, REPO, "checksum mismatch", FILE)
    assert not (dest / FILE).exists()
    assert _leftovers(dest) == []
    assert not (dest / f".{FILE}.verified.json").exists()


def test_cut_transfer_resumes_with_a_range_request_and_verifies(hub, smollm2_bytes, tmp_path):
    state, endpoint = hub
    cut = 40 * 1024 * 1024
    state.repos[REPO].files[FILE].cut_after = cut  # then the hub is down (503) until cleared
    dest = tmp_path / "models"
    first = run_hub("fetch", endpoint, dest)
    _assert_error(first, REPO, "stopped after", "run again")
    assert not (dest / FILE).exists()
    parts = list(dest.glob(f".{FILE}.*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == cut

    assert state.down
    while_down = run_hub("fetch", endpoint, dest)
    _assert_error(while_down, "the hub answered 503", "retry later")
    assert parts[0].stat().st_size == cut, "a failed run must keep the partial download"
    state.down = False
    plan = run_hub("plan", endpoint, dest)
    assert plan.rc == 0, plan.err
    assert plan.out["bytes_to_download"] == len(smollm2_bytes) - cut
    assert plan.out["files"][0]["partial_bytes"] == cut
    assert plan.out["files"][0]["part"] == str(parts[0]), "the role's progress reads the size of this file"

    second = run_hub("fetch", endpoint, dest)
    assert second.rc == 0, second.err
    assert (dest / FILE).read_bytes() == smollm2_bytes
    ranges = [s.range for s in state.downloads(FILE)]
    assert ranges[-1] == f"bytes={cut}-", ranges
    assert _leftovers(dest) == []


def test_split_gguf_expands_to_every_part(hub, smollm2_bytes, tmp_path):
    state, endpoint = hub
    dest = tmp_path / "models"
    result = run_hub("fetch", endpoint, dest, "--file", f"{STEM}-00001-of-00003.gguf")
    assert result.rc == 0, result.err
    names = [f"SmolLM2-135M-Instruct-Q4_1-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]
    assert [Path(f["path"]).name for f in result.out["files"]] == names
    assert result.out["path"] == str(dest / names[0])
    assert b"".join((dest / n).read_bytes() for n in names) == smollm2_bytes
    assert result.out["bytes_to_download"] == len(smollm2_bytes)
    assert len([s for s in state.seen if s.method == "GET"]) == 3


def test_split_gguf_with_a_missing_part_fails_before_downloading(hub, tmp_path):
    state, endpoint = hub
    dest = tmp_path / "models"
    result = run_hub("fetch", endpoint, dest, "--file", "broken/only-00001-of-00002.gguf")
    _assert_error(result, "broken/only-00002-of-00002.gguf", "not found")
    assert [s for s in state.seen if s.method == "GET"] == []


def test_gated_repo_names_the_repo_and_what_to_do(hub, tmp_path):
    _, endpoint = hub
    dest = tmp_path / "models"
    result = run_hub("fetch", endpoint, dest, "--repo", "meta-llama/Gated-GGUF")
    _assert_error(result, "meta-llama/Gated-GGUF", "gated", "accept", "hf_models_token_file")
    assert not (dest / FILE).exists()


def test_gated_repo_with_a_token_that_was_not_granted(hub, tmp_path):
    _, endpoint = hub
    token = _token_file(tmp_path, "hf_valid_but_not_granted")
    result = run_hub(
        "plan", endpoint, tmp_path / "models", "--repo", "meta-llama/Gated-GGUF", "--token-file", str(token)
    )
    _assert_error(result, "gated", str(token))


def test_granted_token_is_sent_and_downloads(hub, smollm2_bytes, tmp_path):
    state, endpoint = hub
    token = _token_file(tmp_path, GOOD_TOKEN)
    dest = tmp_path / "models"
    result = run_hub("fetch", endpoint, dest, "--repo", "owner/granted-GGUF", "--token-file", str(token))
    assert result.rc == 0, result.err
    assert (dest / FILE).read_bytes() == smollm2_bytes
    assert {s.token for s in state.seen} == {GOOD_TOKEN}


def test_missing_repo(hub, tmp_path):
    _, endpoint = hub
    result = run_hub("fetch", endpoint, tmp_path / "models", "--repo", "nobody/no-such-repo")
    _assert_error(result, "nobody/no-such-repo", "does not exist", "check the repo name")


def test_missing_file(hub, tmp_path):
    _, endpoint = hub
    result = run_hub("fetch", endpoint, tmp_path / "models", "--file", "nope.gguf")
    _assert_error(result, REPO, "nope.gguf not found")


def test_missing_revision(hub, tmp_path):
    _, endpoint = hub
    result = run_hub("fetch", endpoint, tmp_path / "models", "--revision", "v9")
    _assert_error(result, REPO, "revision v9 does not exist")


def test_bad_token(hub, tmp_path):
    _, endpoint = hub
    token = _token_file(tmp_path, "hf_wrong")
    result = run_hub("fetch", endpoint, tmp_path / "models", "--token-file", str(token))
    _assert_error(result, REPO, "refused the token", "401", str(token))
    assert "hf_wrong" not in result.err, "the token itself must never be printed"


def test_world_readable_token_file_is_refused_before_any_request(hub, tmp_path):
    state, endpoint = hub
    token = _token_file(tmp_path, GOOD_TOKEN, mode=0o644)
    result = run_hub("fetch", endpoint, tmp_path / "models", "--token-file", str(token))
    _assert_error(result, "readable or writable by every user", "chmod 600")
    assert state.seen == []


def test_not_enough_disk_space_fails_before_the_transfer(hub, tmp_path):
    state, endpoint = hub
    dest = tmp_path / "models"
    huge = str(1 << 60)  # a reserve no disk has: the check itself is real (statvfs of the models dir)
    result = run_hub("fetch", endpoint, dest, "--reserve-bytes", huge)
    _assert_error(result, REPO, "not enough free disk space", str(dest), "free some space")
    assert state.downloads(FILE) == []
    assert not (dest / FILE).exists()
    plan = run_hub("plan", endpoint, dest, "--reserve-bytes", huge)
    _assert_error(plan, "not enough free disk space")


def test_no_disk_check_when_nothing_is_missing(hub, tmp_path):
    _, endpoint = hub
    dest = tmp_path / "models"
    assert run_hub("fetch", endpoint, dest).rc == 0
    result = run_hub("fetch", endpoint, dest, "--reserve-bytes", str(1 << 60))
    assert result.rc == 0, result.err
    assert result.out["changed"] is False


def test_unreachable_hub_names_the_endpoint(tmp_path):
    import socket

    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = run_hub("fetch", endpoint, tmp_path / "models")
    _assert_error(result, REPO, f"cannot reach the hub at {endpoint}", "hf_models_endpoint")
