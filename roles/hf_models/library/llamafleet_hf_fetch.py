#!/usr/bin/python
"""Ansible module: verified, resumable, disk-checked downloads of GGUF files from a Hugging Face hub.

A host program of the hf_models role (``roles/hf_models/library``): Ansible ships it to the host and runs it there
as the service user with the hub venv's python (the task sets ``ansible_python_interpreter``), so it depends only
on the standard library, ``huggingface_hub`` and Ansible's own module_utils, never on the controller package
``generators``. It never speaks HTTP itself: file facts come from the hub's paths-info API
(``HfApi.get_paths_info``: size and the LFS sha256 the hub publishes) and from the resolve endpoint
(``get_hf_file_metadata``: commit, etag, download location); bytes move through ``huggingface_hub``'s own
``http_get``, which resumes with a Range request from the bytes already on disk.

Check mode is the plan: what a fetch would download and how many bytes, with the same hub, token and disk
checks, writing nothing. Both return the same JSON result (``changed`` = something is, or would be, downloaded).
Any failure is one message, ``host H: repo R: <what happened>: <what to do>``; nothing is left at a final path
that has not been verified.

Outside Ansible (tests, by hand), like any module: ``python3 llamafleet_hf_fetch.py ARGS.json`` with
``{"ANSIBLE_MODULE_ARGS": {"repo": ..., "file": ..., "dest": ..., "_ansible_check_mode": true}}``.

On disk, in ``dest`` for a file ``NAME``:

- ``NAME``                      the verified model, moved into place only after its sha256 matched;
- ``.NAME.<sha256>.part``       the download in progress (kept between runs, so the next run resumes it);
- ``.NAME.verified.json``       sha256, size, mtime and inode of ``NAME`` when it was last verified, so a
                                re-check is a ``stat`` instead of hashing gigabytes; any change means a re-hash.

A file named ``X-00001-of-0000N.gguf`` (a split GGUF) stands for all ``N`` parts.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import urlparse

from ansible.module_utils.basic import AnsibleModule

try:
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers, disable_progress_bars
except ImportError as _import_error:  # pragma: no cover - exercised only on a host without the library
    _HUB_IMPORT_ERROR: ImportError | None = _import_error
else:
    _HUB_IMPORT_ERROR = None

DOCUMENTATION = r"""
module: llamafleet_hf_fetch
short_description: Fetch a GGUF model from a Hugging Face hub, verified against the published sha256
description:
  - Downloads one file of a hub repo (every part of a split GGUF) into I(dest), resuming an interrupted download,
    checking free disk space first and moving a file into place only after its digest matched.
  - In check mode, reports what would be downloaded and how many bytes, and writes nothing.
  - Runs on the host with a Python that has huggingface_hub (the hf_models role's venv).
options:
  repo: {type: str, required: true, description: owner/name of the model repo.}
  file: {type: str, required: true, description: File in the repo; the first part of a split GGUF means all parts.}
  revision: {type: str, description: Branch, tag or commit (default main).}
  dest: {type: path, required: true, description: Models directory on the host.}
  token_file: {type: path, description: File holding a hub token (mode 0600 or 0640); the token is never returned.}
  endpoint: {type: str, description: Hub URL (default HF_ENDPOINT or https://huggingface.co).}
  host: {type: str, description: Host name used in messages (default the host's node name).}
  reserve_bytes: {type: int, default: 1073741824, description: Free bytes that must remain after the download.}
attributes:
  check_mode: {support: full}
"""

EXAMPLES = r"""
- name: Fetch a model
  llamafleet_hf_fetch:
    repo: bartowski/SmolLM2-135M-Instruct-GGUF
    file: SmolLM2-135M-Instruct-Q4_1.gguf
    dest: /var/lib/llamafleet/models
  vars:
    ansible_python_interpreter: /opt/llamafleet/hub-venv/bin/python
"""

RETURN = r"""
changed: {description: Something was (check mode - would be) downloaded., type: bool, returned: always}
summary:
  description: repo, file, changed, bytes_to_download and human, what the role reports.
  type: dict
  returned: always
path: {description: Local path of the file to serve (the first part of a split GGUF)., type: str, returned: always}
files:
  description: >-
    Per file - file, path, part (the download in progress, moved to path once verified), size, sha256, action
    (present, download, downloaded), bytes_to_download, partial_bytes.
  type: list
  returned: always
bytes_to_download: {description: Bytes still (or just) transferred., type: int, returned: always}
human: {description: bytes_to_download for people (93.8 MiB)., type: str, returned: always}
free_bytes: {description: Free bytes on the models disk before the transfer., type: int, returned: always}
revision: {description: The revision asked for (main by default)., type: str, returned: always}
"""

DEFAULT_RESERVE_BYTES = 1 << 30  # free space kept after a download: 1 GiB
HASH_CHUNK = 8 << 20
SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
TOKEN_URL = "https://huggingface.co/settings/tokens"


class FetchError(Exception):
    """A failure that ends the run: ``what`` happened, and what the operator should do about it."""

    def __init__(self, what: str, todo: str):
        super().__init__(f"{what}: {todo}")
        self.what = what
        self.todo = todo


@dataclass(frozen=True)
class Request:
    """What the caller asked for, after parsing the command line."""

    host: str
    repo: str
    file: str
    revision: str | None
    dest: Path
    token_file: Path | None
    endpoint: str | None
    reserve_bytes: int


@dataclass(frozen=True)
class Remote:
    """What the hub publishes for one file."""

    file: str
    size: int
    digest: str  # hex
    algorithm: str  # "sha256" for LFS files, "git-sha1" for small files kept in git


@dataclass(frozen=True)
class Local:
    """Where one file lives on this host and how much of it is already here."""

    final: Path
    part: Path
    sidecar: Path
    present: bool  # the final file exists and matches the published digest
    partial_bytes: int  # bytes of an earlier, interrupted download that will be resumed


@dataclass(frozen=True)
class FileResult:
    file: str
    path: str
    part: str  # where the download grows until it is verified and moved to path (the role's progress reads it)
    size: int
    sha256: str
    action: str  # plan: "present" | "download"; fetch: "present" | "downloaded"
    bytes_to_download: int
    partial_bytes: int


# ----------------------------------------------------------------------------------------------- pure helpers


def expand_split(file: str) -> list[str]:
    """All files that make up ``file``: every part of a split GGUF (``-00001-of-0000N``), else the file itself."""
    path = PurePosixPath(file)
    match = SPLIT_RE.match(path.name)
    if match is None:
        return [file]
    count = int(match["count"])
    if count < 1 or not 1 <= int(match["index"]) <= count:
        return [file]
    parent = "" if str(path.parent) == "." else f"{path.parent}/"
    return [f"{parent}{match['stem']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def local_paths(dest: Path, remote: Remote) -> tuple[Path, Path, Path]:
    """Final path, partial-download path (keyed by the published digest) and sidecar path of one file."""
    name = PurePosixPath(remote.file).name
    return dest / name, dest / f".{name}.{remote.digest}.part", dest / f".{name}.verified.json"


def needed_bytes(remotes: list[Remote], locals_: list[Local], reserve: int) -> int:
    """Free bytes a fetch needs: what is left to transfer, plus the reserve kept free afterwards."""
    todo = sum(r.size - loc.partial_bytes for r, loc in zip(remotes, locals_, strict=True) if not loc.present)
    return todo + reserve if todo else 0


def human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"  # pragma: no cover


# ----------------------------------------------------------------------------------------------- local I/O


def read_token(path: Path) -> str:
    """The token in ``path``; refused when the file can be read (or written) by every user."""
    try:
        info = path.stat()
    except OSError as exc:
        raise FetchError(f"token file {path} cannot be read ({exc.strerror})", "create it with mode 0600") from exc
    if not stat.S_ISREG(info.st_mode):
        raise FetchError(f"token file {path} is not a regular file", "point the token file at a file with mode 0600")
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise FetchError(
            f"token file {path} is readable or writable by every user (mode {mode:04o})",
            f"run chmod 600 {path} (and rotate the token if others could read it)",
        )
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise FetchError(
            f"token file {path} cannot be read ({exc.strerror})", "make it readable by the service user"
        ) from exc
    if not token or any(c.isspace() for c in token):
        raise FetchError(f"token file {path} does not hold one token", f"put exactly one token from {TOKEN_URL} in it")
    return token


def file_digest(path: Path, algorithm: str, size: int) -> str:
    """Hex digest of a file, as the hub publishes it (sha256 of the content, or git's blob sha1)."""
    if algorithm == "git-sha1":
        digest = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    else:
        digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(info: os.stat_result) -> dict[str, int]:
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "ino": info.st_ino}


def read_sidecar(sidecar: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_sidecar(sidecar: Path, final: Path, remote: Remote) -> None:
    record = {"file": remote.file, remote.algorithm: remote.digest, **_fingerprint(final.stat())}
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, sidecar)


def is_verified(final: Path, sidecar: Path, remote: Remote, write: bool) -> bool:
    """True when ``final`` holds exactly the published file. Cheap when the sidecar still describes the file;
    otherwise the file is hashed (and, when ``write``, the sidecar renewed)."""
    try:
        info = final.stat()
    except FileNotFoundError:
        return False
    if info.st_size != remote.size:
        return False
    record = read_sidecar(sidecar)
    if (
        record is not None
        and record.get(remote.algorithm) == remote.digest
        and all(record.get(k) == v for k, v in _fingerprint(info).items())
    ):
        return True
    if file_digest(final, remote.algorithm, remote.size) != remote.digest:
        return False
    if write:
        write_sidecar(sidecar, final, remote)
    return True


def inspect_local(dest: Path, remote: Remote, write: bool) -> Local:
    """What of one file is already on this host. ``write=False`` (plan) leaves the disk exactly as it was."""
    final, part, sidecar = local_paths(dest, remote)
    present = is_verified(final, sidecar, remote, write)
    partial = 0
    if not present and part.is_file():
        partial = part.stat().st_size
        if partial > remote.size:  # cannot be a prefix of the published file
            if write:
                part.unlink()
            partial = 0
    return Local(final=final, part=part, sidecar=sidecar, present=present, partial_bytes=partial)


def free_bytes(dest: Path) -> int:
    probe = dest
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def remove_stale_parts(local: Local) -> None:
    """Drop partial downloads of other versions of the same file (their digest differs from the wanted one)."""
    name = local.final.name
    for stale in local.part.parent.glob(f".{name}.*.part"):
        if stale != local.part:
            stale.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- the hub


def _explain(exc: Exception, req: Request, file: str | None = None) -> FetchError:
    """Turn a huggingface_hub error into one clear what-and-what-to-do."""
    where = f"file {file} at revision {req.revision or 'main'}" if file else f"revision {req.revision or 'main'}"
    token_hint = (
        f"check that the token in {req.token_file} belongs to an account with access"
        if req.token_file
        else "set hf_models_token_file to a file holding a read token of an account with access"
    )
    if isinstance(exc, GatedRepoError):
        return FetchError(
            "the repo is gated and this account has not been granted access",
            f"accept the repo's terms at https://huggingface.co/{req.repo} with the account, then {token_hint}",
        )
    if isinstance(exc, RepositoryNotFoundError):
        return FetchError(
            "the repo does not exist or is private",
            f"check the repo name; if it is private, {token_hint}",
        )
    if isinstance(exc, RevisionNotFoundError):
        return FetchError(
            f"revision {req.revision or 'main'} does not exist",
            "set revision to a branch, tag or commit of the repo",
        )
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 401:
            if req.token_file:
                return FetchError(
                    f"the hub refused the token in {req.token_file} (401)",
                    f"replace it with a valid read token from {TOKEN_URL}",
                )
            return FetchError(
                "the hub requires a token (401)", f"set hf_models_token_file to a file with a token from {TOKEN_URL}"
            )
        if status == 404:
            return FetchError(
                f"{where} does not exist", "check the file name and revision against the repo's file list"
            )
        return FetchError(f"the hub answered {status} for {where}", "retry later; if it persists, check the endpoint")
    if isinstance(exc, OSError) or type(exc).__module__.split(".")[0].startswith("http"):
        endpoint = req.endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
        return FetchError(
            f"cannot reach the hub at {endpoint} ({type(exc).__name__}: {exc})",
            "check the host's network, proxy and hf_models_endpoint",
        )
    return FetchError(f"{type(exc).__name__}: {exc}", "retry; if it persists, report it")


def published(api: HfApi, req: Request, files: list[str], token: str | bool) -> list[Remote]:
    """Size and digest the hub publishes for each file (one paths-info call for all of them)."""
    try:
        infos = api.get_paths_info(req.repo, files, revision=req.revision, token=token)
    except Exception as exc:
        raise _explain(exc, req) from exc
    by_path = {getattr(i, "path", None): i for i in infos}
    missing = [f for f in files if f not in by_path or not hasattr(by_path[f], "size")]
    if missing:
        raise FetchError(
            f"{', '.join(missing)} not found at revision {req.revision or 'main'}",
            "check the file name (and, for split GGUFs, that every part exists) against the repo's file list",
        )
    remotes = []
    for f in files:
        info = by_path[f]
        lfs = getattr(info, "lfs", None)
        if lfs is not None:
            remote = Remote(file=f, size=int(lfs.size), digest=str(lfs.sha256).lower(), algorithm="sha256")
        else:
            remote = Remote(file=f, size=int(info.size), digest=str(info.blob_id).lower(), algorithm="git-sha1")
        if remote.algorithm == "sha256" and not SHA256_RE.match(remote.digest):
            raise FetchError(f"the hub publishes no valid sha256 for {f}", "check the endpoint is a Hugging Face hub")
        remotes.append(remote)
    return remotes


def locate(req: Request, remote: Remote, token: str | bool) -> tuple[str, dict[str, str]]:
    """Download URL and headers for one file, checked against what paths-info published."""
    url = hf_hub_url(req.repo, remote.file, revision=req.revision, endpoint=req.endpoint)
    try:
        meta = get_hf_file_metadata(url, token=token, endpoint=req.endpoint)
    except Exception as exc:
        raise _explain(exc, req, remote.file) from exc
    etag = (meta.etag or "").lower()
    if remote.algorithm == "sha256" and etag and etag != remote.digest:
        raise FetchError(
            f"the hub's resolve endpoint names sha256 {etag} for {remote.file} but paths-info publishes {remote.digest}",
            "the repo changed while fetching: run again",
        )
    headers = build_hf_headers(token=token)
    if urlparse(meta.location).netloc != urlparse(url).netloc:
        headers.pop("authorization", None)  # never send the token to a CDN
    return meta.location, headers


def transfer(req: Request, remote: Remote, local: Local, token: str | bool) -> int:
    """Download (or resume) one file into its partial path, verify it, move it into place. Returns bytes moved."""
    remove_stale_parts(local)
    url, headers = locate(req, remote, token)
    local.part.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(local.part, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+b") as handle:
        handle.seek(0, os.SEEK_END)
        resume = handle.tell()
        try:
            http_get(
                url,
                handle,
                resume_size=resume,
                headers=headers,
                expected_size=remote.size,
                displayed_filename=local.final.name,
            )
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise FetchError(
                    f"the disk holding {req.dest} filled up while downloading {remote.file}",
                    "free some space (or raise the reserve), then run again: the download resumes",
                ) from exc
            raise _interrupted(remote, local, handle, exc) from exc
        except Exception as exc:
            raise _interrupted(remote, local, handle, exc) from exc
        handle.flush()
        os.fsync(handle.fileno())
    actual = file_digest(local.part, remote.algorithm, remote.size)
    if actual != remote.digest:
        local.part.unlink(missing_ok=True)
        raise FetchError(
            f"checksum mismatch for {remote.file}: got {remote.algorithm} {actual}, the hub publishes {remote.digest}; "
            "the download was deleted",
            "run again; if it repeats, something between the hub and this host (proxy, mirror, disk) corrupts data",
        )
    os.chmod(local.part, 0o644)
    os.replace(local.part, local.final)
    _fsync_dir(local.final.parent)
    write_sidecar(local.sidecar, local.final, remote)
    return remote.size - resume


def _interrupted(remote: Remote, local: Local, handle: BinaryIO, exc: Exception) -> FetchError:
    handle.flush()
    got = handle.tell()
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return FetchError(
        f"download of {remote.file} stopped after {human(got)} of {human(remote.size)} "
        f"({type(exc).__name__}: {first_line})",
        f"run again: the next run resumes from the bytes already in {local.part}",
    )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------- commands


def run(req: Request, do_fetch: bool) -> dict[str, Any]:
    if _HUB_IMPORT_ERROR is not None:
        raise FetchError(f"huggingface_hub cannot be imported ({_HUB_IMPORT_ERROR})", "install it (hf_models role)")
    disable_progress_bars()
    token: str | bool = read_token(req.token_file) if req.token_file else False
    api = HfApi(endpoint=req.endpoint, token=token)
    files = expand_split(req.file)
    remotes = published(api, req, files, token)
    if do_fetch:
        req.dest.mkdir(parents=True, exist_ok=True)
    locals_ = [inspect_local(req.dest, r, write=do_fetch) for r in remotes]
    for remote, loc in zip(remotes, locals_, strict=True):
        if not loc.present:  # gated repo, bad token, moved file: found out before any byte moves
            locate(req, remote, token)
    need = needed_bytes(remotes, locals_, req.reserve_bytes)
    free = free_bytes(req.dest)
    if need > free:
        todo = need - req.reserve_bytes
        raise FetchError(
            f"not enough free disk space in {req.dest}: {human(todo)} to download plus {human(req.reserve_bytes)} "
            f"reserve needs {human(need)}, {human(free)} free",
            "free some space (or remove unused models), or choose another dest_dir",
        )
    results = []
    for remote, loc in zip(remotes, locals_, strict=True):
        if not loc.present and do_fetch:
            transfer(req, remote, loc, token)
        action = "present" if loc.present else ("downloaded" if do_fetch else "download")
        results.append(
            FileResult(
                file=remote.file,
                path=str(loc.final),
                part=str(loc.part),
                size=remote.size,
                sha256=remote.digest if remote.algorithm == "sha256" else "",
                action=action,
                bytes_to_download=0 if loc.present else remote.size - loc.partial_bytes,
                partial_bytes=loc.partial_bytes,
            )
        )
    total = sum(r.bytes_to_download for r in results)
    changed = any(r.action != "present" for r in results)
    summary = {
        "repo": req.repo,
        "file": req.file,
        "changed": changed,
        "bytes_to_download": total,
        "human": human(total),
    }
    return {
        "summary": summary,
        "changed": changed,
        "host": req.host,
        "repo": req.repo,
        "file": req.file,
        "revision": req.revision or "main",
        "path": results[0].path,
        "files": [asdict(r) for r in results],
        "bytes_to_download": total,
        "human": human(total),
        "free_bytes": free,
    }


ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "repo": {"type": "str", "required": True},
    "file": {"type": "str", "required": True},
    "revision": {"type": "str"},
    "dest": {"type": "path", "required": True},
    "token_file": {"type": "path"},
    "endpoint": {"type": "str"},
    "host": {"type": "str"},
    "reserve_bytes": {"type": "int", "default": DEFAULT_RESERVE_BYTES},
}


def request(params: dict[str, Any]) -> Request:
    """The module's parameters as a :class:`Request` (empty strings mean "not set", as the role passes them)."""
    endpoint = params.get("endpoint") or None
    token_file = params.get("token_file") or None
    return Request(
        host=params.get("host") or os.uname().nodename,
        repo=params["repo"],
        file=params["file"],
        revision=params.get("revision") or None,
        dest=Path(params["dest"]).absolute(),
        token_file=Path(token_file) if token_file else None,
        endpoint=endpoint.rstrip("/") if endpoint else None,
        reserve_bytes=max(0, params["reserve_bytes"]),
    )


def outcome(req: Request, do_fetch: bool) -> tuple[dict[str, Any] | None, str | None]:
    """The result of a plan (``do_fetch=False``) or fetch, or the one-line message it failed with."""
    try:
        return run(req, do_fetch=do_fetch), None
    except FetchError as error:
        return None, f"host {req.host}: repo {req.repo}: {error}"
    except OSError as exc:  # local disk trouble: permissions, ENOSPC during the transfer, ...
        error = FetchError(
            f"{exc.strerror or exc} ({exc.filename or req.dest})",
            "check that the service user owns the models directory and the disk has room",
        )
        return None, f"host {req.host}: repo {req.repo}: {error}"


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    req = request(module.params)
    result, message = outcome(req, do_fetch=not module.check_mode)
    if result is None:
        module.fail_json(msg=message)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
