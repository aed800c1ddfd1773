"""The CUDA bundle extractor on an OCI image archive laid out like the official llama.cpp CUDA image (offline)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import llamafleet_bundle as bundle  # roles/llamacpp/files, on pytest's pythonpath (pyproject.toml)
import pytest
from packaging.version import Version

from generators.facts.toolchain import HostCompiler, HostToolchain
from generators.plan.backends import BuildPaths, BuildTarget, BundleSettings
from generators.plan.toolchain import resolve
from generators.render.builds import render_build

from oci_fixture import official_like_image

ROOT = Path(__file__).resolve().parents[3]
BUNDLE_PY = ROOT / "roles" / "llamacpp" / "files" / "llamafleet_bundle.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # the host's python: the extractor must need nothing but the standard library


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return official_like_image(tmp_path_factory.mktemp("image"))


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The host's NVIDIA driver, as far as the bundle is concerned: a real libcuda.so.1 outside the prefix."""
    out = tmp_path_factory.mktemp("driver")
    (out / "cuda.c").write_text('const char *cuda_driver_id(void) { return "host-driver"; }\n')
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(out / "libcuda.so.1"), str(out / "cuda.c")],
        check=True,
    )
    return out


def run_bundle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYSTEM_PYTHON, str(BUNDLE_PY), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )


def rpath(path: Path) -> str:
    return subprocess.run(
        ["patchelf", "--print-rpath", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def installed(image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("opt") / "b11434-cuda"
    out = run_bundle("--archive", str(image), "--prefix", str(prefix), "--targets", "llama-server", "llama-bench")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "left to the host's driver: libcuda.so.1" in out.stdout
    return prefix


def test_layout_and_rpaths(installed: Path) -> None:
    assert sorted(p.name for p in (installed / "bin").iterdir()) == ["libggml-cuda.so", "llama-bench", "llama-server"]
    lib = sorted(p.name for p in (installed / "lib").iterdir())
    for name in (
        "libcudart.so.13",
        "libcublas.so.13",
        "libcublasLt.so.13",
        "libggml-base.so.0",
        "libggml.so.0",
        "libllama.so.0",
    ):
        assert name in lib
    assert (installed / "lib" / "libllama.so").is_symlink() and (installed / "lib" / "libllama.so").resolve().is_file()
    for exe in (installed / "bin").iterdir():
        assert rpath(exe) == "$ORIGIN/../lib"
    for so in (installed / "lib").iterdir():
        if not so.is_symlink():
            assert rpath(so) == "$ORIGIN"
    assert not (installed.parent / "b11434-cuda.staging").exists()


def test_libcuda_never_copied_and_whiteouts_honoured(installed: Path) -> None:
    names = [p.name for p in installed.rglob("*")]
    assert not [n for n in names if n.startswith("libcuda.so")], names
    assert "libggml-vulkan.so" not in names  # deleted by a whiteout in a later layer
    assert "tools.sh" not in names and "convert_hf_to_gguf.py" not in names


def test_ldd_resolves_everything_but_libcuda(installed: Path) -> None:
    assert bundle.unresolved(installed) == {}
    ldd = subprocess.run(
        ["ldd", str(installed / "bin" / "libggml-cuda.so")], capture_output=True, text=True, check=True
    ).stdout
    assert "libcuda.so.1 => not found" in ldd
    assert f"libcudart.so.13 => {installed}/bin/../lib/libcudart.so.13" in ldd
    assert f"libcublas.so.13 => {installed}/bin/../lib/libcublas.so.13" in ldd
    server = subprocess.run(
        ["ldd", str(installed / "bin" / "llama-server")], capture_output=True, text=True, check=True
    ).stdout
    assert f"libllama.so.0 => {installed}/bin/../lib/libllama.so.0" in server and "not found" not in server


def loaded_from(stderr: str) -> list[str]:
    """Paths the dynamic loader initialised (LD_DEBUG=libs prints 'calling init: PATH')."""
    return [line.split("calling init:", 1)[1].strip() for line in stderr.splitlines() if "calling init:" in line]


def test_runs_from_elsewhere_and_resolves_through_rpath(installed: Path, driver: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Without a driver: the CUDA module cannot load; that is the silent-CPU-fallback case the device check catches.
    no_driver = subprocess.run(
        [str(installed / "bin" / "llama-server")], cwd=elsewhere, capture_output=True, text=True, env={}, check=False
    )
    assert no_driver.returncode == 3
    assert "llama-b11434 ok" in no_driver.stdout
    assert "cuda backend unavailable: libcuda.so.1: cannot open shared object file" in no_driver.stdout

    env = {"LD_LIBRARY_PATH": str(driver), "LD_DEBUG": "libs"}
    run = subprocess.run(
        [str(installed / "bin" / "llama-server")], cwd=elsewhere, capture_output=True, text=True, env=env, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # The image's stale cublasLt (in a directory emptied by an opaque whiteout) was not the one taken.
    assert "CUDA0 via cudart-13 cublas-13+cublasLt-13 host-driver ggml-base" in run.stdout
    loaded = loaded_from(run.stderr)
    ours = [p for p in loaded if Path(p).name.startswith(("libcu", "libggml", "libllama"))]
    assert sorted(Path(p).name for p in ours) == sorted(
        [
            "libcudart.so.13",
            "libcublas.so.13",
            "libcublasLt.so.13",
            "libggml-base.so.0",
            "libggml.so.0",
            "libllama.so.0",
            "libggml-cuda.so",
            "libcuda.so.1",
        ]
    )
    for path in ours:
        expected = driver if Path(path).name == "libcuda.so.1" else installed
        assert Path(path).resolve().is_relative_to(expected.resolve()), path


def test_bundle_moves_with_its_prefix(installed: Path, driver: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved" / "b11434-cuda"
    shutil.copytree(installed, moved, symlinks=True)
    run = subprocess.run(
        [str(moved / "bin" / "llama-bench")],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        env={"LD_LIBRARY_PATH": str(driver), "LD_DEBUG": "libs"},
    )
    assert run.returncode == 0, run.stderr
    assert all(not p.startswith(str(installed)) for p in loaded_from(run.stderr))


def test_installed_prefix_is_never_overwritten(image: Path, installed: Path) -> None:
    before = sorted(str(p) for p in installed.rglob("*"))
    out = run_bundle("--archive", str(image), "--prefix", str(installed))
    assert out.returncode == 1 and "already exists" in out.stderr
    assert sorted(str(p) for p in installed.rglob("*")) == before


def test_missing_runtime_library_fails_before_install(tmp_path: Path) -> None:
    broken = official_like_image(tmp_path / "img", drop=("libcublasLt.so.13.2.0.9",))
    prefix = tmp_path / "opt" / "b11434-cuda"
    prefix.parent.mkdir()
    out = run_bundle("--archive", str(broken), "--prefix", str(prefix))
    assert out.returncode == 1
    assert "unresolved libraries" in out.stderr and "libcublasLt.so.13" in out.stderr
    assert not prefix.exists()


def test_image_refs_and_tool_detection() -> None:
    assert bundle.image_ref(11434) == "ghcr.io/ggml-org/llama.cpp:full-cuda13-b11434"
    assert bundle.detect_tool(lambda name: "/usr/bin/docker" if name == "docker" else None) == "docker"
    assert bundle.detect_tool(lambda name: f"/usr/bin/{name}") == "skopeo"
    assert bundle.detect_tool(lambda name: None) is None
    assert bundle.fetch_commands("skopeo", "img:t", Path("/x.tar")) == [
        ["skopeo", "copy", "docker://img:t", "oci-archive:/x.tar"]
    ]
    assert bundle.fetch_commands("podman", "img:t", Path("/x.tar"))[-1] == [
        "podman",
        "save",
        "--format",
        "oci-archive",
        "-o",
        "/x.tar",
        "img:t",
    ]


FIXTURE_REPO = "localhost/llamafleet-fixture"


def podman_with_fixture(image: Path, tmp_path: Path) -> dict[str, str]:
    """A private podman store (in tmp_path) holding the fixture under its official-style tag; returns the env."""
    assert shutil.which("podman"), "podman is needed for this check (ENVIRONMENT.md: apt-get install podman)"
    storage = tmp_path / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path}/graph"\nrunroot = "{tmp_path}/run"\n')
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(storage)}
    subprocess.run(["podman", "load", "-i", str(image)], env=env, check=True, capture_output=True)
    listed = subprocess.run(
        ["podman", "images", "-q", "--no-trunc"], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(set(listed)) == 1, listed
    subprocess.run(["podman", "tag", listed[0], bundle.image_ref(11434, repo=FIXTURE_REPO)], env=env, check=True)
    return env


@pytest.mark.integration  # podman
def test_pull_through_podman_from_local_storage(image: Path, tmp_path: Path) -> None:
    """The --image path with podman, offline: the image is already in podman's store, so only `podman save` runs."""
    env = podman_with_fixture(image, tmp_path)
    prefix = tmp_path / "opt" / "b11434-cuda"
    out = subprocess.run(
        [
            SYSTEM_PYTHON,
            str(BUNDLE_PY),
            "--image",
            bundle.image_ref(11434, repo=FIXTURE_REPO),
            "--tool",
            "podman",
            "--prefix",
            str(prefix),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "+ podman pull" not in out.stdout and "+ podman save --format oci-archive" in out.stdout
    assert bundle.unresolved(prefix) == {}
    assert (prefix / "bin" / "llama-server").is_file() and (prefix / "lib" / "libcudart.so.13").is_file()


@pytest.mark.integration  # podman
def test_rendered_bundle_script_end_to_end(image: Path, tmp_path: Path) -> None:
    """Seed 000's plan (GCC 16, no usable nvcc) renders a script that installs the bundle; run it for real."""
    env = podman_with_fixture(image, tmp_path)
    plan = resolve(
        HostToolchain(
            host="seed000", gcc=HostCompiler(Version("16.1"), "g++"), glibc=Version("2.43"), nvcc=Version("13.2")
        )
    )
    assert plan.kind == "bundle"
    target = BuildTarget(
        host="seed000",
        backend="cuda",
        build=11434,
        cuda_arch=("75",),
        toolchain=plan,
        targets=("llama-server", "llama-bench"),
    )
    paths = BuildPaths(source_dir="/nonexistent", prefix_root=str(tmp_path / "opt"), cache_root=str(tmp_path / "cache"))
    script = tmp_path / "build-llamacpp-cuda.sh"
    script.write_text(render_build(target, paths, BundleSettings(bundle_py=str(BUNDLE_PY), image_repo=FIXTURE_REPO)))
    env["PATH"] = "/usr/bin:/bin"  # no skopeo: the extractor finds podman by itself
    first = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, check=False, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    prefix = tmp_path / "opt" / "b11434-cuda"
    assert "version: 11434 (fixture)" in first.stdout
    assert f"installed b11434-cuda (official image) into {prefix}" in first.stdout
    assert sorted(p.name for p in (prefix / "bin").iterdir()) == ["libggml-cuda.so", "llama-bench", "llama-server"]
    assert not list(prefix.rglob("libcuda.so*"))
    again = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, check=False)
    assert again.returncode == 0 and "already installed" in again.stdout


def test_missing_symbol_versions_are_unresolved_too(tmp_path: Path) -> None:
    """A bundle built against a newer library than the host has (seed 000's glibc worry) fails the ldd check."""
    stage = tmp_path / "stage"
    (stage / "bin").mkdir(parents=True)
    (stage / "lib").mkdir()
    (tmp_path / "v.c").write_text("int v(void) { return 2; }\n")
    (tmp_path / "main.c").write_text("int v(void);\nint main(void) { return v() == 2 ? 0 : 1; }\n")
    for version in ("V_1.0", "V_2.0"):
        (tmp_path / f"{version}.map").write_text(f"{version} {{ global: v; local: *; }};\n")
    new = tmp_path / "new"
    new.mkdir()
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-Wl,-soname,libv.so.1",
            f"-Wl,--version-script={tmp_path}/V_2.0.map",
            "-o",
            str(new / "libv.so.1"),
            str(tmp_path / "v.c"),
        ],
        check=True,
    )
    (new / "libv.so").symlink_to("libv.so.1")
    subprocess.run(["gcc", "-o", str(stage / "bin" / "app"), str(tmp_path / "main.c"), f"-L{new}", "-lv"], check=True)
    subprocess.run(["patchelf", "--set-rpath", "$ORIGIN/../lib", str(stage / "bin" / "app")], check=True)
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-Wl,-soname,libv.so.1",
            f"-Wl,--version-script={tmp_path}/V_1.0.map",
            "-o",
            str(stage / "lib" / "libv.so.1"),
            str(tmp_path / "v.c"),
        ],
        check=True,
    )
    assert bundle.unresolved(stage) == {"bin/app": ["V_2.0"]}
    shutil.copy(new / "libv.so.1", stage / "lib" / "libv.so.1")
    assert bundle.unresolved(stage) == {}
