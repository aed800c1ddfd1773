"""The benchmark sweep of one host (``playbooks/bench.yml``): per build and server, the llama-bench runs worth making.

Pure: the host's plan in, a :class:`HostSweep` out (the host module ``roles/bench/library/llamafleet_bench.py`` runs
its argv lists, one llama-bench invocation per configuration). The sweep is *one factor at a time around the
deployed configuration*, so it stays small and every measurement is comparable to what the host runs now:

- ubatch (batch raised to it when it is larger) from :data:`UBATCHES`, flash attention off (only with an f16 V
  cache: llama.cpp refuses a quantized V cache without it), the KV cache at f16 and at q8_0 (never below q8_0: seed
  004's conclusion "KV >= q8_0"), threads on the CPU backend (half and all of the host's cores), ``-ncmoe`` for a
  MoE model whose full offload the memory planner refuses;
- every configuration is checked by the memory planner (``generators.plan.fit``) at the server's own context, in
  the memory the servers before it leave, exactly as render checks the launch: one it refuses is never benched
  (seed 000 saw ubatch 2048 run out of memory) and is listed with the reason; with no facts to check against
  (model unknown offline) nothing larger than the deployed ubatch is tried;
- prefill (``-p``) and generation (``-n``) at depth 0 and at a realistic fill (``-d``: half a slot's context, at
  most ``depth_cap`` tokens);
- slots: for a server with more than one slot, one ``llama-batched-bench`` run of the deployed flags with 1, 2, ...
  up to its slots parallel sequences (``-npl``), when the build has the target (``llamacpp.targets``), so the report
  shows what each added slot costs the others and what it adds in aggregate throughput;
- a time budget per host: each run is estimated from the model's size and the backend's bandwidth, the sweep is
  trimmed (variants dropped from the end of each server's list, round-robin, then repetitions) until it fits; the
  deployed configuration is always kept.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from generators.plan.fit.check import check_servers, model_facts
from generators.plan.fit.gguf_facts import ModelFacts
from generators.plan.fit.planner import MIB, ConfigError, FitError, Memory, fit
from generators.plan.fit.requests import _BACKENDS, DEFAULT_BATCH, DEFAULT_UBATCH, launch_request, memory_for
from generators.plan.host import HostPlan
from generators.plan.servers import ServerPlan

UBATCHES = (128, 256, 512, 1024, 2048)
KV_TYPES = ("f16", "q8_0")  # the floor: seed 004 found q4_0 KV costs too much quality
DEPTH_CAP = 4096
N_PROMPT = 512
N_GEN = 128
REPETITIONS = 3
#: llama-batched-bench: prompt and generated tokens per sequence (small: it measures how slots share the device)
BATCHED_PROMPT = 128
BATCHED_GEN = 32
DEFAULT_BUDGET_S = 900
#: assumed memory bandwidth (GB/s) where neither a measurement nor the GPU catalog gives one
CPU_BANDWIDTH_GBS = 20.0
#: generation reaches about this fraction of the bandwidth ceiling; prefill is this many times faster
TG_EFFICIENCY = 0.6
PP_SPEEDUP = {"cpu": 8.0, "cuda": 40.0, "vulkan": 30.0, "hip": 30.0}
LOAD_BPS = 1e9  # model load from page cache or disk, bytes/s


@dataclass(frozen=True)
class BenchConfig:
    """The flags one llama-bench run sets (each a single value)."""

    ubatch: int
    batch: int
    flash_attn: bool
    cache_k: str
    cache_v: str
    gpu_layers: int
    threads: int | None = None  # None: llama-bench's default (CPU backend only sets it)
    n_cpu_moe: int = 0

    def args(self) -> list[str]:
        out = ["-ub", str(self.ubatch), "-b", str(self.batch), "-fa", "on" if self.flash_attn else "off",
               "-ctk", self.cache_k, "-ctv", self.cache_v, "-ngl", str(self.gpu_layers)]
        if self.threads is not None:
            out += ["-t", str(self.threads)]
        if self.n_cpu_moe:
            out += ["-ncmoe", str(self.n_cpu_moe)]
        return out

    def label(self) -> str:
        parts = [f"ub{self.ubatch}/b{self.batch}", "fa" if self.flash_attn else "nofa", f"kv {self.cache_k}/{self.cache_v}"]
        if self.threads is not None:
            parts.append(f"t{self.threads}")
        if self.n_cpu_moe:
            parts.append(f"ncmoe{self.n_cpu_moe}")
        return " ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {"ubatch": self.ubatch, "batch": self.batch, "flash_attn": self.flash_attn, "cache_k": self.cache_k,
                "cache_v": self.cache_v, "gpu_layers": self.gpu_layers, "threads": self.threads,
                "n_cpu_moe": self.n_cpu_moe}


@dataclass(frozen=True)
class Refused:
    config: BenchConfig
    reason: str


@dataclass(frozen=True)
class ServerSweep:
    """What is benched for one server on one build."""

    server: str
    model: str  # the model's name in the inventory
    model_file: str  # its GGUF file name (the quantization is read from llama-bench's model_type)
    model_path: str  # on the host
    build: int
    backend: str
    version: str  # b<build>-<backend>
    prefix: str  # the build's prefix on the host (bin/llama-bench)
    device: str | None  # -dev: the server's --device on the serving build, another build's device 0 (CUDA0, ROCm0)
    deployed: BenchConfig
    configs: tuple[BenchConfig, ...]  # deployed first
    refused: tuple[Refused, ...]
    depths: tuple[int, ...]
    n_prompt: int
    n_gen: int
    repetitions: int
    estimate_s: float  # every config of this sweep
    checked: bool  # whether the memory planner could check the configurations
    unchecked: str  # why not, when it could not ("" when it could)
    model_bytes: int
    active_bytes: int  # weights read per generated token (routed experts: only the used ones)
    bw_gbs: float  # the bandwidth the estimate assumes (GPU catalog, the host's measurement, or CPU_BANDWIDTH_GBS)
    slots: tuple[int, ...] = ()  # llama-batched-bench's -npl (1 .. the server's slots); () when it is not run
    env: tuple[tuple[str, str], ...] = ()  # the server's environment the runs need (bench_env)

    def argv(self, config: BenchConfig) -> list[str]:
        """llama-bench's arguments for one configuration (the binary not included)."""
        out = ["-m", self.model_path, "-p", str(self.n_prompt), "-n", str(self.n_gen),
               "-d", ",".join(str(d) for d in self.depths), "-r", str(self.repetitions), *config.args(),
               "-o", "json", "--progress"]
        if self.device is not None:
            out += ["-dev", self.device]
        return out

    def batched_argv(self) -> list[str]:
        """llama-batched-bench's arguments: the deployed flags, 1 .. ``slots`` parallel sequences (JSON lines)."""
        c = self.deployed
        ctx = _pad(max(self.slots) * (BATCHED_PROMPT + BATCHED_GEN))
        out = ["-m", self.model_path, "-c", str(ctx), "-b", str(max(c.batch, BATCHED_PROMPT)), "-ub", str(c.ubatch),
               "-npp", str(BATCHED_PROMPT), "-ntg", str(BATCHED_GEN), "-npl", ",".join(map(str, self.slots)),
               "-fa", "on" if c.flash_attn else "off", "-ctk", c.cache_k, "-ctv", c.cache_v,
               "-ngl", str(c.gpu_layers)]
        if c.threads is not None:
            out += ["-t", str(c.threads)]
        if self.device is not None:
            out += ["-dev", self.device]
        return [*out, "--output-format", "jsonl"]


def _pad(n: int) -> int:
    return -(-n // 256) * 256


def slot_counts(slots: int) -> tuple[int, ...]:
    """-npl for a server with ``slots`` slots: 1, the powers of two below, and ``slots`` itself."""
    if slots <= 1:
        return ()
    out = [1]
    while out[-1] * 2 < slots:
        out.append(out[-1] * 2)
    return (*out, slots)


@dataclass(frozen=True)
class HostSweep:
    host: str
    budget_s: int
    sweeps: tuple[ServerSweep, ...]
    trimmed: tuple[str, ...]  # what was dropped to fit the budget, one line each

    @property
    def estimate_s(self) -> float:
        return sum(s.estimate_s for s in self.sweeps)

    def runs(self, bench_bin: str = "bin/llama-bench") -> list[dict[str, object]]:
        """One entry per llama-bench invocation, as the host module takes them."""
        out: list[dict[str, object]] = []
        for s in self.sweeps:
            for i, c in enumerate(s.configs):
                out.append({
                    "id": f"{s.version}/{s.server}/{i}", "server": s.server, "model": s.model, "version": s.version,
                    "backend": s.backend, "build": s.build, "deployed": i == 0, "config": c.as_dict(),
                    "label": c.label(), "binary": f"{s.prefix}/{bench_bin}", "args": s.argv(c),
                    "env": dict(s.env), "estimate_s": round(run_estimate(s, c), 1),
                })
            if s.slots:
                out.append({
                    "id": f"{s.version}/{s.server}/slots", "tool": "llama-batched-bench", "server": s.server,
                    "model": s.model, "version": s.version, "backend": s.backend, "build": s.build, "deployed": True,
                    "config": s.deployed.as_dict(), "label": f"{s.deployed.label()} slots {','.join(map(str, s.slots))}",
                    "binary": f"{s.prefix}/bin/llama-batched-bench", "args": s.batched_argv(), "env": dict(s.env),
                    "estimate_s": round(batched_estimate(s), 1),
                })
        return out

    def table(self) -> str:
        lines = [f"bench plan for {self.host}: budget {self.budget_s} s, estimate {self.estimate_s:.0f} s"]
        for s in self.sweeps:
            lines.append(f"{s.version} {s.server} ({s.model_file}): depths {','.join(map(str, s.depths))}, "
                         f"-p {s.n_prompt} -n {s.n_gen} -r {s.repetitions}, ~{s.estimate_s:.0f} s"
                         + ("" if s.checked else f" (memory not checked: {s.unchecked})"))
            for i, c in enumerate(s.configs):
                lines.append(f"  {'deployed' if i == 0 else 'variant '} {c.label()}")
            if s.slots:
                lines.append(f"  slots    {s.deployed.label()}: llama-batched-bench -npl {','.join(map(str, s.slots))}")
            for r in s.refused:
                lines.append(f"  refused  {r.config.label()}: {r.reason}")
        lines += [f"trimmed: {t}" for t in self.trimmed]
        return "\n".join(lines)


def bench_env(server: ServerPlan) -> dict[str, str]:
    """The server's environment that the benchmarks run with too: what selects and drives the device
    (GGML_VK_VISIBLE_DEVICES for lavapipe, HSA_OVERRIDE_GFX_VERSION, ...). llama-server's own ``LLAMA_ARG_*``
    settings are left out: llama-batched-bench would read them over the sweep's flags."""
    return {k: v for k, v in sorted(server.environment.items()) if not k.startswith("LLAMA_ARG_")}


def active_bytes(facts: ModelFacts) -> int:
    """Weight bytes read per generated token: everything but the routed experts not used, and the token
    embeddings (looked up, one row a token)."""
    experts = sum(facts.layer_expert_bytes)
    used = experts * facts.n_expert_used // facts.n_expert if facts.n_expert else experts
    return sum(facts.layer_bytes) + used + facts.output_bytes + facts.other_bytes


def bandwidth_gbs(plan: HostPlan, server: ServerPlan, backend: str, measured_gbs: float | None) -> float:
    """The bandwidth a run is estimated with: the GPU catalog's for a GPU backend, else the host's measurement."""
    if backend != "cpu" and server.gpu is not None and server.gpu.bandwidth_gbs:
        return float(server.gpu.bandwidth_gbs)
    return measured_gbs or CPU_BANDWIDTH_GBS


def run_estimate(sweep: ServerSweep, config: BenchConfig) -> float:
    """Seconds one llama-bench run of ``config`` takes, roughly: load, then per depth a prefill and a generation
    test, each a warm-up and ``repetitions`` runs that first fill the depth."""
    bw = sweep.bw_gbs * 1e9
    tg = max(1e-3, bw * TG_EFFICIENCY / max(1, sweep.active_bytes))
    pp = tg * PP_SPEEDUP.get(sweep.backend, 8.0)
    if config.threads is not None and config.threads <= 1:
        pp, tg = pp / 2, tg / 1.5
    per = 0.0
    for depth in sweep.depths:
        fill = depth / pp
        per += (sweep.repetitions + 1) * (fill + sweep.n_prompt / pp)
        per += (sweep.repetitions + 1) * (fill + sweep.n_gen / tg)
    return 1.0 + sweep.model_bytes / LOAD_BPS + per


def batched_estimate(sweep: ServerSweep) -> float:
    """Seconds the llama-batched-bench run takes, roughly: each -npl value prefills and generates its sequences
    as if the slots did not share the work (an upper bound: batching only makes it faster)."""
    if not sweep.slots:
        return 0.0
    bw = sweep.bw_gbs * 1e9
    tg = max(1e-3, bw * TG_EFFICIENCY / max(1, sweep.active_bytes))
    pp = tg * PP_SPEEDUP.get(sweep.backend, 8.0)
    return 1.0 + sweep.model_bytes / LOAD_BPS + sum(n * (BATCHED_PROMPT / pp + BATCHED_GEN / tg) for n in sweep.slots)


def deployed_config(server: ServerPlan, facts: ModelFacts | None, backend: str, cores: int | None) -> BenchConfig:
    """The configuration the server's unit runs, as llama-bench flags."""
    spec = server.server
    batch = spec.batch or DEFAULT_BATCH
    ubatch = min(spec.ubatch or DEFAULT_UBATCH, batch)
    n_layers = (facts.n_layer + 1) if facts is not None else 99
    if backend == "cpu":
        layers = 0
    elif server.gpu_layers in ("auto", "all"):
        layers = 99 if server.gpu_layers == "all" or facts is None else n_layers
    else:
        layers = int(server.gpu_layers)
    fa = server.flash_attn != "off"
    threads = spec.threads if spec.threads is not None else (cores if backend == "cpu" and cores else None)
    return BenchConfig(ubatch=ubatch, batch=batch, flash_attn=fa, cache_k=spec.cache_k, cache_v=spec.cache_v,
                       gpu_layers=layers, threads=threads if backend == "cpu" else spec.threads)


def variants(deployed: BenchConfig, backend: str, cores: int | None, moe_offload: tuple[int, ...] = ()) -> list[BenchConfig]:
    """One factor at a time around ``deployed``, most promising first (the budget trims from the end): KV, flash
    attention, threads (CPU), ubatch nearest first, ``-ncmoe``. The KV cache never goes below q8_0: a deployed
    cache below it is benched as it is, and every variant starts from q8_0."""
    out: list[BenchConfig] = []
    base = deployed
    if not (deployed.cache_k in KV_TYPES and deployed.cache_v in KV_TYPES):  # below the floor: vary from q8_0
        base = replace(deployed, cache_k=_floor(deployed.cache_k), cache_v=_floor(deployed.cache_v),
                       flash_attn=True)

    def add(c: BenchConfig) -> None:
        if c != deployed and c not in out:
            out.append(c)

    add(base)
    for kv in KV_TYPES:
        if (kv, kv) != (base.cache_k, base.cache_v):
            add(replace(base, cache_k=kv, cache_v=kv, flash_attn=base.flash_attn or kv != "f16"))
    if base.cache_v == "f16":
        add(replace(base, flash_attn=not base.flash_attn))
    if backend == "cpu" and cores:
        for t in sorted({max(1, cores // 2), cores}):
            add(replace(base, threads=t))
    for ub in sorted(UBATCHES, key=lambda u: abs(u.bit_length() - base.ubatch.bit_length())):
        add(replace(base, ubatch=ub, batch=max(base.batch, ub)))
    for m in moe_offload:
        add(replace(base, n_cpu_moe=m))
    return out


def _floor(cache_type: str) -> str:
    """A KV type at or above the floor: f16 and q8_0 stay, anything else becomes q8_0."""
    return cache_type if cache_type in KV_TYPES else "q8_0"


def _memory(plan: HostPlan, server: ServerPlan, backend: str) -> tuple[Memory, bool]:
    memory, ram_known = memory_for(plan, server, None, None)
    mapped = _BACKENDS.get(backend, "cpu")
    if mapped == "cpu":
        return replace(memory, gpu_mib=0, backend="cpu", unified=False), ram_known
    return replace(memory, backend=mapped), ram_known


def check_config(server: ServerPlan, facts: ModelFacts, config: BenchConfig, memory: Memory) -> str | None:
    """None when the memory planner accepts ``config`` at the server's own context, else why not (one line)."""
    base = launch_request(server, facts)
    gpu = memory.gpu_mib > 0
    want = replace(base, cache_type_k=config.cache_k, cache_type_v=config.cache_v, flash_attn=config.flash_attn,
                   batch=config.batch, ubatch=config.ubatch,
                   gpu_layers=min(config.gpu_layers, facts.n_layer + 1) if gpu else None,
                   n_cpu_moe=config.n_cpu_moe if gpu else None, no_kv_offload=base.no_kv_offload if gpu else None)
    try:
        fit(facts, memory.gpu_mib, memory.host_mib, want, 256, memory.backend, memory.unified)
    except FitError as exc:
        return f"does not fit ({exc.closest.shortfall() / MIB:.0f} MiB short at ctx {exc.closest.config.ctx})"
    except ConfigError as exc:
        return " ".join(str(exc).split())
    return None


def moe_offloads(server: ServerPlan, facts: ModelFacts, deployed: BenchConfig, memory: Memory) -> tuple[int, ...]:
    """``-ncmoe`` values to try for a MoE model whose full offload the planner refuses: the smallest that fits and
    one more block (more experts on the CPU, more room for the rest)."""
    if not facts.is_moe or memory.gpu_mib <= 0 or check_config(server, facts, deployed, memory) is None:
        return ()
    for m in range(1, facts.n_layer + 1):
        if check_config(server, facts, replace(deployed, n_cpu_moe=m), memory) is None:
            return tuple(x for x in (m, m + 1) if x <= facts.n_layer)
    return ()


def _used_before(plan: HostPlan) -> dict[str, Memory]:
    """The memory each server may use, net of the deployed servers before it (as render checks them)."""
    out: dict[str, Memory] = {}
    used = {"gpu": 0, "host": 0}
    outcomes = {o.server: o for o in check_servers(plan)}
    for server in plan.servers:
        memory, ram_known = memory_for(plan, server, None, None)
        out[server.name] = replace(memory, gpu_mib=max(0, memory.gpu_mib - used["gpu"] // MIB),
                                   host_mib=max(0, memory.host_mib - used["host"] // MIB) if ram_known
                                   else memory.host_mib)
        outcome = outcomes.get(server.name)
        if outcome is not None and outcome.plan is not None:
            for where in ("gpu", "host"):
                used[where] += sum(c.bytes for c in outcome.plan.components if c.where == where)
    return out


def server_sweep(plan: HostPlan, server: ServerPlan, build_index: int, cores: int | None, left: Memory | None,
                 depth_cap: int = DEPTH_CAP, measured_gbs: float | None = None) -> ServerSweep:
    assert plan.llamacpp is not None
    build = plan.llamacpp.builds[build_index]
    backend = build.backend
    facts = model_facts(server.model)
    deployed = deployed_config(server, facts, backend, cores)
    memory, _ = _memory(plan, server, backend)
    if left is not None:
        memory = replace(memory, host_mib=left.host_mib,
                         gpu_mib=0 if memory.backend == "cpu" else left.gpu_mib)
    refused: list[Refused] = []
    configs = [deployed]
    checkable = facts is not None and (memory.gpu_mib > 0 or memory.host_mib < (1 << 30))
    moe = moe_offloads(server, facts, deployed, memory) if facts is not None else ()
    for c in variants(deployed, backend, cores, moe):
        if facts is None:
            if c.ubatch > deployed.ubatch or c.batch > deployed.batch:
                refused.append(Refused(c, "larger buffers than deployed and no model facts to check them"))
                continue
        else:
            why = check_config(server, facts, c, memory)
            if why is not None:
                refused.append(Refused(c, why))
                continue
        configs.append(c)
    ctx = server.server.ctx if isinstance(server.server.ctx, int) else (facts.n_ctx_train if facts else 4096)
    slots = 1 if server.server.parallel == "auto" or server.server.sessions == "shared" else int(server.server.parallel)
    batched = "llama-batched-bench" in plan.llamacpp.spec.targets
    depth = min(ctx // max(1, slots) // 2, depth_cap)
    depths = (0, depth) if depth > 0 else (0,)
    size = facts.data_span_bytes if facts is not None else 0
    sweep = ServerSweep(
        server=server.name, model=server.model.name, model_file=server.model.filename, model_path=server.model_path,
        build=plan.llamacpp.spec.build, backend=backend, version=build.version, prefix=build.paths.prefix,
        device=server.device if build.serves else build.expected_device, deployed=deployed, configs=tuple(configs),
        refused=tuple(refused), depths=depths, n_prompt=N_PROMPT, n_gen=N_GEN, repetitions=REPETITIONS,
        estimate_s=0.0, checked=checkable, model_bytes=size,
        unchecked="" if checkable else ("no model facts offline" if facts is None else "host RAM not known"),
        active_bytes=active_bytes(facts) if facts is not None else max(size, 1),
        bw_gbs=bandwidth_gbs(plan, server, backend, measured_gbs),
        slots=slot_counts(slots) if batched else (), env=tuple(bench_env(server).items()),
    )
    return _estimated(sweep)


def _estimated(sweep: ServerSweep) -> ServerSweep:
    return replace(sweep, estimate_s=sum(run_estimate(sweep, c) for c in sweep.configs) + batched_estimate(sweep))


def trim(sweeps: list[ServerSweep], budget_s: float) -> tuple[list[ServerSweep], list[str]]:
    """Drop variants (the last of the longest sweep first) until the estimate fits ``budget_s``; then lower the
    repetitions, then drop the depth fill. The deployed configuration of every sweep is always kept."""
    notes: list[str] = []
    sweeps = list(sweeps)
    while sum(s.estimate_s for s in sweeps) > budget_s:
        longest = max(range(len(sweeps)), key=lambda i: (len(sweeps[i].configs), sweeps[i].estimate_s))
        s = sweeps[longest]
        if len(s.configs) > 1:
            notes.append(f"{s.version} {s.server}: {s.configs[-1].label()}")
            sweeps[longest] = _estimated(replace(s, configs=s.configs[:-1]))
            continue
        slotted = [i for i, x in enumerate(sweeps) if x.slots]
        if slotted:
            i = max(slotted, key=lambda j: batched_estimate(sweeps[j]))
            notes.append(f"{sweeps[i].version} {sweeps[i].server}: llama-batched-bench (slots)")
            sweeps[i] = _estimated(replace(sweeps[i], slots=()))
            continue
        reducible = [i for i, x in enumerate(sweeps) if x.repetitions > 1 or len(x.depths) > 1]
        if not reducible:
            break
        i = max(reducible, key=lambda j: sweeps[j].estimate_s)
        x = sweeps[i]
        if x.repetitions > 1:
            notes.append(f"{x.version} {x.server}: repetitions {x.repetitions} -> {x.repetitions - 1}")
            sweeps[i] = _estimated(replace(x, repetitions=x.repetitions - 1))
        else:
            notes.append(f"{x.version} {x.server}: depth {x.depths[-1]} (only depth 0 left)")
            sweeps[i] = _estimated(replace(x, depths=(0,)))
    return sweeps, notes


def host_sweep(plan: HostPlan, cores: int | None = None, budget_s: int = DEFAULT_BUDGET_S,
               depth_cap: int = DEPTH_CAP, measured_gbs: float | None = None) -> HostSweep:
    """Every build of the host (the serving one first) × every server, trimmed to ``budget_s``."""
    if plan.llamacpp is None or not plan.servers:
        return HostSweep(plan.name, budget_s, (), ())
    left = _used_before(plan)
    sweeps = [server_sweep(plan, server, i, cores, left.get(server.name), depth_cap, measured_gbs)
              for i in range(len(plan.llamacpp.builds)) for server in plan.servers]
    kept, notes = trim(sweeps, budget_s)
    return HostSweep(plan.name, budget_s, tuple(kept), tuple(notes))


__all__ = ["BenchConfig", "bench_env", "HostSweep", "Refused", "ServerSweep", "active_bytes", "check_config", "deployed_config",
           "batched_estimate", "host_sweep", "run_estimate", "slot_counts", "trim", "variants"]
