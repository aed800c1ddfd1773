"""Render uses the plan: a launch that cannot fit its host fails at render time, not with an out-of-memory at 3 a.m."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from hostsupport import run_cli

from generators.errors import SpecError
from generators.plan.fit import catalog
from generators.pipeline import plan_hostvars
from generators.plan.fit.check import check_host_fits, check_servers
from generators.plan.fit.requests import launch_request
from generators.plan.fit.gguf_facts import read_facts
from generators.plan.fit.planner import MIB, Config, weights
from generators.inventory import host_vars

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "inventories" / "example"
_GROUPS = yaml.safe_load((EXAMPLE / "hosts.yml").read_text())["all"]["children"]
EXAMPLE_HOSTS = [h for group in ("workstations", "ollama_workstations", "variant_workstations")
                 for h in sorted(_GROUPS[group]["hosts"])]
SEED_HOSTS = ("t1200-laptop", "rtx4090", "rtx3070", "strix-halo", "rtx4060-laptop")


def _render(inventory: Path, host: str, out: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("render", "--inventory", str(inventory), "--host", host, "--out", str(out))


def _copy_of(tmp_path: Path, host: str, change: dict[str, object]) -> Path:
    """An inventory holding one example host with its first server changed."""
    hvars = yaml.safe_load((EXAMPLE / "host_vars" / f"{host}.yml").read_text())
    spec = hvars["llamafleet"]
    spec["servers"] = [{**spec["servers"][0], **change}, *spec["servers"][1:]]
    (tmp_path / "host_vars").mkdir(parents=True)
    (tmp_path / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(hvars))
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {host: {}}}}))
    return tmp_path


def _plan(inventory: Path, host: str):  # type: ignore[no-untyped-def]
    return plan_hostvars(host, host_vars(str(inventory), host))


def test_all_eight_example_hosts_are_listed() -> None:
    assert len(EXAMPLE_HOSTS) == 8 and set(SEED_HOSTS) <= set(EXAMPLE_HOSTS)


@pytest.mark.parametrize("host", EXAMPLE_HOSTS)
def test_example_host_renders_through_the_check_without_warnings(host: str, tmp_path: Path) -> None:
    done = _render(EXAMPLE, host, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "every example host plans offline: nothing unchecked, nothing to warn about"
    assert (tmp_path / "out" / "manifest.json").is_file()


@pytest.mark.parametrize("host", SEED_HOSTS)
def test_each_seed_hosts_working_launch_fits(host: str) -> None:
    """The seeds' launches ran for real on these machines: the plan of each, as rendered, must fit."""
    outcomes = check_servers(_plan(EXAMPLE, host))
    assert outcomes and all(o.warning is None and o.error is None for o in outcomes), outcomes
    for o in outcomes:
        assert o.plan is not None and o.plan.fits and o.plan.memory.gpu_mib > 0


def test_t1200_plan_against_seed_000() -> None:
    """Seed 000: weights 1834 MB and KV 612 MB (q8_0, 32K) on the T1200's 4096 MB, ~200 MB for the Vulkan runtime.

    The compute buffer is smaller than the seed's 902 MB: b11434 reserves logits for one output per slot, where the
    seed's older build reserved them for the whole 1536-token ubatch (151936 x 1536 x 4 B = 890 MiB).
    """
    (outcome,) = check_servers(_plan(EXAMPLE, "t1200-laptop"))
    plan = outcome.plan
    assert plan is not None
    gpu = {c.name: c.mib for c in plan.components if c.where == "gpu"}
    assert gpu["weights"] == pytest.approx(1834, abs=1)  # the tied output head's copy included
    assert gpu["kv cache"] == pytest.approx(612, abs=1)
    assert gpu["runtime reserve"] == 200
    assert plan.config.ctx == 32768 and plan.config.ubatch == 1536 and plan.config.gpu_layers == 37
    with_seed_compute = plan.available("gpu") / MIB - (gpu["weights"] + gpu["kv cache"] + 902 + 200)
    assert with_seed_compute == pytest.approx(548, abs=1)


def test_launch_request_pins_what_render_writes() -> None:
    auto_complete, chat = _plan(EXAMPLE, "rtx3070").servers
    facts = catalog.lookup("qwen2.5-coder-7b-instruct-q4_k_m.gguf")
    assert facts is not None
    req = launch_request(auto_complete, facts)
    # rendered: --n-gpu-layers 99 --cache-type-k f16 --cache-type-v f16 --flash-attn on, llama.cpp's 2048/512
    assert (req.gpu_layers, req.cache_type_k, req.cache_type_v, req.flash_attn) == (facts.n_layer + 1, "f16", "f16",
                                                                                    True)
    assert (req.ctx, req.parallel, req.batch, req.ubatch, req.no_kv_offload) == (4096, 1, 2048, 512, False)
    assert launch_request(chat, facts).gpu_layers == chat.server.gpu_layers == 5  # seed 002: an explicit count
    laptop = _plan(EXAMPLE, "rtx4060-laptop").servers[0]
    assert launch_request(laptop, facts).gpu_layers is None  # gpu_layers: auto is llama.cpp's to fit
    shared = _plan(EXAMPLE, "rtx4090")
    req = launch_request(shared.servers[0], catalog.lookup("Qwen3.6-35B-A3B-UD-IQ4_XS.gguf"))  # type: ignore[arg-type]
    assert (req.parallel, req.kv_unified) == (4, True)  # no --parallel rendered: llama-server's 4 unified slots


def test_context_far_too_large_fails_render_with_exit_2(tmp_path: Path) -> None:
    inventory = _copy_of(tmp_path / "inv", "t1200-laptop", {"ctx": 524288})
    done = _render(inventory, "t1200-laptop", tmp_path / "out")
    assert done.returncode == 2
    assert "host t1200-laptop: llamafleet.servers[0].ctx: server main: 524288 tokens of context do not fit" in (
        done.stderr)
    assert "nearest configuration that fits: --ctx-size" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists(), "nothing is written when the check fails"


def test_second_server_is_planned_in_what_the_first_left(tmp_path: Path) -> None:
    """rtx3070: the autocomplete server takes its share of the 8 GB first; a chat server pinned to every layer of
    the 14B (~8.4 GiB) cannot fit in the rest."""
    hvars = yaml.safe_load((EXAMPLE / "host_vars" / "rtx3070.yml").read_text())
    hvars["llamafleet"]["servers"][1]["gpu_layers"] = "all"
    plan = plan_hostvars("rtx3070", hvars)
    with pytest.raises(SpecError) as caught:
        check_host_fits(plan)
    (problem,) = caught.value.problems
    assert problem.field == "llamafleet.servers[1].ctx" and "server chat" in problem.message


def test_unknown_model_warns_but_renders(tmp_path: Path) -> None:
    inventory = tmp_path / "inv"
    _copy_of(inventory, "t1200-laptop", {})
    path = inventory / "host_vars" / "t1200-laptop.yml"
    path.write_text(path.read_text().replace("qwen2.5-3b-q4_k_m.gguf", "mystery-3b-q4_k_m.gguf"))
    done = _render(inventory, "t1200-laptop", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert "host t1200-laptop" in lines[0] and "mystery-3b-q4_k_m.gguf" in lines[0]
    assert "python -m generators catalog add" in lines[0]
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_demo_host_is_not_checked_and_says_nothing(tmp_path: Path) -> None:
    """No GPU and no RAM in the description: nothing to check against, and no warning."""
    assert check_servers(_plan(ROOT / "inventories" / "demo", "demo")) == []
    done = _render(ROOT / "inventories" / "demo", "demo", tmp_path / "out")
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_tied_output_head_is_a_gpu_copy_of_the_token_embeddings(models: dict[str, Path]) -> None:
    """gemma3 has no output.weight: llama.cpp duplicates token_embd into the output layer's (GPU) buffer."""
    tied = read_facts(models["gemma3"])
    assert tied.ties_output and not read_facts(models["llama"]).ties_output
    gpu, host = weights(tied, Config(ctx=4096, gpu_layers=99))
    assert host == tied.token_embd_bytes and gpu == tied.weight_bytes  # the blocks, the norm and the copy
    assert weights(tied, Config(ctx=4096, gpu_layers=0)) == (0, tied.weight_bytes)  # on the CPU: the same pages


@pytest.mark.parametrize(("host", "presets"), [("strix-halo", ("coder", "2507", "gpt-oss", "next-80b")),
                                               ("rtx4060-laptop", ("text", "vision"))])
def test_every_seed_preset_fits(host: str, presets: tuple[str, ...]) -> None:
    """Switching a preset is an inventory change and a re-render: each of the seeds' presets must pass the check."""
    hvars = yaml.safe_load((EXAMPLE / "host_vars" / f"{host}.yml").read_text())
    for preset in presets:
        hvars["llamafleet"]["servers"][0]["preset"] = preset
        (outcome,) = check_servers(plan_hostvars(host, hvars))
        assert outcome.plan is not None and outcome.plan.fits, (preset, outcome)


def test_fit_launch_shows_the_table_render_refers_to(tmp_path: Path) -> None:
    inventory = _copy_of(tmp_path / "inv", "t1200-laptop", {"ctx": 524288})
    done = run_cli("fit", "--inventory", str(inventory), "--host", "t1200-laptop", "--launch")
    assert done.returncode == 3, done.stderr
    assert "--ctx-size 524288" in done.stdout and "--n-gpu-layers 37" in done.stdout and "headroom" in done.stdout
    assert "nearest configuration that fits" in done.stdout
