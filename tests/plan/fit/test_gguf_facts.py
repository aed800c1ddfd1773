"""Header facts read with the gguf package match the shapes the files were written with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fsspec
import pytest
from fit_harness import SHAPES
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from generators.plan.fit.gguf_facts import facts_from_reader, read_facts, read_remote_facts, read_remote_header


def _bytes(qtype: str, *shape: int) -> int:
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    n = 1
    for d in shape:
        n *= d
    return n // block * size


@pytest.mark.parametrize("arch", list(SHAPES))
def test_facts_match_written_shape(models: dict[str, Path], arch: str) -> None:
    s = SHAPES[arch]
    f = read_facts(models[arch])
    assert (f.architecture, f.n_layer, f.n_embd, f.n_vocab, f.n_ctx_train) == (
        arch, s.n_layer, s.n_embd, s.n_vocab, s.n_ctx_train)
    assert f.n_head == (s.n_head,) * s.n_layer and f.n_head_kv == (s.n_head_kv,) * s.n_layer
    assert (f.head_k, f.head_v) == (s.head_dim, s.head_dim)
    assert (f.n_expert, f.n_expert_used, f.n_ff_exp) == (s.n_expert, s.n_expert_used, s.n_ff_exp)
    q, d_q, d_kv = s.weight_type, s.n_head * s.head_dim, s.n_head_kv * s.head_dim
    attn = _bytes(q, s.n_embd, d_q) * 2 + _bytes(q, s.n_embd, d_kv) * 2
    if s.n_expert:
        assert f.layer_expert_bytes == (3 * _bytes(q, s.n_embd, s.n_ff_exp, s.n_expert),) * s.n_layer
        assert f.is_moe
    else:
        assert f.layer_expert_bytes == (0,) * s.n_layer
        attn += 3 * _bytes(q, s.n_embd, s.n_ff)
    if arch != "qwen35":  # its recurrent layers have other projections, checked below
        assert all(b > attn for b in f.layer_bytes)  # plus norms, biases and the router: small f32 tensors
    assert f.token_embd_bytes == _bytes(q, s.n_embd, s.n_vocab)
    tied = arch == "gemma3"
    assert f.output_bytes == 4 * s.n_embd + (0 if tied else _bytes(q, s.n_embd, s.n_vocab))
    assert f.data_span_bytes >= f.weight_bytes
    assert f.data_span_bytes - f.weight_bytes < 32 * 20 * s.n_layer  # only alignment padding between tensors
    assert dict(f.bytes_by_type)[q] > 0


def test_gemma3_sliding_window_pattern(models: dict[str, Path]) -> None:
    f = read_facts(models["gemma3"])
    assert f.n_swa == 512
    assert f.swa_layers == (True, True, True, True, True, False)  # llama.cpp's gemma3 pattern: every 6th is global


def test_qwen35_recurrent_layers_and_state_sizes(models: dict[str, Path]) -> None:
    s = SHAPES["qwen35"]
    f = read_facts(models["qwen35"])
    assert f.recurrent_layers == tuple((il + 1) % 4 != 0 for il in range(s.n_layer))
    assert f.attention_layers() == (3, 7)
    d_inner = s.ssm_d_state * s.ssm_dt_rank
    assert f.n_embd_r == (s.ssm_d_conv - 1) * (d_inner + 2 * s.ssm_n_group * s.ssm_d_state)
    assert f.n_embd_s == s.ssm_d_state * d_inner


def test_dense_models_have_no_window_or_state(models: dict[str, Path]) -> None:
    f = read_facts(models["llama"])
    assert not any(f.swa_layers) and not any(f.recurrent_layers)
    assert f.n_embd_r == 0 and f.n_embd_s == 0
    assert f.attention_layers() == tuple(range(f.n_layer))


class _CountingFS:
    """A real fsspec local filesystem that records how many bytes each open() handed out."""

    def __init__(self) -> None:
        self.fs = fsspec.filesystem("file")
        self.reads: list[int] = []

    def info(self, path: str) -> dict[str, Any]:
        return self.fs.info(path)

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        handle = self.fs.open(path, mode)
        real_read = handle.read

        def read(n: int = -1) -> bytes:
            data = real_read(n)
            self.reads.append(len(data))
            return data

        handle.read = read
        return handle


def test_remote_header_reads_only_the_header(models: dict[str, Path]) -> None:
    """Range reads grow from 4 KiB until the header parses; the tensors are never transferred."""
    path = models["qwen3moe"]
    fs = _CountingFS()
    facts = read_remote_header(fs, str(path), lambda r: facts_from_reader(r, path.name), first_read=4096)
    assert facts == read_facts(path)
    assert len(fs.reads) > 1, "a 4 KiB first read cannot hold the header: the read must have grown"
    assert max(fs.reads) < path.stat().st_size // 4


def test_remote_facts_equal_local(models: dict[str, Path]) -> None:
    fs = fsspec.filesystem("file")
    for path in models.values():
        assert read_remote_facts(fs, str(path)) == read_facts(path)
