"""The guard against silent CPU fallback: parse `llama-server --list-devices` and require the expected device."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from generators.facts.devices import Device, check_device, parse_device_list
from generators.plan.backends import expected_device

LISTINGS = Path(__file__).parent / "listings"
ROOT = Path(__file__).resolve().parents[2]


def listing(name: str) -> str:
    return (LISTINGS / name).read_text()


def test_real_cpu_build_lists_no_device_and_fails_a_gpu_expectation(llama_server_bin: Path) -> None:
    out = subprocess.run([llama_server_bin, "--list-devices"], capture_output=True, text=True, check=True, timeout=60)
    text = out.stdout
    assert parse_device_list(text) == ()
    assert text == listing("cpu-b11434.stdout.txt")  # the captured file is what the binary prints
    result = check_device("ws1", text, "CUDA0")
    assert not result.ok
    assert result.message == (
        "host ws1: llama-server --list-devices does not list CUDA0 (listed: none): the build has no GPU backend "
        "compiled in, or its runtime/driver did not load; it would silently run on the CPU, so the previous build "
        "keeps serving"
    )
    assert check_device("ws1", text, expected_device("cpu")).ok


def test_cuda_listing_with_interleaved_logs() -> None:
    devices = parse_device_list(listing("cuda-rtx4090.composed.txt"))
    assert devices == (Device("CUDA0", "NVIDIA GeForce RTX 4090", 24080, 23563),)
    assert check_device("seed001", listing("cuda-rtx4090.composed.txt"), expected_device("cuda")).ok


def test_seed_000_vulkan1_is_the_t1200() -> None:
    text = listing("vulkan-t1200-igpu.composed.txt")
    result = check_device("seed000", text, expected_device("vulkan", 1))
    assert result.ok and "NVIDIA T1200 Laptop GPU (4096 MiB)" in result.message
    wrong = check_device("seed000", text, "Vulkan2")
    assert not wrong.ok and "the device index is wrong for this host" in wrong.message
    assert not check_device("seed000", text, "CUDA0").ok


def test_rocm_device_name_for_hip_builds() -> None:
    assert expected_device("hip") == "ROCm0"
    assert check_device("seed003", listing("rocm-gfx1151.composed.txt"), "ROCm0").ok


def test_docs_sample() -> None:
    text = textwrap.dedent(listing("sycl-docs.txt").split("\n", 1)[1])  # the docs indent it inside a list item
    assert [d.name for d in parse_device_list(text)] == ["SYCL0", "SYCL1"]


def test_not_a_listing() -> None:
    with pytest.raises(ValueError, match="no 'Available devices:' line"):
        parse_device_list("error: unknown argument: --list-devices\n")
    result = check_device("old", "error: unknown argument: --list-devices\n", "CUDA0")
    assert not result.ok and result.message.startswith("host old: llama-server --list-devices: not a device listing")


def test_cli_exit_codes() -> None:
    def run(expected: str, name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "generators",
                "check-devices",
                "--host",
                "h",
                "--expected",
                expected,
                str(LISTINGS / name),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )

    assert run("CUDA0", "cuda-rtx4090.composed.txt").returncode == 0
    bad = run("CUDA0", "cpu-b11434.stdout.txt")
    assert bad.returncode == 1 and "does not list CUDA0" in bad.stderr
    assert run("none", "cpu-b11434.stdout.txt").returncode == 0
