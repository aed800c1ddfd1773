"""The planner's rules, one by one, and the seeds' own measured numbers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from generators.plan.fit import catalog
from generators.plan.fit.gguf_facts import read_facts
from generators.plan.fit.planner import (
    CACHE_TYPES,
    MIB,
    Config,
    ConfigError,
    FitError,
    Memory,
    Request,
    components,
    fit,
    kv_cache,
    kv_cells,
    plan,
    recurrent_state,
    row_bytes,
    weights,
)


def test_row_bytes_come_from_gguf_block_sizes() -> None:
    for kind in CACHE_TYPES:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType[kind.upper()]]
        assert row_bytes(kind, 128) == 128 // block * size
    assert row_bytes("q8_0", 64) == 68 and row_bytes("q4_0", 64) == 36 and row_bytes("f16", 64) == 128
    with pytest.raises(ValueError, match="block size 32"):
        row_bytes("q4_0", 48)


def test_quantized_v_cache_needs_flash_attention(models: dict[str, Path]) -> None:
    facts = read_facts(models["llama"])
    with pytest.raises(ConfigError, match="flash attention"):
        plan(facts, Config(ctx=4096, cache_type_v="q8_0", flash_attn=False), Memory(0, 8192))
    plan(facts, Config(ctx=4096, cache_type_k="q8_0", flash_attn=False), Memory(0, 8192))  # quantized K alone is fine


def test_cells_are_padded_and_split_per_slot(models: dict[str, Path]) -> None:
    facts = read_facts(models["llama"])
    assert kv_cells(facts, Config(ctx=4000)) == (4096, 1, 4096)
    assert kv_cells(facts, Config(ctx=6000, parallel=3)) == (2048, 3, 2048)  # pad(6144 / 3, 256)
    assert kv_cells(facts, Config(ctx=6000, parallel=3, kv_unified=True)) == (6144, 1, 6144)


def test_sliding_window_layers_keep_a_small_cache(models: dict[str, Path]) -> None:
    facts = read_facts(models["gemma3"])  # window 512, five of six layers SWA
    cells, _, swa = kv_cells(facts, Config(ctx=32768, ubatch=512))
    assert (cells, swa) == (32768, 1024)
    full = sum(kv_cache(facts, Config(ctx=32768, swa_full=True)))
    assert sum(kv_cache(facts, Config(ctx=32768))) < full / 4


def test_partial_offload_places_layers_like_llama_cpp(models: dict[str, Path]) -> None:
    facts = read_facts(models["llama"])  # 4 blocks
    total = facts.weight_bytes
    assert weights(facts, Config(ctx=4096, gpu_layers=0)) == (0, total)
    gpu, host = weights(facts, Config(ctx=4096, gpu_layers=1))  # only the output head
    assert gpu == facts.output_bytes and host == total - facts.output_bytes
    gpu, host = weights(facts, Config(ctx=4096, gpu_layers=99))  # all but the token embeddings
    assert host == facts.token_embd_bytes and gpu == total - host
    gpu, _ = weights(facts, Config(ctx=4096, gpu_layers=3))  # blocks 2, 3 and the output
    assert gpu == facts.layer_bytes[2] + facts.layer_bytes[3] + facts.output_bytes
    kv_gpu, kv_host = kv_cache(facts, Config(ctx=4096, gpu_layers=3))
    assert kv_gpu == kv_host  # two of four layers' caches follow them to the GPU
    assert kv_cache(facts, Config(ctx=4096, gpu_layers=99, no_kv_offload=True))[0] == 0


def test_moe_experts_on_cpu(models: dict[str, Path]) -> None:
    facts = read_facts(models["qwen3moe"])
    all_gpu = weights(facts, Config(ctx=4096, gpu_layers=99))
    gpu, host = weights(facts, Config(ctx=4096, gpu_layers=99, n_cpu_moe=2))
    moved = facts.layer_expert_bytes[0] + facts.layer_expert_bytes[1]
    assert gpu == all_gpu[0] - moved and host == all_gpu[1] + moved


def test_fit_prefers_everything_on_the_gpu_and_honours_pins(models: dict[str, Path]) -> None:
    facts = read_facts(models["qwen3moe"])
    found = fit(facts, 1024, 16384, Request(ctx=8192), margin_mib=64, backend="vulkan")
    assert found.fits and found.config.gpu_layers == facts.n_layer + 1 and found.config.n_cpu_moe == 0
    assert (found.config.cache_type_k, found.config.ctx) == ("f16", 8192)
    pinned = fit(facts, 1024, 16384, Request(ctx=8192, cache_type_k="q8_0", cache_type_v="q8_0", ubatch=256),
                 margin_mib=64, backend="vulkan")
    assert (pinned.config.cache_type_k, pinned.config.cache_type_v, pinned.config.ubatch) == ("q8_0", "q8_0", 256)


def test_fit_offloads_experts_before_layers_when_the_gpu_is_small(models: dict[str, Path]) -> None:
    facts = read_facts(models["qwen3moe"])
    # the CUDA runtime reserve is in the plan: leave room for the dense part and some experts only
    dense = plan(facts, Config(ctx=4096, gpu_layers=99, n_cpu_moe=facts.n_layer), Memory(4096, 16384, "cuda"), 0)
    need = dense.used("gpu") // MIB + 2 * facts.layer_expert_bytes[0] // MIB + 1
    found = fit(facts, need, 16384, Request(ctx=4096, ubatch=512, cache_type_k="f16", cache_type_v="f16"),
                margin_mib=0, backend="cuda")
    assert found.config.gpu_layers == facts.n_layer + 1
    assert 0 < found.config.n_cpu_moe < facts.n_layer


def test_no_fit_raises_a_table_and_the_nearest_config(models: dict[str, Path]) -> None:
    facts = read_facts(models["llama"])
    with pytest.raises(FitError) as info:
        fit(facts, 0, 1300, Request(ctx=facts.n_ctx_train, cache_type_k="f16", cache_type_v="f16"), margin_mib=256)
    text = str(info.value)
    assert "no configuration fits" in text and "headroom" in text and "kv cache" in text
    assert info.value.closest.shortfall() > 0
    assert info.value.nearest is not None and info.value.nearest.fits
    assert info.value.nearest.config.ctx < facts.n_ctx_train


def test_unified_memory_counts_gtt_against_host_ram(models: dict[str, Path]) -> None:
    facts = read_facts(models["llama"])
    cfg = Config(ctx=4096, gpu_layers=99)
    apu = plan(facts, cfg, Memory(4096, 8192, "vulkan", unified=True))
    dgpu = plan(facts, cfg, Memory(4096, 8192, "vulkan", unified=False))
    assert apu.used("host") == dgpu.used("host") + apu.used("gpu")


def test_table_lists_components_and_headroom(models: dict[str, Path]) -> None:
    facts = read_facts(models["gemma3"])
    p = plan(facts, Config(ctx=4096, gpu_layers=99), Memory(2048, 8192, "cuda"), margin_mib=100)
    table = p.table()
    for word in ("weights", "kv cache", "compute buffer", "runtime reserve", "headroom", "gpu MiB", "host MiB"):
        assert word in table
    data = p.to_json()
    assert data["fits"] is True and "--n-gpu-layers" in data["flags"]
    assert {c.name for c in components(facts, p.config, p.memory)} >= {"weights", "kv cache", "compute buffer"}


# --- the seeds' measured numbers --------------------------------------------------------------------------------


def test_seed_000_qwen25_3b_q8_kv_at_32k() -> None:
    """Seed 000: 'at 32K context on Qwen 3B ... ~1.2 GB -> 612 MB' with q8_0 K and V."""
    facts = catalog.lookup("qwen2.5-3b-instruct-q4_k_m.gguf")
    assert facts is not None
    q8 = Config(ctx=32768, cache_type_k="q8_0", cache_type_v="q8_0", gpu_layers=99)
    assert sum(kv_cache(facts, q8)) / MIB == pytest.approx(612, abs=1)
    f16 = dataclasses.replace(q8, cache_type_k="f16", cache_type_v="f16")
    assert sum(kv_cache(facts, f16)) / MIB == pytest.approx(1152, abs=1)


def test_seed_004_qwen35_9b_kv_and_state_at_40k() -> None:
    """Seed 004: 'At 40K context ... the KV cache plus recurrent state took 1,457 MiB' (4 auto slots, unified)."""
    facts = catalog.lookup("Qwen3.5-9B-Q5_K_M.gguf")
    assert facts is not None
    cfg = Config(ctx=40000, parallel=4, kv_unified=True, gpu_layers=99)
    total = (sum(kv_cache(facts, cfg)) + sum(recurrent_state(facts, cfg))) / MIB
    assert total == pytest.approx(1457, rel=0.01)
