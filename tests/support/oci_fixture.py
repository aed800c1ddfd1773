"""Test fixture: an OCI image archive laid out like ghcr.io/ggml-org/llama.cpp:full-cuda13-b<build>.

Everything in it is real: gcc-compiled ELF executables and shared libraries with the official image's names,
sonames and places (the llama.cpp build under /app, ggml's backend modules beside it, the CUDA runtime under
/usr/local/cuda-13.1/targets/x86_64-linux/lib, the image's compat libcuda, which must never be copied), in three
layers like the official image's (CUDA runtime base, COPY of /app/lib, the full stage), with a whiteout and an
opaque directory, behind a multi-platform image index. Written with tarfile + json + hashlib by the OCI image
layout rules; the extractor under test reads it by the same rules.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

CUDA_LIB = "usr/local/cuda-13.1/targets/x86_64-linux/lib"
STALE_CUDA_LIB = "usr/local/cuda-12.9/targets/x86_64-linux/lib"  # emptied by an opaque whiteout in layer 2

SOURCES = {
    # name: (soname, C source, libraries it links)
    "libcublasLt.so.13.2.0.9": ("libcublasLt.so.13", 'const char *cublaslt_id(void) { return "cublasLt-13"; }', []),
    "libcublas.so.13.2.0.9": (
        "libcublas.so.13",
        (
            "const char *cublaslt_id(void);\nstatic char b[64];\n#include <stdio.h>\n"
            'const char *cublas_id(void) { snprintf(b, sizeof b, "cublas-13+%s", cublaslt_id()); return b; }'
        ),
        ["cublasLt"],
    ),
    "libcudart.so.13.1.80": ("libcudart.so.13", 'const char *cudart_id(void) { return "cudart-13"; }', []),
    "libcuda.so.580.95.05": ("libcuda.so.1", 'const char *cuda_driver_id(void) { return "driver"; }', []),
    "libggml-base.so.0.9.4": ("libggml-base.so.0", 'const char *ggml_base_id(void) { return "ggml-base"; }', []),
    "libggml.so.0.9.4": (
        "libggml.so.0",
        # ggml_backend_load_best: dlopen libggml-<name>.so from the executable's directory
        (
            "#include <dlfcn.h>\n#include <stdio.h>\n#include <string.h>\n#include <unistd.h>\n"
            "const char *ggml_base_id(void);\n"
            "const char *ggml_load_cuda(char *err, size_t n) {\n"
            '  char exe[4096]; ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);\n'
            "  if (len < 0) return NULL; exe[len] = 0; *strrchr(exe, '/') = 0; strcat(exe, \"/libggml-cuda.so\");\n"
            "  void *h = dlopen(exe, RTLD_NOW | RTLD_LOCAL);\n"
            '  if (!h) { snprintf(err, n, "%s", dlerror()); return NULL; }\n'
            '  const char *(*describe)(void) = (const char *(*)(void)) dlsym(h, "ggml_backend_describe");\n'
            "  return describe ? describe() : NULL;\n}"
        ),
        ["ggml-base", "dl"],
    ),
    "libllama.so.0.0.11434": (
        "libllama.so.0",
        'const char *ggml_base_id(void);\nconst char *llama_id(void) { return "llama-b11434"; }',
        ["ggml", "ggml-base"],
    ),
    "libggml-cuda.so": (
        None,
        (
            "#include <stdio.h>\nconst char *cudart_id(void); const char *cublas_id(void);\n"
            "const char *cuda_driver_id(void); const char *ggml_base_id(void);\nstatic char b[256];\n"
            "const char *ggml_backend_describe(void) {\n"
            '  snprintf(b, sizeof b, "CUDA0 via %s %s %s %s", cudart_id(), cublas_id(), cuda_driver_id(), ggml_base_id());\n'
            "  return b;\n}"
        ),
        ["ggml-base", "cudart", "cublas", "cuda"],
    ),
}

SERVER = (
    "#include <stdio.h>\n#include <string.h>\n"
    "const char *llama_id(void); const char *ggml_load_cuda(char *err, size_t n);\n"
    "int main(int argc, char **argv) {\n"
    '  if (argc > 1 && strcmp(argv[1], "--version") == 0) { printf("version: 11434 (fixture)\\n"); return 0; }\n'
    '  printf("%s %s ok\\n", argv[0], llama_id());\n'
    '  char err[512] = ""; const char *dev = ggml_load_cuda(err, sizeof err);\n'
    '  if (!dev) { printf("cuda backend unavailable: %s\\n", err); return 3; }\n'
    '  printf("%s\\n", dev); return 0;\n}\n'
)

SONAME_LINKS = {  # link name -> file, as the builds and the CUDA runtime image have them
    "libcublasLt.so.13": "libcublasLt.so.13.2.0.9",
    "libcublas.so.13": "libcublas.so.13.2.0.9",
    "libcudart.so.13": "libcudart.so.13.1.80",
    "libcuda.so.1": "libcuda.so.580.95.05",
    "libggml-base.so.0": "libggml-base.so.0.9.4",
    "libggml-base.so": "libggml-base.so.0",
    "libggml.so.0": "libggml.so.0.9.4",
    "libggml.so": "libggml.so.0",
    "libllama.so.0": "libllama.so.0.0.11434",
    "libllama.so": "libllama.so.0",
}


@dataclass(frozen=True)
class Built:
    dir: Path  # every compiled file plus the soname links, as a flat directory

    def path(self, name: str) -> Path:
        return self.dir / name


def compile_all(out: Path, cublaslt_text: str = "cublasLt-13") -> Built:
    out.mkdir(parents=True, exist_ok=True)
    order = list(SOURCES)
    for name in order:
        soname, source, links = SOURCES[name]
        source = source.replace("cublasLt-13", cublaslt_text)
        (out / f"{name}.c").write_text(source)
        command = ["gcc", "-shared", "-fPIC", "-o", str(out / name), str(out / f"{name}.c"), f"-L{out}"]
        if soname:
            command.append(f"-Wl,-soname,{soname}")
        command += [f"-l{lib}" for lib in links]
        subprocess.run(command, check=True)
        for link, target in SONAME_LINKS.items():
            if target == name or (target in SONAME_LINKS and SONAME_LINKS[target] == name):
                (out / link).unlink(missing_ok=True)
                (out / link).symlink_to(target)
        if name.startswith("libcuda.so"):
            (out / "libcuda.so").unlink(missing_ok=True)
            (out / "libcuda.so").symlink_to("libcuda.so.1")
        for lib in ("cublasLt", "cublas", "cudart"):
            so = out / f"lib{lib}.so"
            if not so.exists() and (out / f"lib{lib}.so.13").exists():
                so.symlink_to(f"lib{lib}.so.13")
    (out / "server.c").write_text(SERVER)
    for exe in ("llama-server", "llama-bench"):
        subprocess.run(
            ["gcc", "-o", str(out / exe), str(out / "server.c"), f"-L{out}", "-lllama", "-lggml", "-lggml-base"],
            check=True,
        )
    return Built(out)


# ---- OCI layout writing ------------------------------------------------------------------------------------


class Layer:
    """An in-memory layer tar."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.names: set[str] = set()

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        assert name not in self.names, f"{name} twice in one layer"
        self.names.add(name)
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.mtime = 1_700_000_000
        return info

    def dir(self, name: str) -> None:
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, 0o755))

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def symlink(self, name: str, target: str) -> None:
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def hardlink(self, name: str, target: str) -> None:
        info = self._info(name, tarfile.LNKTYPE, 0o644)
        info.linkname = target
        self.tar.addfile(info)

    def dirs(self, path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            if "/".join(parts[:i]) not in self.names:
                self.dir("/".join(parts[:i]))

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buffer.getvalue()


class ImageWriter:
    """Blobs + index.json + oci-layout, tarred into an oci-archive."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def blob(self, data: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def manifest(self, layers: list[tuple[bytes, bool]], arch: str) -> dict:
        descriptors, diff_ids = [], []
        for raw, compress in layers:
            diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
            if compress:
                descriptors.append(
                    self.blob(gzip.compress(raw, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
                )
            else:
                descriptors.append(self.blob(raw, "application/vnd.oci.image.layer.v1.tar"))
        config = {
            "architecture": arch,
            "os": "linux",
            "config": {"WorkingDir": "/app", "Entrypoint": ["/app/tools.sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": self.blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
            "layers": descriptors,
        }
        return self.blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")

    def write(self, path: Path, manifests: dict[str, dict], ref: str) -> Path:
        image_index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{**d, "platform": {"os": "linux", "architecture": arch}} for arch, d in manifests.items()],
            "annotations": {"org.opencontainers.image.version": "b11434"},
        }
        nested = self.blob(json.dumps(image_index).encode(), "application/vnd.oci.image.index.v1+json")
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{**nested, "annotations": {"org.opencontainers.image.ref.name": ref}}],
        }
        with tarfile.open(path, "w") as out:
            for name, data in (
                ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
                ("index.json", json.dumps(index).encode()),
                *((f"blobs/sha256/{d.split(':')[1]}", b) for d, b in sorted(self.blobs.items())),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
        return path


def official_like_image(work: Path, *, drop: tuple[str, ...] = ()) -> Path:
    """Build the fixture archive; ``drop`` leaves named files out of the CUDA runtime (to test the ldd check)."""
    built = compile_all(work / "build")
    stale = compile_all(work / "stale", cublaslt_text="STALE-cublasLt-12")

    # Layer 1: the CUDA runtime base image, plus leftovers a later layer removes.
    base = Layer()
    base.dirs(CUDA_LIB)
    for name in ("libcudart.so.13.1.80", "libcublas.so.13.2.0.9", "libcublasLt.so.13.2.0.9"):
        if name not in drop:
            base.file(f"{CUDA_LIB}/{name}", built.path(name).read_bytes(), 0o755)
    for link in ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13"):
        if SONAME_LINKS[link] not in drop:
            base.symlink(f"{CUDA_LIB}/{link}", SONAME_LINKS[link])
    base.symlink("usr/local/cuda-13.1/lib64", "targets/x86_64-linux/lib")
    base.symlink("usr/local/cuda", "/etc/alternatives/cuda")
    base.dirs("usr/local/cuda-13.1/compat")
    base.file("usr/local/cuda-13.1/compat/libcuda.so.580.95.05", built.path("libcuda.so.580.95.05").read_bytes(), 0o755)
    base.symlink("usr/local/cuda-13.1/compat/libcuda.so.1", "libcuda.so.580.95.05")
    base.dirs(STALE_CUDA_LIB)  # an older runtime whose libraries sort first: hidden by an opaque whiteout
    base.file(f"{STALE_CUDA_LIB}/libcublasLt.so.13", stale.path("libcublasLt.so.13.2.0.9").read_bytes(), 0o755)
    base.dirs("app")
    base.file("app/libggml-vulkan.so", built.path("libggml-cuda.so").read_bytes(), 0o755)  # removed by a whiteout

    # Layer 2: COPY --from=build /app/lib/ /app (the find -exec cp -P of every *.so*, symlinks kept).
    libs = Layer()
    libs.dirs("app")
    for name in ("libggml-base.so.0.9.4", "libggml.so.0.9.4", "libllama.so.0.0.11434", "libggml-cuda.so"):
        libs.file(f"app/{name}", built.path(name).read_bytes(), 0o755)
    for link in ("libggml-base.so.0", "libggml-base.so", "libggml.so.0", "libggml.so", "libllama.so.0", "libllama.so"):
        libs.symlink(f"app/{link}", SONAME_LINKS[link])
    libs.file("app/.wh.libggml-vulkan.so", b"")
    libs.dirs(STALE_CUDA_LIB)
    libs.file(f"{STALE_CUDA_LIB}/.wh..wh..opq", b"")

    # Layer 3: the full stage (executables, scripts, python) and files outside what the bundle needs.
    full = Layer()
    full.dirs("app")
    full.file("app/llama-server", built.path("llama-server").read_bytes(), 0o755)
    full.hardlink("app/llama-bench", "app/llama-server")
    full.file("app/tools.sh", b"#!/bin/bash\necho tools\n", 0o755)
    full.file("app/convert_hf_to_gguf.py", b"print('convert')\n", 0o644)
    full.dirs("usr/lib/python3")
    full.file("usr/lib/python3/big.py", b"# not extracted\n")

    # Another platform whose /app/llama-server is not even an ELF: picking it would fail the test.
    other = Layer()
    other.dirs("app")
    other.file("app/llama-server", b"#!/bin/sh\necho arm64\n", 0o755)

    writer = ImageWriter()
    amd64 = writer.manifest([(base.bytes(), True), (libs.bytes(), True), (full.bytes(), False)], "amd64")
    arm64 = writer.manifest([(other.bytes(), True)], "arm64")
    return writer.write(work / "image.tar", {"arm64": arm64, "amd64": amd64}, "full-cuda13-b11434")
