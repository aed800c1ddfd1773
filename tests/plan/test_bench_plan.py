"""The bench sweep (generators/plan/bench.py): bounded, planner-checked, never below q8_0 KV, trimmed to a budget."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest
from benchsupport import cpu_hostvars
from fit_harness import SHAPES, write_model
from hostsupport import raw_vars

from generators.pipeline import plan_hostvars
from generators.plan.bench import (KV_TYPES, UBATCHES, BenchConfig, _memory, check_config, host_sweep, run_estimate,
                                   trim, variants)
from generators.plan.fit.check import model_facts


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("bench") / "tiny-llama.gguf", SHAPES["llama"])


def cpu_plan(model: Path, **server: object):
    return plan_hostvars("cpubox", cpu_hostvars(str(model), **server))


def test_the_deployed_configuration_comes_first_and_is_the_rendered_one(tiny: Path) -> None:
    sweep = host_sweep(cpu_plan(tiny, ubatch=256, batch=1024, threads=3), cores=4).sweeps[0]
    assert sweep.configs[0] == BenchConfig(ubatch=256, batch=1024, flash_attn=True, cache_k="f16", cache_v="f16",
                                           gpu_layers=0, threads=3)
    assert sweep.deployed == sweep.configs[0]
    assert sweep.version == "b11434-cpu" and sweep.prefix.endswith("/b11434-cpu")


def test_the_sweep_is_one_factor_at_a_time_and_bounded(tiny: Path) -> None:
    sweep = host_sweep(cpu_plan(tiny), cores=4, budget_s=10**6).sweeps[0]
    deployed = sweep.configs[0]
    assert len(set(sweep.configs)) == len(sweep.configs)
    # at most: two KV types, fa off, every ubatch, two thread counts
    assert len(sweep.configs) <= 1 + len(KV_TYPES) + 1 + len(UBATCHES) + 2
    for c in sweep.configs[1:]:
        changed = {k for k, v in c.as_dict().items() if v != deployed.as_dict()[k]}
        assert changed <= {"cache_k", "cache_v", "flash_attn"} or changed <= {"ubatch", "batch"} or changed == {"threads"}
    assert {c.threads for c in sweep.configs} == {2, 4}  # half and all of the cores
    assert {c.ubatch for c in sweep.configs} == set(UBATCHES)


def test_depths_are_zero_and_half_a_slot_capped(tiny: Path) -> None:
    assert host_sweep(cpu_plan(tiny), cores=2).sweeps[0].depths == (0, 2048)  # ctx 4096, one slot
    assert host_sweep(cpu_plan(tiny, ctx=16384, parallel=2), cores=2, depth_cap=1000).sweeps[0].depths == (0, 1000)
    argv = host_sweep(cpu_plan(tiny), cores=2).sweeps[0]
    args = argv.argv(argv.configs[0])
    assert args[args.index("-d") + 1] == "0,2048" and "-o" in args and args[args.index("-o") + 1] == "json"


def test_the_kv_cache_never_goes_below_q8_0() -> None:
    deployed = BenchConfig(ubatch=512, batch=2048, flash_attn=True, cache_k="q4_0", cache_v="q4_0", gpu_layers=99)
    out = variants(deployed, "cuda", None)
    assert out and all(c.cache_k in ("f16", "q8_0") and c.cache_v in ("f16", "q8_0") for c in out)
    assert replace(deployed, cache_k="q8_0", cache_v="q8_0") in out  # the floor itself is measured


def test_a_quantized_v_cache_always_has_flash_attention(tiny: Path) -> None:
    for c in host_sweep(cpu_plan(tiny, flash_attn="off"), cores=2).sweeps[0].configs:
        assert c.flash_attn or c.cache_v == "f16"


def test_configurations_the_memory_planner_refuses_are_never_benched() -> None:
    data = copy.deepcopy(raw_vars("t1200-laptop"))
    data["llamafleet"]["servers"][0]["ctx"] = 49152  # q8_0 KV fits the 4 GB T1200 there, f16 does not
    plan = plan_hostvars("t1200-laptop", data)
    sweep = host_sweep(plan).sweeps[0]
    server = plan.servers[0]
    facts = model_facts(server.model)
    assert facts is not None
    memory, _ = _memory(plan, server, "vulkan")
    assert sweep.refused, "the f16 KV cache at 48K does not fit 4 GB"
    assert any(r.config.cache_k == "f16" for r in sweep.refused)
    for r in sweep.refused:
        assert r.config not in sweep.configs
        assert check_config(server, facts, r.config, memory) is not None
        assert "does not fit" in r.reason
    for c in sweep.configs[1:]:
        assert check_config(server, facts, c, memory) is None
    assert "refused  ub1536/b1536 fa kv f16/f16" in host_sweep(plan).table()


def test_without_model_facts_nothing_larger_than_deployed_is_tried() -> None:
    plan = plan_hostvars("cpubox", cpu_hostvars("/nowhere/unknown-model.gguf", ubatch=256, batch=512))
    sweep = host_sweep(plan, cores=2).sweeps[0]
    assert all(c.ubatch <= 256 and c.batch <= 512 for c in sweep.configs)
    assert any(r.config.ubatch > 256 for r in sweep.refused)
    assert not sweep.checked


def test_the_budget_trims_variants_first_and_keeps_the_deployed_one(tiny: Path) -> None:
    full = host_sweep(cpu_plan(tiny), cores=4, budget_s=10**6)
    assert not full.trimmed
    total = full.estimate_s
    half = host_sweep(cpu_plan(tiny), cores=4, budget_s=int(total / 2))
    assert half.estimate_s <= total / 2
    assert half.sweeps[0].configs[0] == full.sweeps[0].configs[0]
    assert len(half.sweeps[0].configs) < len(full.sweeps[0].configs)
    assert half.trimmed and half.sweeps[0].repetitions == full.sweeps[0].repetitions
    tiny_budget = host_sweep(cpu_plan(tiny), cores=4, budget_s=1)
    kept = tiny_budget.sweeps[0]
    assert kept.configs == (full.sweeps[0].configs[0],) and kept.repetitions == 1 and kept.depths == (0,)
    assert "budget 1 s" in tiny_budget.table()


def test_trim_is_round_robin_over_servers(tiny: Path) -> None:
    sweep = host_sweep(cpu_plan(tiny), cores=4, budget_s=10**6).sweeps[0]
    a, b = sweep, replace(sweep, server="other")
    kept, notes = trim([a, b], (a.estimate_s + b.estimate_s) * 0.6)
    assert abs(len(kept[0].configs) - len(kept[1].configs)) <= 1 and notes


def test_estimates_grow_with_depth_and_repetitions(tiny: Path) -> None:
    s = host_sweep(cpu_plan(tiny), cores=2).sweeps[0]
    c = s.configs[0]
    assert run_estimate(replace(s, depths=(0, 4096)), c) > run_estimate(s, c) > run_estimate(replace(s, depths=(0,)), c)
    assert run_estimate(replace(s, repetitions=5), c) > run_estimate(s, c)
    runs = host_sweep(cpu_plan(tiny), cores=2).runs()
    assert runs[0]["deployed"] and not any(r["deployed"] for r in runs[1:])
    assert runs[0]["binary"].endswith("/b11434-cpu/bin/llama-bench")


def test_every_build_of_the_host_is_benched_on_its_own_device() -> None:
    data = copy.deepcopy(raw_vars("strix-halo"))
    data["llamafleet"]["llamacpp"]["also_build"] = ["hip", "cpu"]  # seed 003: ROCm beside Vulkan
    sweeps = host_sweep(plan_hostvars("strix-halo", data), cores=16, budget_s=10**6).sweeps
    assert [(s.version, s.device) for s in sweeps] == [("b11434-vulkan", None), ("b11434-hip", "ROCm0"),
                                                      ("b11434-cpu", None)]
    hip, cpu = sweeps[1], sweeps[2]
    assert hip.argv(hip.configs[0])[-2:] == ["-dev", "ROCm0"]
    assert hip.deployed.gpu_layers > 0 and hip.deployed.threads is None
    assert cpu.deployed.gpu_layers == 0 and cpu.deployed.threads == 16
    assert all(s.prefix.endswith("/" + s.version) for s in sweeps)


def _with_batched(hostvars: dict) -> dict:
    hostvars["llamafleet"]["llamacpp"]["targets"] = ["llama-server", "llama-bench", "llama-batched-bench"]
    return hostvars


def test_a_server_with_slots_gets_one_batched_bench_run_of_its_deployed_flags(tiny: Path) -> None:
    plan = plan_hostvars("cpubox", _with_batched(cpu_hostvars(str(tiny), ctx=8192, parallel=4, ubatch=256)))
    sweep = host_sweep(plan, cores=2, budget_s=10**6)
    assert sweep.sweeps[0].slots == (1, 2, 4)
    slots = [r for r in sweep.runs() if r.get("tool") == "llama-batched-bench"]
    assert len(slots) == 1
    run = slots[0]
    args = run["args"]
    assert run["binary"].endswith("/b11434-cpu/bin/llama-batched-bench") and run["deployed"] is True
    assert args[args.index("-npl") + 1] == "1,2,4"
    assert int(args[args.index("-c") + 1]) >= 4 * (128 + 32)  # every sequence of the widest test fits
    assert args[args.index("-ub") + 1] == "256" and args[-2:] == ["--output-format", "jsonl"]
    assert args[args.index("-t") + 1] == "2"
    assert "llama-batched-bench -npl 1,2,4" in sweep.table()
    assert run["estimate_s"] > 0 and sweep.estimate_s >= sum(r["estimate_s"] for r in sweep.runs()) - 1


def test_slots_are_benched_only_with_the_target_and_more_than_one_slot(tiny: Path) -> None:
    without_target = host_sweep(plan_hostvars("cpubox", cpu_hostvars(str(tiny), parallel=4)), cores=2)
    one_slot = host_sweep(plan_hostvars("cpubox", _with_batched(cpu_hostvars(str(tiny)))), cores=2)
    three = host_sweep(plan_hostvars("cpubox", _with_batched(cpu_hostvars(str(tiny), ctx=8192, parallel=3))), cores=2)
    assert not [r for r in without_target.runs() if r.get("tool")]
    assert not [r for r in one_slot.runs() if r.get("tool")]
    assert three.sweeps[0].slots == (1, 2, 3)


def test_the_budget_drops_the_slots_run_only_after_every_variant(tiny: Path) -> None:
    plan = plan_hostvars("cpubox", _with_batched(cpu_hostvars(str(tiny), ctx=8192, parallel=4)))
    full = host_sweep(plan, cores=2, budget_s=10**6).sweeps[0]
    kept, notes = trim([full], run_estimate(full, full.configs[0]) + 0.5)
    assert kept[0].configs == (full.configs[0],) and kept[0].slots == ()
    assert notes[len(full.configs) - 1] == "b11434-cpu main: llama-batched-bench (slots)"


def test_the_runs_carry_the_servers_device_environment_but_not_its_llama_arg_settings(tiny: Path) -> None:
    env = {"GGML_VK_VISIBLE_DEVICES": "0", "LLAMA_ARG_DEVICE": "Vulkan0", "LLAMA_ARG_LOG_VERBOSITY": "4"}
    plan = plan_hostvars("cpubox", _with_batched(cpu_hostvars(str(tiny), ctx=8192, parallel=2, env=env)))
    runs = host_sweep(plan, cores=2).runs()
    assert runs and all(r["env"] == {"GGML_VK_VISIBLE_DEVICES": "0"} for r in runs)
