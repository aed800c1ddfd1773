"""The planner against every case the seeds measured (seed_cases.yaml): it refuses what a seed saw fail, accepts what
it ran, and plans the compute buffers the seeds logged. bench/planner_vs_seeds.py prints the whole table."""

from __future__ import annotations

import pytest
from hostsupport import parse_tweaked, plan_of
from seed_table import COMPUTE_MARGIN, Case, describe, load, run

from generators.plan.fit import catalog
from generators.plan.fit.servers import plan_servers
from generators.plan.fit.planner import (
    MIB,
    OUTPUTS_PER_SLOT_SINCE,
    PROCESS_RESERVE_MIB,
    RUNTIME_RESERVE_MIB,
    Config,
    FitError,
    Memory,
    Request,
    compute_buffer,
    fit,
    gpu_scratch,
    reserved_outputs,
)

BUILD, CASES = load()
PLANNED = [c for c in CASES if c.planned]


def test_the_table_covers_every_seed_and_both_outcomes() -> None:
    assert {c.seed[:3] for c in CASES} == {"000", "001", "002", "003", "004"}
    assert {c.outcome for c in PLANNED} == {"runs", "oom"}
    assert len({c.id for c in CASES}) == len(CASES)
    for c in CASES:
        assert c.quote and c.outcome in ("runs", "oom"), c.id
        assert c.planned or c.raw.get("why"), f"{c.id}: a case left unplanned says why"
        if c.planned:
            assert catalog.lookup(c.model) is not None, f"{c.id}: {c.model} not in the catalog"
    assert BUILD < OUTPUTS_PER_SLOT_SINCE, "the seeds' logged buffers are the pre-9464 reservation"


@pytest.mark.parametrize("case", [c for c in PLANNED if c.outcome == "oom"], ids=lambda c: c.id)
def test_every_case_a_seed_saw_fail_is_refused(case: Case) -> None:
    result = run(case, BUILD)
    assert not result.fits, describe(result)


@pytest.mark.parametrize("case", [c for c in PLANNED if c.outcome == "runs"], ids=lambda c: c.id)
def test_every_case_a_seed_ran_is_accepted(case: Case) -> None:
    result = run(case, BUILD)
    assert result.fits, describe(result)


LOGGED = [c for c in PLANNED if "compute" in c.measured and not c.approx]


def test_seeds_logged_compute_buffers_exist() -> None:
    assert {c.seed[:3] for c in LOGGED} == {"000", "004"}


@pytest.mark.parametrize("case", LOGGED, ids=lambda c: c.id)
def test_planned_buffers_are_close_to_what_the_seed_logged(case: Case) -> None:
    result = run(case, BUILD)
    m = case.measured
    compute = result.mib("compute buffer")
    assert compute == pytest.approx(m["compute"], rel=COMPUTE_MARGIN), (
        f"compute planned {compute:.0f} vs seed {m['compute']:.0f} MiB (margin {COMPUTE_MARGIN:.0%}): {describe(result)}")
    kv = result.mib("kv cache") + result.mib("recurrent state")
    assert kv == pytest.approx(m["kv"], rel=0.02), f"kv planned {kv:.0f} vs seed {m['kv']:.0f}: {describe(result)}"
    if result.fits:  # a refused plan's closest attempt may have moved layers; the weights compare at full offload
        assert result.mib("weights") == pytest.approx(m["model"], rel=0.02), describe(result)


def test_the_reservation_rule_follows_the_build() -> None:
    """One logits row per slot from build 9464 (what the CPU calibration against b11434 measures), one per ubatch
    token before it (what seeds 000 and 004 logged on their GPUs)."""
    facts = catalog.lookup("qwen2.5-3b-q4_k_m.gguf")
    assert facts is not None
    cfg = Config(ctx=32768, cache_type_k="q8_0", cache_type_v="q8_0", batch=1536, ubatch=1536, gpu_layers=37)
    assert reserved_outputs(cfg, OUTPUTS_PER_SLOT_SINCE - 1) == 1536
    assert reserved_outputs(cfg, OUTPUTS_PER_SLOT_SINCE) == 1 == reserved_outputs(cfg, None)
    old, new = compute_buffer(facts, cfg, OUTPUTS_PER_SLOT_SINCE - 1), compute_buffer(facts, cfg, 11434)
    assert old - new > facts.n_vocab * 1500 * 4 * 0.6  # most of the 890 MiB of logits


def test_gpu_scratch_counts_cuda_flash_attention_f16_copies_only_where_they_happen() -> None:
    """ggml-cuda converts a non-f16 K/V cache to f16 for its prompt kernels; Vulkan reads it in the shader; with
    --no-kv-offload attention runs on the CPU."""
    facts = catalog.lookup("Qwen3.5-9B-Q5_K_M.gguf")
    assert facts is not None
    q8 = Config(ctx=131072, cache_type_k="q8_0", cache_type_v="q8_0", batch=512, ubatch=128, gpu_layers=33)
    staging = 128 * facts.n_ff * 2
    one_layer_f16 = 131072 * max(facts.n_head_kv) * (facts.head_k + facts.head_v) * 2  # 512 MiB
    assert gpu_scratch(facts, q8, Memory(8192, 0, "cuda")) == staging + one_layer_f16
    assert gpu_scratch(facts, q8, Memory(8192, 0, "rocm")) == staging + one_layer_f16
    assert gpu_scratch(facts, q8, Memory(8192, 0, "vulkan")) == staging
    f16 = Config(ctx=131072, batch=512, ubatch=128, gpu_layers=33)
    assert gpu_scratch(facts, f16, Memory(8192, 0, "cuda")) == staging
    nkvo = Config(ctx=131072, cache_type_k="q8_0", cache_type_v="q8_0", batch=512, ubatch=128, gpu_layers=33,
                  no_kv_offload=True)
    assert gpu_scratch(facts, nkvo, Memory(8192, 0, "cuda")) == staging
    assert gpu_scratch(facts, q8, Memory(0, 8192, "cpu")) == 0


def test_nearest_fit_keeps_the_context_and_the_kv_floor_before_relaxing_them() -> None:
    """rtx4060-laptop at 131K with q8_0 KV on the GPU and every layer pinned does not fit (the CUDA flash-attention
    f16 copy of a 131K layer is 512 MiB); the nearest fit moves layers, it neither drops the context nor offers
    q4_0 KV, which seed 004 found a quality floor."""
    facts = catalog.lookup("Qwen3.5-9B-Q5_K_M.gguf")
    assert facts is not None
    req = Request(ctx=131072, cache_type_k="q8_0", cache_type_v="q8_0", batch=512, ubatch=128,
                  gpu_layers=facts.n_layer + 1, n_cpu_moe=0, no_kv_offload=False)
    with pytest.raises(FitError) as info:
        fit(facts, 8192, 32768, req, 256, "cuda", build=11434)
    nearest = info.value.nearest
    assert nearest is not None and nearest.fits
    assert nearest.config.ctx == 131072
    assert {nearest.config.cache_type_k, nearest.config.cache_type_v} <= {"f16", "q8_0"}
    with_nkvo = fit(facts, 8192, 32768, Request(**{**req.__dict__, "no_kv_offload": True}), 256, "cuda", build=11434)
    assert with_nkvo.fits and with_nkvo.config.gpu_layers == facts.n_layer + 1


def test_cpu_resident_weights_are_copied_to_the_gpu_for_batches_of_32_and_more() -> None:
    """ggml's scheduler offloads matrix products on CPU weights to the GPU from 32 tokens on and copies each weight
    into the compute buffer, one at a time (a new split per offloaded weight): the largest CPU-resident one counts."""
    dense = catalog.lookup("qwen2.5-coder-14b-instruct-q4_k_m.gguf")
    moe = catalog.lookup("Qwen3.6-35B-A3B-UD-IQ4_XS.gguf")
    assert dense is not None and moe is not None
    gpu = Memory(8192, 32768, "cuda")
    partial = Config(ctx=8192, gpu_layers=12)
    staging = 512 * dense.n_ff * 2
    copied = gpu_scratch(dense, partial, gpu) - staging
    ffn_share = 3 * dense.n_ff * dense.n_embd / (3 * dense.n_ff * dense.n_embd + 2 * dense.n_embd * 5120
                                                  + 2 * dense.n_embd * 1024)
    assert copied == pytest.approx(max(dense.layer_bytes) * ffn_share / 3, rel=0.01)  # one FFN matrix of a layer
    small = Config(ctx=8192, gpu_layers=12, batch=16, ubatch=16)
    assert gpu_scratch(dense, small, gpu) == 16 * dense.n_ff * 2
    assert gpu_scratch(dense, Config(ctx=8192, gpu_layers=dense.n_layer + 1), gpu) == staging
    cmoe = Config(ctx=8192, gpu_layers=moe.n_layer + 1, n_cpu_moe=moe.n_layer)
    widest = moe.n_ff_exp * moe.n_expert_used
    assert gpu_scratch(moe, cmoe, Memory(24564, 65536, "cuda")) == 512 * widest * 2 + moe.layer_expert_bytes[0] // 3


def test_a_second_server_on_the_card_adds_its_own_context_not_the_first_ones_reserve_again() -> None:
    """rtx3070 (seed 002): the FIM server takes the card's reserve (driver context and the card's other users), the
    chat server after it only its own process's context."""
    plan = plan_of(parse_tweaked("rtx3070", {}), "rtx3070")
    fim, chat = plan_servers(plan, None, None, 256, {}, launch=True)

    def reserve(entry: dict) -> float:
        return sum(c.bytes for c in entry["plan"].components if c.name == "runtime reserve") / MIB

    assert fim["fits"] and chat["fits"]
    assert reserve(fim) == RUNTIME_RESERVE_MIB["cuda"] and reserve(chat) == PROCESS_RESERVE_MIB["cuda"]
    assert chat["plan"].config.gpu_layers < 49  # the 14B chat model shares the 8 GB with the FIM model
