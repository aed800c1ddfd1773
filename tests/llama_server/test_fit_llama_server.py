"""Truth, not belief: the plan against the buffer sizes the real llama-server logs (CPU backend).

Targets from issue 5: weights and KV cache within 2 %, compute buffer within 10 %. Needs LLAMAFLEET_LLAMA_SERVER
(fails without it). The wider sweep is bench/fit_sweep.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fit_harness import SHAPES, mib, server_buffers

from generators.plan.fit.gguf_facts import read_facts
from generators.plan.fit.planner import Config, Memory, compute_buffer, cpu_repack, kv_cache, recurrent_state, weights

CONFIGS = {
    "f16-fa-512": Config(ctx=4096, cache_type_k="f16", cache_type_v="f16", flash_attn=True, ubatch=512),
    "q8q4-np3-256": Config(ctx=6000, parallel=3, cache_type_k="q8_0", cache_type_v="q4_0", ubatch=256),
    "f16-nofa-128": Config(ctx=8192, cache_type_k="f16", cache_type_v="f16", flash_attn=False, ubatch=128),
    "bf16-iq4nl-unified": Config(ctx=5000, parallel=2, kv_unified=True, cache_type_k="bf16", cache_type_v="iq4_nl",
                                 ubatch=128),
    "q5-q41-batch64": Config(ctx=3000, cache_type_k="q5_1", cache_type_v="q4_1", batch=64, ubatch=64),
}


def _check(path: Path, cfg: Config) -> None:
    """With repacking off the CPU maps the file span: the weights; repacking is checked on its own below."""
    facts = read_facts(path)
    logged = server_buffers(path, [*cfg.flags(), "--no-repack"])
    planned_w = mib(sum(weights(facts, cfg)))
    planned_kv = mib(sum(kv_cache(facts, cfg)))
    planned_c = mib(compute_buffer(facts, cfg))
    assert logged.model > 0 and logged.kv > 0 and logged.compute > 0, logged.log[-2000:]
    assert planned_w == pytest.approx(logged.model, rel=0.02), "weights"
    assert planned_kv == pytest.approx(logged.kv, rel=0.02, abs=0.01), "kv cache"
    assert mib(sum(recurrent_state(facts, cfg))) == pytest.approx(logged.rs, abs=0.01), "recurrent state"
    assert planned_c == pytest.approx(logged.compute, rel=0.10), "compute buffer"


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("arch", list(SHAPES))
def test_plan_matches_llama_server(models: dict[str, Path], arch: str, name: str) -> None:
    _check(models[arch], CONFIGS[name])


def test_plan_matches_llama_server_on_a_real_model(smollm2_gguf: Path) -> None:
    """SmolLM2-135M (real text weights, Q4_1 with a Q8_0 embedding), as the demo host runs it."""
    _check(smollm2_gguf, Config(ctx=4096, ubatch=512))
    _check(smollm2_gguf, Config(ctx=16384, parallel=2, cache_type_k="q8_0", cache_type_v="q8_0", ubatch=256))


def test_cpu_repack_copy_is_planned(models: dict[str, Path]) -> None:
    """Q4_0 matrices on an AVX2 CPU get a repacked second copy (CPU_REPACK); the plan counts it."""
    path = models["qwen3"]  # Q4_0 weights
    facts = read_facts(path)
    cfg = Config(ctx=4096)
    logged = server_buffers(path, cfg.flags())
    assert logged.repack > 0, "this CPU does not repack Q4_0: the x86-64 AVX2 default does not describe it"
    assert mib(cpu_repack(facts, cfg, Memory(0, 0))) == pytest.approx(logged.repack, rel=0.02)
    assert mib(cpu_repack(facts, cfg, Memory(0, 0, cpu_repack=()))) == 0
