"""Test support for the fit planner: GGUF files with the tensor shapes of real architectures, and a real llama-server.

:func:`write_model` writes a small GGUF (zero weights, ASCII byte-level vocab) with exactly the tensors llama.cpp
expects for llama, qwen2, qwen3, qwen3moe and gemma3. :func:`server_buffers` starts the built llama-server on the CPU
with given flags, waits until /health answers 200, stops it, and returns the buffer sizes it logged. Used by
tests/plan/fit/, tests/llama_server/ and by bench/fit_sweep.py (``SHAPES``: the CI test shapes).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter

ARCHS = ("llama", "qwen2", "qwen3", "qwen3moe", "gemma3", "qwen35")


@dataclass(frozen=True)
class Shape:
    """Dimensions of a synthetic model (small, but the tensor layout of the real architecture)."""

    arch: str
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 8
    n_head_kv: int = 2
    head_dim: int = 64
    n_ff: int = 768
    n_vocab: int = 2048
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0
    n_swa: int = 0
    weight_type: str = "F16"
    n_ctx_train: int = 32768
    # qwen35 (gated delta net): every full_attention_interval-th layer is attention, the others recurrent
    ssm_d_conv: int = 4
    ssm_d_state: int = 64  # head size of the linear-attention heads
    ssm_n_group: int = 2  # key heads
    ssm_dt_rank: int = 4  # value heads
    full_attention_interval: int = 4


# The CI shapes: one per architecture: small dims, head size >= 32, the real tensor layout.
SHAPES = {
    "llama": Shape("llama", weight_type="Q8_0"),
    "qwen2": Shape("qwen2", n_head=4, n_head_kv=2, weight_type="F16"),  # qwen2 needs n_head * head_dim == n_embd
    "qwen3": Shape("qwen3", weight_type="Q4_0"),
    "qwen3moe": Shape("qwen3moe", n_expert=8, n_expert_used=2, n_ff_exp=256, weight_type="Q8_0"),
    "gemma3": Shape("gemma3", n_layer=6, n_swa=512, head_dim=128, n_head=4, n_head_kv=1, weight_type="F16"),
    "qwen35": Shape("qwen35", n_layer=8, weight_type="Q8_0"),  # hybrid: 6 gated-delta-net + 2 attention layers
}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level mapping (the byte-level BPE vocab every gpt2-style tokenizer uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def _vocab(n_vocab: int) -> list[str]:
    """Printable ASCII bytes (plus the byte-level space), then ASCII filler tokens: decoding never yields non-UTF-8."""
    mapping = _bytes_to_unicode()
    tokens = [mapping[b] for b in range(0x20, 0x7F)] + ["<s>", "</s>", "ab"]
    tokens += [f"t{i}" for i in range(n_vocab - len(tokens))]
    return tokens


def _weight(writer: GGUFWriter, name: str, shape: tuple[int, ...], qtype: str) -> None:
    """A zero tensor of ggml shape ``shape`` (ne0 first) stored as ``qtype``."""
    kind = GGMLQuantizationType[qtype]
    np_shape = tuple(reversed(shape))
    if kind == GGMLQuantizationType.F32:
        writer.add_tensor(name, np.zeros(np_shape, dtype=np.float32))
    elif kind == GGMLQuantizationType.F16:
        writer.add_tensor(name, np.zeros(np_shape, dtype=np.float16))
    else:
        block, size = GGML_QUANT_SIZES[kind]
        assert shape[0] % block == 0, (name, shape, qtype)
        byte_shape = (*np_shape[:-1], shape[0] // block * size)
        writer.add_tensor(name, np.zeros(byte_shape, dtype=np.uint8), raw_dtype=kind)


def _norm(writer: GGUFWriter, name: str, n: int) -> None:
    writer.add_tensor(name, np.ones((n,), dtype=np.float32))


def write_model(path: Path, shape: Shape) -> Path:
    """Write a GGUF llama.cpp loads as ``shape.arch``; zero weights (norms are ones)."""
    s = shape
    w = GGUFWriter(str(path), s.arch)
    w.add_name(f"synthetic-{s.arch}")
    w.add_block_count(s.n_layer)
    w.add_context_length(s.n_ctx_train)
    w.add_embedding_length(s.n_embd)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head_kv)
    w.add_key_length(s.head_dim)
    w.add_value_length(s.head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(1)
    if s.n_expert:
        w.add_expert_count(s.n_expert)
        w.add_expert_used_count(s.n_expert_used)
        w.add_expert_feed_forward_length(s.n_ff_exp)
    if s.n_swa:
        w.add_sliding_window(s.n_swa)
    if s.arch == "qwen35":
        w.add_ssm_conv_kernel(s.ssm_d_conv)
        w.add_ssm_inner_size(s.ssm_d_state * s.ssm_dt_rank)
        w.add_ssm_state_size(s.ssm_d_state)
        w.add_ssm_time_step_rank(s.ssm_dt_rank)
        w.add_ssm_group_count(s.ssm_n_group)
        w.add_full_attention_interval(s.full_attention_interval)
        w.add_rope_dimension_sections([s.head_dim // 8, s.head_dim // 8, s.head_dim // 8, 0])
    tokens = _vocab(s.n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([1] * len(tokens))
    w.add_token_merges(["a b"])
    w.add_bos_token_id(tokens.index("<s>"))
    w.add_eos_token_id(tokens.index("</s>"))
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")

    q = s.weight_type
    d_q, d_kv = s.n_head * s.head_dim, s.n_head_kv * s.head_dim
    _weight(w, "token_embd.weight", (s.n_embd, s.n_vocab), q)
    _norm(w, "output_norm.weight", s.n_embd)
    if s.arch != "gemma3":  # gemma3 ties the output head to the token embeddings
        _weight(w, "output.weight", (s.n_embd, s.n_vocab), q)
    for il in range(s.n_layer):
        b = f"blk.{il}."
        if s.arch == "qwen35":
            _qwen35_block(w, b, s, recurrent=(il + 1) % s.full_attention_interval != 0)
            continue
        _norm(w, b + "attn_norm.weight", s.n_embd)
        _weight(w, b + "attn_q.weight", (s.n_embd, d_q), q)
        _weight(w, b + "attn_k.weight", (s.n_embd, d_kv), q)
        _weight(w, b + "attn_v.weight", (s.n_embd, d_kv), q)
        _weight(w, b + "attn_output.weight", (d_q, s.n_embd), q)
        if s.arch == "qwen2":
            _weight(w, b + "attn_q.bias", (d_q,), "F32")
            _weight(w, b + "attn_k.bias", (d_kv,), "F32")
            _weight(w, b + "attn_v.bias", (d_kv,), "F32")
        if s.arch in ("qwen3", "qwen3moe", "gemma3"):
            _norm(w, b + "attn_q_norm.weight", s.head_dim)
            _norm(w, b + "attn_k_norm.weight", s.head_dim)
        if s.arch == "gemma3":
            _norm(w, b + "post_attention_norm.weight", s.n_embd)
            _norm(w, b + "post_ffw_norm.weight", s.n_embd)
        _norm(w, b + "ffn_norm.weight", s.n_embd)
        if s.n_expert:
            _weight(w, b + "ffn_gate_inp.weight", (s.n_embd, s.n_expert), "F32")
            _weight(w, b + "ffn_gate_exps.weight", (s.n_embd, s.n_ff_exp, s.n_expert), q)
            _weight(w, b + "ffn_up_exps.weight", (s.n_embd, s.n_ff_exp, s.n_expert), q)
            _weight(w, b + "ffn_down_exps.weight", (s.n_ff_exp, s.n_embd, s.n_expert), q)
        else:
            _weight(w, b + "ffn_gate.weight", (s.n_embd, s.n_ff), q)
            _weight(w, b + "ffn_up.weight", (s.n_embd, s.n_ff), q)
            _weight(w, b + "ffn_down.weight", (s.n_ff, s.n_embd), q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _qwen35_block(w: GGUFWriter, b: str, s: Shape, recurrent: bool) -> None:
    """A qwen3.5 block: gated attention (q and its gate in one matrix) or a gated-delta-net layer, then a dense FFN."""
    q = s.weight_type
    _norm(w, b + "attn_norm.weight", s.n_embd)
    _norm(w, b + "post_attention_norm.weight", s.n_embd)
    if recurrent:
        key_dim, value_dim = s.ssm_d_state * s.ssm_n_group, s.ssm_d_state * s.ssm_dt_rank
        _weight(w, b + "attn_qkv.weight", (s.n_embd, 2 * key_dim + value_dim), q)
        _weight(w, b + "attn_gate.weight", (s.n_embd, value_dim), q)
        _weight(w, b + "ssm_conv1d.weight", (s.ssm_d_conv, 2 * key_dim + value_dim), "F32")
        _weight(w, b + "ssm_dt.bias", (s.ssm_dt_rank,), "F32")
        _weight(w, b + "ssm_a", (s.ssm_dt_rank,), "F32")
        _weight(w, b + "ssm_beta.weight", (s.n_embd, s.ssm_dt_rank), "F32")
        _weight(w, b + "ssm_alpha.weight", (s.n_embd, s.ssm_dt_rank), "F32")
        _norm(w, b + "ssm_norm.weight", s.ssm_d_state)
        _weight(w, b + "ssm_out.weight", (value_dim, s.n_embd), q)
    else:
        d_q, d_kv = s.n_head * s.head_dim, s.n_head_kv * s.head_dim
        _weight(w, b + "attn_q.weight", (s.n_embd, 2 * d_q), q)
        _weight(w, b + "attn_k.weight", (s.n_embd, d_kv), q)
        _weight(w, b + "attn_v.weight", (s.n_embd, d_kv), q)
        _weight(w, b + "attn_output.weight", (d_q, s.n_embd), q)
        _norm(w, b + "attn_q_norm.weight", s.head_dim)
        _norm(w, b + "attn_k_norm.weight", s.head_dim)
    _weight(w, b + "ffn_gate.weight", (s.n_embd, s.n_ff), q)
    _weight(w, b + "ffn_up.weight", (s.n_embd, s.n_ff), q)
    _weight(w, b + "ffn_down.weight", (s.n_ff, s.n_embd), q)


# --- the real server -----------------------------------------------------------------------------------------------

_MIB = 1024 * 1024
_PATTERNS = {
    "model": re.compile(r"model buffer size =\s*([\d.]+) MiB"),
    "repack": re.compile(r"CPU_REPACK model buffer size =\s*([\d.]+) MiB"),
    "kv": re.compile(r"llama_kv_cache: size =\s*([\d.]+) MiB"),
    "kv_buffer": re.compile(r"KV buffer size =\s*([\d.]+) MiB"),
    "rs": re.compile(r"RS buffer size =\s*([\d.]+) MiB"),
    "compute": re.compile(r"compute buffer size =\s*([\d.]+) MiB"),
    "output": re.compile(r"output buffer size =\s*([\d.]+) MiB"),
}


@dataclass(frozen=True)
class Logged:
    """Buffer sizes llama-server logged while loading, in MiB (summed over devices and caches)."""

    model: float  # every model buffer, CPU_REPACK included
    repack: float
    kv: float
    kv_buffer: float
    rs: float
    compute: float
    output: float
    log: str


def parse_log(text: str) -> Logged:
    sums = {k: sum(float(m) for m in p.findall(text)) for k, p in _PATTERNS.items()}
    return Logged(**sums, log=text)


def server_binary() -> str:
    path = os.environ.get("LLAMAFLEET_LLAMA_SERVER")
    if not path:
        raise RuntimeError("set LLAMAFLEET_LLAMA_SERVER to a built llama-server binary")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"LLAMAFLEET_LLAMA_SERVER={path} is not an executable file")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_buffers(model: Path, args: list[str], timeout: float = 120.0) -> Logged:
    """Start llama-server on 127.0.0.1 with ``args``, wait for /health 200, stop it, return the logged buffers."""
    port = free_port()
    cmd = [server_binary(), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-t", "1",
           "-fit", "off", "--no-webui", "-lv", "4", *args]
    log_path = model.with_suffix(f".{port}.log")
    with open(log_path, "w+", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"llama-server exited {proc.returncode}: {' '.join(cmd)}\n"
                                       + log_path.read_text(encoding="utf-8")[-3000:])
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama-server not healthy after {timeout}s: {' '.join(cmd)}")
                time.sleep(0.1)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = log_path.read_text(encoding="utf-8")
    log_path.unlink()
    return parse_log(text)


def mib(n_bytes: float) -> float:
    return n_bytes / _MIB
