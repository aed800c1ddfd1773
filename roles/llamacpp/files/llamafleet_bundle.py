"""CUDA bundle: install the official llama.cpp CUDA image's build into a versioned prefix, no toolkit needed.

Seed 000 could not build CUDA at all (Fedora 44's GCC 16 is newer than any nvcc accepts) and lifted the build
out of ``ghcr.io/ggml-org/llama.cpp:full-cuda13``. This host program does that reproducibly:

1. get the image as an OCI image archive: ``skopeo copy``, ``podman save --format oci-archive`` or ``docker save``
   (whichever the host has), or take an archive/layout path given by the user;
2. read it by the OCI image layout rules (``index.json`` -> manifest for this platform -> layers applied in order,
   whiteouts and opaque directories honoured), unpacking only ``/app`` and ``/usr/local/cuda*``;
3. copy the wanted executables to ``bin/``; ggml's backend modules (``libggml-cuda.so``, ``libggml-cpu-*.so``:
   ggml dlopens them from the executable's directory) beside them; every other library of ``/app`` and the
   CUDA runtime libraries they need (cudart, cuBLAS, cuBLASLt) to ``lib/``. ``libcuda`` is never copied: it is
   the host driver's (the image's ``compat/libcuda`` would shadow it);
4. set ``$ORIGIN/../lib`` as the RPATH of everything in ``bin/`` and ``$ORIGIN`` on everything in ``lib/``
   (patchelf), check with ``ldd`` that nothing but ``libcuda.so.1`` is left unresolved, and only then move the
   staging directory into the prefix.

Standard library only, and nothing from the controller package ``generators``: the llamacpp role copies this
file from its ``files/`` to the host, at the manifest's ``llamacpp.bundle_helper``
(``<cache_root>/bin/llamafleet-bundle.py``), and the rendered bundle build script runs it with the host's python3.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

TOOLS = ("skopeo", "podman", "docker")
KEEP = ("app/", "usr/local/cuda")  # the parts of the image the bundle needs
CUDA_LIB_GLOBS = ("usr/local/cuda*/targets/*/lib", "usr/local/cuda*/lib64", "usr/local/cuda*/lib")
DRIVER_LIBS = ("libcuda.so*", "libnvidia-*.so*", "libnvcuvid.so*")  # come from the host's driver, never copied
ALLOWED_MISSING = ("libcuda.so.1",)
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
_MODULE = re.compile(r"^libggml-(?!base[.-])[A-Za-z0-9_-]+\.so$")  # what ggml_backend_load_best looks for
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class BundleError(Exception):
    """The image or the extracted bundle is not usable; the message says why."""


# ---- getting the image -------------------------------------------------------------------------------------


def detect_tool(which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The first of skopeo (no daemon, no local storage), podman, docker found on PATH."""
    return next((tool for tool in TOOLS if which(tool)), None)


def fetch_commands(tool: str, image: str, archive: Path) -> list[list[str]]:
    """The commands that leave ``image`` as an OCI image archive at ``archive``."""
    if tool == "skopeo":
        return [["skopeo", "copy", f"docker://{image}", f"oci-archive:{archive}"]]
    if tool == "podman":
        return [["podman", "pull", image], ["podman", "save", "--format", "oci-archive", "-o", str(archive), image]]
    if tool == "docker":  # docker >= 25 writes an OCI image layout (index.json + blobs/) into `docker save`
        return [["docker", "pull", image], ["docker", "save", "-o", str(archive), image]]
    raise BundleError(f"unknown tool {tool!r} (known: {', '.join(TOOLS)})")


def image_present(tool: str, image: str) -> bool:
    if tool == "podman":
        return subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0
    if tool == "docker":
        return subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode == 0
    return False


def fetch(image: str, archive: Path, tool: str | None = None) -> Path:
    tool = tool or detect_tool()
    if tool is None:
        raise BundleError("none of skopeo, podman, docker is installed: install one, or pass --archive")
    commands = fetch_commands(tool, image, archive)
    if image_present(tool, image):
        commands = commands[1:]  # already pulled: only save
    archive.unlink(missing_ok=True)
    for command in commands:
        print("+ " + " ".join(command), flush=True)
        subprocess.run(command, check=True)
    return archive


# ---- reading an OCI image layout (a directory or a tar of one) ---------------------------------------------


class Layout:
    """Blobs of an OCI image layout, from a directory or an archive."""

    def __init__(self, path: Path):
        self.path = path
        self._tar = None if path.is_dir() else tarfile.open(path)  # noqa: SIM115 - closed in close()
        if self._read("oci-layout") is None:
            raise BundleError(f"{path}: not an OCI image layout (no oci-layout file)")

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def _open(self, name: str) -> IO[bytes] | None:
        if self._tar is None:
            file = self.path / name
            return file.open("rb") if file.is_file() else None
        try:
            return self._tar.extractfile(name)
        except KeyError:
            return None

    def _read(self, name: str) -> bytes | None:
        handle = self._open(name)
        if handle is None:
            return None
        with handle:
            return handle.read()

    def index(self) -> dict:
        raw = self._read("index.json")
        if raw is None:
            raise BundleError(f"{self.path}: no index.json")
        return json.loads(raw)

    @staticmethod
    def _blob_name(digest: str) -> str:
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
            raise BundleError(f"unsupported digest {digest!r}")
        return f"blobs/sha256/{hexdigest}"

    def json_blob(self, digest: str) -> dict:
        raw = self._read(self._blob_name(digest))
        if raw is None:
            raise BundleError(f"{self.path}: blob {digest} missing")
        if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
            raise BundleError(f"{self.path}: blob {digest} does not match its digest")
        return json.loads(raw)

    @contextlib.contextmanager
    def blob_stream(self, digest: str) -> Iterator[IO[bytes]]:
        handle = self._open(self._blob_name(digest))
        if handle is None:
            raise BundleError(f"{self.path}: blob {digest} missing")
        with handle:
            yield handle


def host_platform() -> tuple[str, str]:
    machine = platform.machine()
    return "linux", _ARCH.get(machine, machine)


def select_manifest(layout: Layout, want: tuple[str, str] | None = None) -> dict:
    """The image manifest for this platform, following nested indexes (multi-arch images)."""
    want = want or host_platform()
    descriptors = layout.index().get("manifests", [])
    while True:
        matching = [
            d
            for d in descriptors
            if "platform" not in d or (d["platform"].get("os"), d["platform"].get("architecture")) == want
        ]
        if not matching:
            found = ", ".join(f"{d['platform'].get('os')}/{d['platform'].get('architecture')}" for d in descriptors)
            raise BundleError(f"{layout.path}: no image for {want[0]}/{want[1]} (has {found or 'nothing'})")
        chosen = next((d for d in matching if "platform" in d), matching[0])
        body = layout.json_blob(chosen["digest"])
        if chosen.get("mediaType") in INDEX_TYPES or body.get("mediaType") in INDEX_TYPES:
            descriptors = body.get("manifests", [])
            continue
        return body


@contextlib.contextmanager
def _tar_of(blob: Path) -> Iterator[tarfile.TarFile]:
    """The layer blob as a (seekable) tar, whatever its compression."""
    with blob.open("rb") as handle:
        head = handle.read(4)
    if head[:2] == b"\x1f\x8b":
        with tarfile.open(blob, "r:gz") as tar:
            yield tar
    elif head == b"\x28\xb5\x2f\xfd":
        if shutil.which("zstd") is None:
            raise BundleError("a layer is zstd-compressed and the zstd command is not installed")
        plain = blob.with_suffix(".tar")
        subprocess.run(["zstd", "-q", "-d", "-f", str(blob), "-o", str(plain)], check=True)
        with tarfile.open(plain, "r:") as tar:
            yield tar
    else:
        with tarfile.open(blob, "r:") as tar:
            yield tar


def _kept(name: str, keep: tuple[str, ...]) -> bool:
    return any(name.startswith(k) or k.startswith(name.rstrip("/") + "/") for k in keep)


def _clean(name: str) -> str | None:
    path = PurePosixPath(name.lstrip("./").lstrip("/") or ".")
    if ".." in path.parts:
        return None
    return str(path)


def resolve_in_root(root: Path, relative: str, depth: int = 0) -> Path:
    """``relative`` inside ``root`` with every symlink followed as if ``root`` were ``/``; never leaves root."""
    if depth > 40:
        raise BundleError(f"symlink loop at {relative}")
    current = root
    parts = [p for p in PurePosixPath(relative).parts if p not in ("/", ".")]
    for i, part in enumerate(parts):
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            target = os.readlink(candidate)
            base = "" if target.startswith("/") else str(current.relative_to(root))
            rest = "/".join([*([base] if base else []), target.lstrip("/"), *parts[i + 1 :]])
            return resolve_in_root(root, rest, depth + 1)
        current = candidate
    return current


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def apply_layer(tar: tarfile.TarFile, root: Path, keep: tuple[str, ...] = KEEP) -> None:
    """Apply one layer to ``root``: its whiteouts first (they hide lower layers only), then its entries."""
    members = tar.getmembers()
    for member in members:
        name = _clean(member.name)
        if name is None or not _kept(name, keep):
            continue
        parent, _, base = name.rpartition("/")
        if base == ".wh..wh..opq":
            directory = resolve_in_root(root, parent)
            if directory.is_dir():
                for child in directory.iterdir():
                    _remove(child)
        elif base.startswith(".wh."):
            _remove(resolve_in_root(root, parent) / base[4:])
    for member in members:
        name = _clean(member.name)
        if name is None or name == "." or not _kept(name, keep) or PurePosixPath(name).name.startswith(".wh."):
            continue
        parent, _, base = name.rpartition("/")
        target = resolve_in_root(root, parent) / base
        if target.is_symlink() or (target.exists() and not (member.isdir() and target.is_dir())):
            _remove(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        if member.isdir():
            target.mkdir(exist_ok=True)
        elif member.issym():
            os.symlink(member.linkname, target)
        elif member.islnk():
            source = _clean(member.linkname)
            if source is not None and resolve_in_root(root, source).is_file():
                shutil.copy2(resolve_in_root(root, source), target)
        elif member.isfile():
            with tar.extractfile(member) as src, target.open("wb") as dst:  # type: ignore[union-attr]
                shutil.copyfileobj(src, dst)
            target.chmod(member.mode & 0o777)


def unpack(layout: Layout, root: Path, keep: tuple[str, ...] = KEEP) -> dict:
    """Apply every layer of this platform's manifest in order to ``root``; returns the manifest."""
    manifest = select_manifest(layout)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix="llamafleet-layers-") as tmp:
        for number, layer in enumerate(manifest.get("layers", [])):
            blob = Path(tmp) / f"layer{number}"
            sha = hashlib.sha256()
            with layout.blob_stream(layer["digest"]) as stream, blob.open("wb") as out:
                while chunk := stream.read(1 << 20):
                    sha.update(chunk)
                    out.write(chunk)
            if "sha256:" + sha.hexdigest() != layer["digest"]:
                raise BundleError(f"layer {layer['digest']} does not match its digest")
            with _tar_of(blob) as tar:
                apply_layer(tar, root, keep)
            blob.unlink()
    return manifest


# ---- choosing and placing files ----------------------------------------------------------------------------


def is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"\x7fELF"


def needed(path: Path) -> list[str]:
    out = subprocess.run(["patchelf", "--print-needed", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()


def is_driver_lib(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in DRIVER_LIBS)


@dataclass(frozen=True)
class Placement:
    """Where each file of the bundle goes: name in the prefix -> file in the unpacked image (or a link)."""

    bin: dict[str, Path]
    lib: dict[str, Path]
    lib_links: dict[str, str]  # lib/<name> -> a sibling file name
    skipped_driver: tuple[str, ...]


def place(root: Path, targets: tuple[str, ...]) -> Placement:
    """Decide the bundle's contents from an unpacked image."""
    app = root / "app"
    if not app.is_dir():
        raise BundleError("the image has no /app (not an official llama.cpp image?)")
    bin_files: dict[str, Path] = {}
    for target in targets:
        file = app / target
        if not file.is_file() or not is_elf(file):
            raise BundleError(f"the image has no /app/{target}")
        bin_files[target] = file
    lib_files: dict[str, Path] = {}
    links: dict[str, str] = {}
    for entry in sorted(app.iterdir()):
        name = entry.name
        if ".so" not in name or is_driver_lib(name):
            continue
        if _MODULE.match(name):
            real = resolve_in_root(root, f"app/{name}")
            if real.is_file() and is_elf(real):
                bin_files[name] = real
        elif entry.is_symlink() and "/" not in os.readlink(entry):
            links[name] = os.readlink(entry)
        elif entry.is_file() and is_elf(entry):
            lib_files[name] = entry
    # The CUDA runtime: what the copied files need and /app does not have, from the image's toolkit dirs.
    cuda_dirs = [d for pattern in CUDA_LIB_GLOBS for d in sorted(root.glob(pattern))]
    skipped: set[str] = set()
    pending = [*bin_files.values(), *lib_files.values()]
    while pending:
        for name in needed(pending.pop()):
            if name in lib_files or name in links or name in bin_files:
                continue
            if is_driver_lib(name):
                skipped.add(name)
                continue
            for directory in cuda_dirs:
                candidate = directory / name
                if candidate.exists() or candidate.is_symlink():
                    real = resolve_in_root(root, str(candidate.relative_to(root)))
                    if real.is_file() and is_elf(real):
                        lib_files[name] = real
                        pending.append(real)
                        break
    return Placement(bin_files, lib_files, links, tuple(sorted(skipped)))


def install(placement: Placement, stage: Path) -> None:
    """Copy into ``stage`` and set the RPATHs."""
    (stage / "bin").mkdir(parents=True)
    (stage / "lib").mkdir()
    for name, source in placement.bin.items():
        shutil.copy2(source, stage / "bin" / name)
        (stage / "bin" / name).chmod(0o755)
        subprocess.run(["patchelf", "--set-rpath", "$ORIGIN/../lib", str(stage / "bin" / name)], check=True)
    for name, source in placement.lib.items():
        shutil.copy2(source, stage / "lib" / name)
        (stage / "lib" / name).chmod(0o755)
        subprocess.run(["patchelf", "--set-rpath", "$ORIGIN", str(stage / "lib" / name)], check=True)
    for name, target in placement.lib_links.items():
        if (stage / "lib" / target).exists() or target in placement.lib_links:
            os.symlink(target, stage / "lib" / name)


_VERSION_MISSING = re.compile(r"version `([^']+)' not found")


def unresolved(stage: Path) -> dict[str, list[str]]:
    """Per file, what ``ldd`` cannot satisfy: missing libraries (except the driver's libcuda.so.1) and missing
    symbol versions (an image built against a newer glibc than the host's: ``GLIBC_2.38``)."""
    missing: dict[str, list[str]] = {}
    for file in sorted([*(stage / "bin").iterdir(), *(stage / "lib").iterdir()]):
        if file.is_symlink() or not is_elf(file):
            continue
        out = subprocess.run(["ldd", str(file)], capture_output=True, text=True, check=False)
        names = [line.split()[0] for line in out.stdout.splitlines() if "=> not found" in line]
        names = [n for n in names if n not in ALLOWED_MISSING]
        names += sorted({m for m in _VERSION_MISSING.findall(out.stdout + out.stderr)})
        if names:
            missing[str(file.relative_to(stage))] = names
    return missing


def extract(layout_path: Path, prefix: Path, targets: tuple[str, ...], work_dir: Path | None = None) -> Placement:
    """Unpack the image, stage the bundle beside ``prefix``, verify it, then move it into ``prefix``."""
    if prefix.exists():
        raise BundleError(f"{prefix} already exists: installed builds are never overwritten")
    stage = prefix.with_name(prefix.name + ".staging")
    if stage.exists():
        shutil.rmtree(stage)
    layout = Layout(layout_path)
    try:
        with tempfile.TemporaryDirectory(dir=work_dir, prefix="llamafleet-image-") as tmp:
            root = Path(tmp)
            unpack(layout, root)
            placement = place(root, targets)
            install(placement, stage)
    finally:
        layout.close()
    missing = unresolved(stage)
    if missing:
        detail = "; ".join(f"{f}: {', '.join(n)}" for f, n in missing.items())
        raise BundleError(f"unresolved libraries in {stage} (left there for inspection): {detail}")
    os.rename(stage, prefix)
    return placement


def image_ref(build: int, flavour: str = "cuda13", kind: str = "full", repo: str = "ghcr.io/ggml-org/llama.cpp") -> str:
    """The official image of one build: ``ghcr.io/ggml-org/llama.cpp:full-cuda13-b<build>``."""
    return f"{repo}:{kind}-{flavour}-b{build}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llamafleet-bundle.py", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="image reference to pull, e.g. " + image_ref(11434))
    source.add_argument("--archive", type=Path, help="an OCI image archive (tar) or layout directory")
    parser.add_argument("--tool", choices=TOOLS, help="how to pull (default: the first of skopeo, podman, docker)")
    parser.add_argument("--prefix", type=Path, required=True, help="the versioned prefix to create")
    parser.add_argument("--targets", nargs="+", default=["llama-server"], help="executables to install")
    parser.add_argument("--work-dir", type=Path, help="where the image is unpacked (temporary)")
    args = parser.parse_args(argv)
    try:
        if args.work_dir:
            args.work_dir.mkdir(parents=True, exist_ok=True)
        if args.image:
            with tempfile.TemporaryDirectory(dir=args.work_dir, prefix="llamafleet-pull-") as tmp:
                archive = fetch(args.image, Path(tmp) / "image.tar", args.tool)
                placement = extract(archive, args.prefix, tuple(args.targets), args.work_dir)
        else:
            placement = extract(args.archive, args.prefix, tuple(args.targets), args.work_dir)
    except (BundleError, subprocess.CalledProcessError, OSError) as err:
        print(f"llamafleet bundle: {err}", file=sys.stderr)
        return 1
    print(f"installed into {args.prefix}: bin/ {', '.join(sorted(placement.bin))}")
    print(f"  lib/ {', '.join(sorted(placement.lib))}")
    if placement.skipped_driver:
        print(f"left to the host's driver: {', '.join(placement.skipped_driver)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
