"""CUDA toolchain plans per seed host, the CLI, the probe, and the private header patch against the real nvcc."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hostsupport import run_cli as run_generators
from packaging.version import Version

from generators.errors import SpecError
from generators.facts.toolchain import HostCompiler, HostToolchain, from_probe
from generators.plan.toolchain import arch_problems, max_gcc_for, resolve, support_matrix
from generators.render.builds import render_probe
from generators.render.templating import Templates, render

ROOT = Path(__file__).resolve().parents[2]


def host(nvcc: str | None, gcc: str, glibc: str, alt: tuple[str, ...] = (), driver: str | None = None) -> HostToolchain:
    return HostToolchain(
        host="seed",
        gcc=HostCompiler(Version(gcc), "g++"),
        glibc=Version(glibc),
        nvcc=None if nvcc is None else Version(nvcc),
        alt_gccs=tuple(HostCompiler(Version(v), f"/usr/bin/g++-{Version(v).major}") for v in alt),
        driver=None if driver is None else Version(driver),
    )


# Seed hosts. What the seeds state is used as stated; where a seed is silent the assumption is in the comment.
SEEDS = {
    # 000: Fedora 44, GCC 16, glibc 2.43; tried CUDA 13.2 and 12.9; no older GCC installed -> lifted the image.
    "000-cuda13.2": (host("13.2", "16.1", "2.43"), "bundle"),
    "000-cuda12.9": (host("12.9", "16.1", "2.43"), "bundle"),
    # 000 again, had Fedora's gcc14 compat package been installed: build with it, headers still need the patch.
    "000-with-gcc14": (host("13.2", "16.1", "2.43", alt=("14.3",)), "alt-gcc+patch"),
    # 001: RTX 4090, arch 89, plain `cmake -DGGML_CUDA=ON` worked (assumed Ubuntu 24.04: CUDA 12.8, GCC 13, glibc 2.39).
    "001": (host("12.8", "13.3", "2.39"), "native"),
    # 002: RTX 3070, arch 86 (assumed Ubuntu 22.04: CUDA 12.4, GCC 11, glibc 2.35).
    "002": (host("12.4", "11.4", "2.35"), "native"),
    # 004: Fedora 43, GCC 15, glibc 2.42, CUDA 13.1 -> rsqrt/rsqrtf noexcept patch.
    "004": (host("13.1", "15.2", "2.42"), "patch"),
}


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_seed_plans(seed: str) -> None:
    toolchain, kind = SEEDS[seed]
    plan = resolve(toolchain)
    assert plan.kind == kind, plan.describe()
    assert plan.reasons


def test_seed_004_patches_exactly_rsqrt() -> None:
    plan = resolve(SEEDS["004"][0])
    assert plan.patch_functions == ("rsqrt", "rsqrtf")
    assert plan.host_cxx is None
    assert "glibc 2.42" in plan.describe()


def test_seed_000_bundle_says_why() -> None:
    plan = resolve(SEEDS["000-cuda13.2"][0])
    assert plan.bundle_tag == "cuda13"
    assert "GCC <= 15" in plan.describe() and "16.1" in plan.describe()


def test_alt_gcc_picks_newest_that_fits() -> None:
    plan = resolve(host("12.8", "15.1", "2.39", alt=("12.3", "14.2", "15.0")))
    assert plan.kind == "alt-gcc"
    assert plan.host_cxx == "/usr/bin/g++-14"


def test_old_glibc_gets_no_patch_for_unrelated_functions() -> None:
    # cospi/sinpi clash from glibc 2.41, fixed in nvcc 13.0: 12.9 on glibc 2.41 patches them, 13.0 does not.
    assert resolve(host("12.9", "14.2", "2.41")).patch_functions == ("cospi", "cospif", "sinpi", "sinpif")
    assert resolve(host("13.0", "14.2", "2.41")).kind == "native"


def test_bundle_needs_new_enough_glibc_and_driver() -> None:
    with pytest.raises(SpecError) as err:
        resolve(host(None, "11.4", "2.35"))
    assert "host seed: llamacpp.backend:" in str(err.value) and "2.39" in str(err.value)
    assert resolve(host(None, "14.2", "2.41", driver="560.35")).bundle_tag == "cuda"
    with pytest.raises(SpecError, match="too old for every official CUDA image"):
        resolve(host(None, "14.2", "2.41", driver="470.1"))


def test_newer_nvcc_than_data_is_flagged_as_a_guess() -> None:
    plan = resolve(host("13.4", "14.2", "2.39"))
    assert plan.kind == "native"
    assert "newer than the support data" in plan.reasons[0]
    assert max_gcc_for(Version("13.4"), support_matrix()) == (15, True)
    assert max_gcc_for(Version("12.9"), support_matrix()) == (14, False)


def test_arch_support() -> None:
    assert arch_problems(Version("12.4"), ("120a",)) == ["nvcc 12.4 cannot compile for 120a (needs nvcc >= 12.8)"]
    assert arch_problems(Version("13.0"), ("61",)) == ["nvcc 13.0 no longer compiles for 61 (last nvcc: 12.9)"]
    assert arch_problems(Version("12.8"), ("75", "86", "89", "120a")) == []


def test_a_toolkit_the_host_does_not_have_yet_is_named_in_the_reasons() -> None:
    """generators/plan/toolkits.py plans for the package's nvcc and the g++ it depends on, before either is there."""
    bare = HostToolchain(
        host="seed", gcc=HostCompiler(Version("14"), "g++", installed_by="Debian 13's g++, which build_deps installs"),
        glibc=Version("2.40"), nvcc=Version("12.4"),
        alt_gccs=(HostCompiler(Version("13"), "/usr/bin/g++-13", installed_by="which the package installs"),),
    )
    plan = resolve(bare, toolkit="from Debian 13's nvidia-cuda-toolkit (non-free), installed by build_deps")
    assert (plan.kind, plan.host_cxx) == ("alt-gcc", "/usr/bin/g++-13")
    assert plan.reasons[0] == (
        "nvcc 12.4 from Debian 13's nvidia-cuda-toolkit (non-free), installed by build_deps; it accepts GCC <= 13, "
        "the system GCC is 14 (Debian 13's g++, which build_deps installs); building with /usr/bin/g++-13, which "
        "the package installs")
    # the same host with the compilers in place reads as before
    assert resolve(host("12.4", "14.2", "2.40", alt=("13.3",))).reasons[0] == (
        "nvcc 12.4 accepts GCC <= 13, the system GCC is 14.2; building with the installed GCC 13.3 (/usr/bin/g++-13)")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_generators("toolchain", *args)


def test_cli_prints_plan_before_anything_builds() -> None:
    out = run_cli("--nvcc", "13.0", "--gcc", "16.1", "--glibc", "2.43", "--alt-gcc", "14.2:/usr/bin/g++-14")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "CUDA toolchain plan: alt-gcc+patch"
    assert "host compiler: /usr/bin/g++-14" in out.stdout
    as_json = json.loads(run_cli("--nvcc", "13.1", "--gcc", "15.2", "--glibc", "2.42", "--json").stdout)
    assert as_json["kind"] == "patch" and as_json["patch_functions"] == ["rsqrt", "rsqrtf"]
    bad = run_cli("--host", "ws1", "--gcc", "11", "--glibc", "2.31")
    assert bad.returncode == 2 and bad.stderr.startswith("host ws1: llamacpp.backend: no way to get a CUDA build")


def test_probe_runs_on_this_host(tmp_path: Path) -> None:
    script = tmp_path / "probe.sh"
    script.write_text(render_probe())
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout)
    libc = subprocess.run(["getconf", "GNU_LIBC_VERSION"], capture_output=True, text=True, check=True).stdout
    assert probe["glibc"] == libc.split()[1]
    gcc = subprocess.run(["g++", "-dumpfullversion", "-dumpversion"], capture_output=True, text=True, check=True)
    assert probe["gcc"] == gcc.stdout.strip()
    if shutil.which("nvcc"):
        assert Version(probe["nvcc"]).major >= 10
    toolchain = from_probe("this", probe)
    assert toolchain.glibc == Version(probe["glibc"])
    (tmp_path / "probe.json").write_text(out.stdout)
    cli = run_cli("--probe-json", str(tmp_path / "probe.json"), "--host", "this")
    assert cli.returncode in (0, 2)
    assert ("CUDA toolchain plan:" in cli.stdout) or cli.stderr.startswith("host this:")


# ---- the private header patch, against the real toolkit on this machine ------------------------------------

KERNEL = "#include <cmath>\n__global__ void k(float *x, double *y) { x[0] = rsqrtf(x[0]); y[0] = rsqrt(y[0]); }\n"
# What glibc >= 2.42's <math.h> declares (C23 rsqrt, __THROW = noexcept (true) in C++), in a system header.
GLIBC_242_DECLS = (
    "#pragma GCC system_header\n"
    'extern "C" {\nextern double rsqrt(double __x) noexcept(true);\nextern float rsqrtf(float __x) noexcept(true);\n}\n'
)


def nvcc_top() -> Path:
    nvcc = shutil.which("nvcc")
    assert nvcc, "these checks need the CUDA toolkit's nvcc (ENVIRONMENT.md: /usr/local/bin/nvcc, CUDA 13.0)"
    out = subprocess.run([nvcc, "--dryrun", "-E", "-x", "cu", "/dev/null"], capture_output=True, text=True, check=False)
    top = next(line.split("=", 1)[1] for line in out.stderr.splitlines() if line.startswith("#$ TOP="))
    return Path(top).resolve()


def compile_with(nvcc: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    (tmp / "k.cu").write_text(KERNEL)
    (tmp / "sys").mkdir(exist_ok=True)
    (tmp / "sys" / "glibc_rsqrt.h").write_text(GLIBC_242_DECLS)
    return subprocess.run(
        [
            str(nvcc),
            "-c",
            "-arch=sm_75",
            "-isystem",
            str(tmp / "sys"),
            "--pre-include",
            "glibc_rsqrt.h",
            str(tmp / "k.cu"),
            "-o",
            str(tmp / "k.o"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp,
    )


def test_private_headers_fix_the_glibc_clash_and_leave_the_toolkit_alone(tmp_path: Path) -> None:
    top = nvcc_top()
    header = top / "targets" / "x86_64-linux" / "include" / "crt" / "math_functions.h"
    before = hashlib.sha256(header.read_bytes()).hexdigest()

    # The system toolkit fails the way seed 004 did.
    broken = compile_with(top / "bin" / "nvcc", tmp_path)
    assert broken.returncode != 0
    assert (
        'exception specification is incompatible with that of previous function "rsqrt' in broken.stdout + broken.stderr
    )

    function = render(Templates.build_cuda_private_headers)
    private = tmp_path / "cuda-private" / "nvcc-test"
    script = f'set -euo pipefail\n{function}\nllamafleet_private_cuda "{top}" "{private}" rsqrt rsqrtf\n'
    first = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert "noexcept (true) on rsqrt rsqrtf" in first.stdout
    again = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert "reusing" in again.stdout

    patched = (private / "include" / "crt" / "math_functions.h").read_text()
    assert "rsqrt(double x) noexcept (true);" in patched and "rsqrtf(float x) noexcept (true);" in patched
    assert (private / "bin" / "nvcc").is_symlink() and (private / "nvvm").is_symlink()
    assert not (private / "include" / "crt" / "math_functions.h").resolve().is_relative_to(top)

    fixed = compile_with(private / "bin" / "nvcc", tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    deps = subprocess.run(
        [str(private / "bin" / "nvcc"), "-M", "-arch=sm_75", str(tmp_path / "k.cu")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{private}/bin/../targets/x86_64-linux/include/crt/math_functions.h" in deps
    assert str(top) not in deps.replace(str(private), "")
    assert hashlib.sha256(header.read_bytes()).hexdigest() == before


def test_private_include_copy_fixes_a_split_toolkit_and_leaves_its_headers_alone(tmp_path: Path) -> None:
    """Debian's and Ubuntu's nvidia-cuda-toolkit keep the headers in /usr/include (dpkg -L nvidia-cuda-dev lists
    them): the copy of exactly those, patched and first on nvcc's -I path, fixes the clash. Stand-in here: this
    machine's toolkit headers as the "/usr/include" and a find(1) listing of them as dpkg's."""
    top = nvcc_top()
    real = top / "targets" / "x86_64-linux" / "include"
    header = real / "crt" / "math_functions.h"
    before = hashlib.sha256(header.read_bytes()).hexdigest()
    listing = tmp_path / "cuda-dev.list"
    files = sorted(str(p) for p in real.rglob("*") if p.is_file() and "cccl" not in p.parts)
    listing.write_text("\n".join(["/.", "/usr/share/doc/nvidia-cuda-dev/copyright", str(real), *files]) + "\n")
    private = tmp_path / "cuda-private" / "nvcc-split"
    function = render(Templates.build_cuda_private_include)
    script = (f'set -euo pipefail\n{function}\n'
              f'llamafleet_private_cuda_include "{real}" "{private}" "{listing}" rsqrt rsqrtf\n')
    first = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert f"private CUDA headers: {private}/include (noexcept (true) on rsqrt rsqrtf)" in first.stdout
    again = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert "reusing" in again.stdout
    patched = (private / "include" / "crt" / "math_functions.h").read_text()
    assert "rsqrt(double x) noexcept (true);" in patched and "rsqrtf(float x) noexcept (true);" in patched
    assert not (private / "include" / "crt" / "math_functions.h").is_symlink()

    (tmp_path / "k.cu").write_text(KERNEL)
    (tmp_path / "sys").mkdir()
    (tmp_path / "sys" / "glibc_rsqrt.h").write_text(GLIBC_242_DECLS)
    base = [str(top / "bin" / "nvcc"), "-c", "-arch=sm_75", "-isystem", str(tmp_path / "sys"),
            "--pre-include", "glibc_rsqrt.h", str(tmp_path / "k.cu"), "-o", str(tmp_path / "k.o")]
    broken = subprocess.run(base, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert broken.returncode != 0 and "exception specification is incompatible" in broken.stdout + broken.stderr
    flag = ["-I", f"{private}/include"]  # what -DCMAKE_CUDA_FLAGS="-I$cuda_private/include" gives nvcc
    fixed = subprocess.run(base[:1] + flag + base[1:], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    deps = subprocess.run([base[0], *flag, "-M", "-arch=sm_75", str(tmp_path / "k.cu")], capture_output=True,
                          text=True, check=True).stdout
    assert f"{private}/include/crt/math_functions.h" in deps and f"{real}/crt/math_functions.h" not in deps
    assert hashlib.sha256(header.read_bytes()).hexdigest() == before


def test_private_include_copy_fails_without_the_math_header(tmp_path: Path) -> None:
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "cuda.h").write_text("/* not the runtime */\n")
    (tmp_path / "list").write_text(f"{tmp_path / 'inc' / 'cuda.h'}\n")
    script = (f'set -euo pipefail\n{render(Templates.build_cuda_private_include)}\n'
              f'llamafleet_private_cuda_include "{tmp_path / "inc"}" "{tmp_path / "p"}" "{tmp_path / "list"}" sinpi\n')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "names no crt/math_functions.h under" in done.stderr
    assert not (tmp_path / "p").exists()
