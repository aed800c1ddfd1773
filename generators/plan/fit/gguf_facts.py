"""What the memory planner needs to know about a GGUF model, read from its header with the ``gguf`` package.

:func:`read_facts` reads a file on disk (``GGUFReader`` memory-maps it: only the header pages are touched, tensor
data is never read). :func:`read_remote_facts` reads the header of a file that is *not* on disk through an fsspec
filesystem (``huggingface_hub.HfFileSystem`` for the hub): it reads the first few MiB with one ranged read, growing
the read until the whole header is inside it, and parses that prefix as a sparse local file of the remote's size.
Nothing beyond the header is ever transferred.

Architecture knowledge that llama.cpp keeps in code rather than in the file (the default sliding-window pattern of
gemma3 or gpt-oss, which layers of qwen3.5 are recurrent) is resolved here, so :class:`ModelFacts` is plain data:
the planner and the catalog never need to know an architecture by name.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from gguf import GGUFReader, GGUFValueType, Keys

# llama.cpp's default sliding-window patterns for architectures whose GGUF has a window size but no pattern key
# (src/models/<arch>.cpp: load_swa_pattern(ml, N)). A layer il is SWA when il % N < N - 1.
_SWA_DEFAULT_PATTERN = {"gemma3": 6, "gpt-oss": 2, "cohere2": 4, "gemma2": 2}
# Architectures with gated-delta-net layers: every layer but each full_attention_interval-th is recurrent.
_RECURRENT_INTERVAL_ARCHS = {"qwen3next": 4, "qwen35": 4, "qwen35moe": 4}
_BLOCK = re.compile(r"^blk\.(\d+)\.")
_EXPERT = re.compile(r"_(exps|chexps)\.")
_OUTPUT = ("output.", "output_norm.")
_TOKEN_EMBD = ("token_embd.", "token_embd_norm.")


@dataclass(frozen=True)
class ModelFacts:
    """Header facts of one GGUF model, enough to size its weights, KV cache, state and compute buffer."""

    name: str
    architecture: str
    n_layer: int  # blocks in the file (block_count)
    n_layer_nextn: int  # trailing multi-token-prediction blocks, never attended by the main graph
    n_embd: int
    n_vocab: int
    n_ctx_train: int
    n_ff: int  # largest dense feed-forward length (0 for pure-MoE layers)
    n_ff_exp: int  # expert feed-forward length (0 for dense models)
    n_head: tuple[int, ...]  # per layer
    n_head_kv: tuple[int, ...]  # per layer; 0 for layers without attention
    head_k: int
    head_v: int
    n_expert: int
    n_expert_used: int
    n_swa: int  # sliding window in tokens (0: none)
    swa_layers: tuple[bool, ...]  # per layer: uses the sliding-window cache
    recurrent_layers: tuple[bool, ...]  # per layer: carries recurrent (SSM / delta-net) state instead of KV
    ssm_d_conv: int
    ssm_d_inner: int
    ssm_d_state: int
    ssm_n_group: int
    layer_bytes: tuple[int, ...]  # per block: tensor bytes except expert tensors
    layer_expert_bytes: tuple[int, ...]  # per block: bytes of the routed-expert tensors (*_exps)
    output_bytes: int  # output head and final norm
    token_embd_bytes: int
    other_bytes: int  # tensors outside blocks, output and embeddings (rope factors, ...)
    bytes_by_type: tuple[tuple[str, int], ...]  # (ggml type name, bytes), sorted by name
    data_span_bytes: int  # file bytes from the first to the end of the last tensor (the CPU mmap buffer)
    mmproj_name: str | None = None
    mmproj_bytes: int = 0
    # bytes of weight matrices (2-D and up, token embeddings excluded: those are looked up, never multiplied) by
    # type: the tensors the CPU backend may repack into a second, interleaved copy
    matrix_bytes_by_type: tuple[tuple[str, int], ...] = ()

    @property
    def n_layer_main(self) -> int:
        """Blocks the main graph runs (MTP blocks excluded): the ones that hold KV or state."""
        return self.n_layer - self.n_layer_nextn

    @property
    def weight_bytes(self) -> int:
        return sum(self.layer_bytes) + sum(self.layer_expert_bytes) + self.output_bytes + self.token_embd_bytes + (
            self.other_bytes
        )

    @property
    def ties_output(self) -> bool:
        """No output matrix in the file (only the final norm): llama.cpp reuses token_embd as the output head.

        It creates that head as a duplicate of token_embd (``TENSOR_DUPLICATED``, src/models/<arch>.cpp) in the
        output layer's buffer: free on the CPU (the same mapped pages), a second copy when the output is on a GPU.
        An output matrix of ``n_embd * n_vocab`` elements takes at least ~1.5 bits per element in any ggml type.
        """
        return self.output_bytes * 8 < self.n_embd * self.n_vocab

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0 and any(self.layer_expert_bytes)

    def attention_layers(self) -> tuple[int, ...]:
        """Indices of main-graph layers that keep a KV cache."""
        return tuple(
            il for il in range(self.n_layer_main) if not self.recurrent_layers[il] and self.n_head_kv[il] > 0
        )

    @property
    def n_embd_r(self) -> int:
        """Per-sequence, per-layer convolution state (elements), as llama_hparams::n_embd_r()."""
        if not self.ssm_d_conv:
            return 0
        return (self.ssm_d_conv - 1) * (self.ssm_d_inner + 2 * self.ssm_n_group * self.ssm_d_state)

    @property
    def n_embd_s(self) -> int:
        """Per-sequence, per-layer recurrent state (elements), as llama_hparams::n_embd_s()."""
        return self.ssm_d_state * self.ssm_d_inner


class _Fields(Protocol):
    def get_field(self, key: str) -> Any: ...


def _value(reader: _Fields, key: str) -> Any:
    """A scalar, string or array field as plain Python, or None when absent."""
    fld = reader.get_field(key)
    if fld is None:
        return None
    if fld.types and fld.types[0] == GGUFValueType.ARRAY:
        if len(fld.types) > 1 and fld.types[1] == GGUFValueType.STRING:
            return len(fld.data)  # only ever counted (token lists)
        return list(fld.contents())
    return fld.contents()


def _per_layer(value: Any, n_layer: int, default: int) -> tuple[int, ...]:
    if value is None:
        return (default,) * n_layer
    if isinstance(value, list):
        if len(value) < n_layer:
            raise ValueError(f"per-layer array has {len(value)} entries for {n_layer} layers")
        return tuple(int(v) for v in value[:n_layer])
    return (int(value),) * n_layer


def _swa_layers(reader: _Fields, arch: str, n_layer: int, n_swa: int) -> tuple[bool, ...]:
    if n_swa <= 0:
        return (False,) * n_layer
    pattern = _value(reader, Keys.Attention.SLIDING_WINDOW_PATTERN.format(arch=arch))
    if isinstance(pattern, list):
        return tuple(bool(v) for v in pattern[:n_layer])
    n_pattern = int(pattern) if pattern is not None else _SWA_DEFAULT_PATTERN.get(arch)
    if n_pattern is None:  # a window and no known pattern: llama.cpp treats every layer as SWA (phi3-style)
        return (True,) * n_layer
    return tuple(n_pattern == 0 or il % n_pattern < n_pattern - 1 for il in range(n_layer))


def _recurrent_layers(reader: _Fields, arch: str, n_layer: int, n_main: int) -> tuple[bool, ...]:
    explicit = _value(reader, f"{arch}.attention.recurrent_layers")
    if isinstance(explicit, list):
        return tuple(bool(v) for v in explicit[:n_layer])
    if arch in _RECURRENT_INTERVAL_ARCHS:
        interval = _value(reader, Keys.LLM.FULL_ATTENTION_INTERVAL.format(arch=arch))
        interval = int(interval) if interval is not None else _RECURRENT_INTERVAL_ARCHS[arch]
        return tuple(il < n_main and (il + 1) % interval != 0 for il in range(n_layer))
    if _value(reader, Keys.SSM.STATE_SIZE.format(arch=arch)):  # pure SSM (mamba): every layer
        return (True,) * n_layer
    return (False,) * n_layer


def _tensor_bytes(reader: GGUFReader) -> dict[str, Any]:
    layer: dict[int, int] = {}
    expert: dict[int, int] = {}
    by_type: dict[str, int] = {}
    matrix: dict[str, int] = {}
    output = embd = other = 0
    first, last = None, 0
    for t in reader.tensors:
        n = int(t.n_bytes)
        by_type[t.tensor_type.name] = by_type.get(t.tensor_type.name, 0) + n
        if len(t.shape) >= 2 and not t.name.startswith(_TOKEN_EMBD):
            matrix[t.tensor_type.name] = matrix.get(t.tensor_type.name, 0) + n
        first = t.data_offset if first is None else min(first, t.data_offset)
        last = max(last, t.data_offset + n)
        match = _BLOCK.match(t.name)
        if match:
            il = int(match.group(1))
            bucket = expert if _EXPERT.search(t.name) else layer
            bucket[il] = bucket.get(il, 0) + n
        elif t.name.startswith(_OUTPUT):
            output += n
        elif t.name.startswith(_TOKEN_EMBD):
            embd += n
        else:
            other += n
    return {
        "layer": layer, "expert": expert, "output": output, "embd": embd, "other": other,
        "by_type": tuple(sorted(by_type.items())), "span": last - (first or 0),
        "matrix": tuple(sorted(matrix.items())),
    }


def facts_from_reader(reader: GGUFReader, name: str) -> ModelFacts:
    """Facts from a parsed GGUF header (tensor infos only: no tensor data is read)."""
    arch = str(_value(reader, Keys.General.ARCHITECTURE))

    def key(template: str, default: Any = None) -> Any:
        got = _value(reader, template.format(arch=arch))
        return default if got is None else got

    n_layer = int(key(Keys.LLM.BLOCK_COUNT))
    n_nextn = int(key(Keys.LLM.NEXTN_PREDICT_LAYERS, 0))
    n_embd = int(key(Keys.LLM.EMBEDDING_LENGTH))
    n_head = _per_layer(key(Keys.Attention.HEAD_COUNT), n_layer, 0)
    n_head_kv = _per_layer(key(Keys.Attention.HEAD_COUNT_KV), n_layer, 0) if reader.get_field(
        Keys.Attention.HEAD_COUNT_KV.format(arch=arch)) is not None else n_head
    head_max = max(n_head) if any(n_head) else 1
    head_k = int(key(Keys.Attention.KEY_LENGTH, n_embd // head_max))
    head_v = int(key(Keys.Attention.VALUE_LENGTH, n_embd // head_max))
    n_ff_raw = key(Keys.LLM.FEED_FORWARD_LENGTH, 0)
    n_ff = max(n_ff_raw) if isinstance(n_ff_raw, list) else int(n_ff_raw)
    n_vocab = key(Keys.LLM.VOCAB_SIZE)
    if n_vocab is None:
        n_vocab = _value(reader, Keys.Tokenizer.LIST) or 0
    n_swa = int(key(Keys.Attention.SLIDING_WINDOW, 0))
    sizes = _tensor_bytes(reader)
    return ModelFacts(
        name=name,
        architecture=arch,
        n_layer=n_layer,
        n_layer_nextn=n_nextn,
        n_embd=n_embd,
        n_vocab=int(n_vocab),
        n_ctx_train=int(key(Keys.LLM.CONTEXT_LENGTH, 0)),
        n_ff=n_ff,
        n_ff_exp=int(key(Keys.LLM.EXPERT_FEED_FORWARD_LENGTH, 0)),
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_k=head_k,
        head_v=head_v,
        n_expert=int(key(Keys.LLM.EXPERT_COUNT, 0)),
        n_expert_used=int(key(Keys.LLM.EXPERT_USED_COUNT, 0)),
        n_swa=n_swa,
        swa_layers=_swa_layers(reader, arch, n_layer, n_swa),
        recurrent_layers=_recurrent_layers(reader, arch, n_layer, n_layer - n_nextn),
        ssm_d_conv=int(key(Keys.SSM.CONV_KERNEL, 0)),
        ssm_d_inner=int(key(Keys.SSM.INNER_SIZE, 0)),
        ssm_d_state=int(key(Keys.SSM.STATE_SIZE, 0)),
        ssm_n_group=int(key(Keys.SSM.GROUP_COUNT, 0)),
        layer_bytes=tuple(sizes["layer"].get(il, 0) for il in range(n_layer)),
        layer_expert_bytes=tuple(sizes["expert"].get(il, 0) for il in range(n_layer)),
        output_bytes=sizes["output"],
        token_embd_bytes=sizes["embd"],
        other_bytes=sizes["other"],
        bytes_by_type=sizes["by_type"],
        data_span_bytes=sizes["span"],
        matrix_bytes_by_type=sizes["matrix"],
    )


def mmproj_bytes(path: str | os.PathLike[str]) -> int:
    """Tensor bytes of a multimodal projector GGUF (``--mmproj``)."""
    return sum(int(t.n_bytes) for t in GGUFReader(path).tensors)


def read_facts(path: str | os.PathLike[str], mmproj: str | os.PathLike[str] | None = None) -> ModelFacts:
    """Facts of a GGUF file on disk (and its mmproj, if any). The file is memory-mapped, its tensors never read."""
    facts = facts_from_reader(GGUFReader(path), Path(path).name)
    if mmproj is None:
        return facts
    return _with_mmproj(facts, Path(mmproj).name, mmproj_bytes(mmproj))


def _with_mmproj(facts: ModelFacts, name: str, size: int) -> ModelFacts:
    return replace(facts, mmproj_name=name, mmproj_bytes=size)


# --- header of a file that is not on disk --------------------------------------------------------------------------


class _RemoteFS(Protocol):
    def info(self, path: str) -> dict[str, Any]: ...

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any: ...


def _parse_prefix(prefix: bytes, size: int, parse: Callable[[GGUFReader], Any]) -> Any | None:
    """Parse a header prefix as a sparse file of the remote's size; None if the header runs past the prefix."""
    with tempfile.NamedTemporaryFile(suffix=".gguf") as tmp:
        tmp.write(prefix)
        tmp.flush()
        os.truncate(tmp.name, size)  # sparse: the tensor data region takes no disk and is never read
        try:
            reader = GGUFReader(tmp.name)
        except (ValueError, KeyError, IndexError, TypeError, OverflowError, UnicodeDecodeError, MemoryError):
            return None
        if reader.data_offset > len(prefix):
            return None
        result = parse(reader)
        del reader
        return result


def read_remote_header(
    fs: _RemoteFS,
    path: str,
    parse: Callable[[GGUFReader], Any],
    first_read: int = 8 << 20,
    max_read: int = 256 << 20,
) -> Any:
    """Range-read a remote GGUF's header (doubling the read until it fits) and ``parse`` it; never the tensors."""
    size = int(fs.info(path)["size"])
    want = min(first_read, size)
    while True:
        # cache_type "none": the read is exactly one HTTP Range request for bytes 0..want-1 (HfFileSystemFile)
        with fs.open(path, "rb", cache_type="none") as handle:
            prefix = handle.read(want)
        result = _parse_prefix(prefix, size, parse)
        if result is not None:
            return result
        if want >= min(max_read, size):
            raise ValueError(f"{path}: GGUF header not complete within the first {want} bytes")
        want = min(want * 2, max_read, size)


def read_remote_facts(fs: _RemoteFS, path: str, mmproj_path: str | None = None) -> ModelFacts:
    """Facts of a GGUF behind an fsspec filesystem (``HfFileSystem`` paths look like ``org/repo/file.gguf``)."""
    name = path.rsplit("/", 1)[-1]
    facts = read_remote_header(fs, path, lambda r: facts_from_reader(r, name))
    if mmproj_path is None:
        return facts
    size = read_remote_header(fs, mmproj_path, lambda r: sum(int(t.n_bytes) for t in r.tensors))
    return _with_mmproj(facts, mmproj_path.rsplit("/", 1)[-1], size)


def hub_facts(repo: str, filename: str, mmproj: str | None = None, revision: str | None = None) -> ModelFacts:
    """Facts of a model on the Hugging Face hub, from its header only (needs network; used by the catalog refresh)."""
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem()
    at = f"@{revision}" if revision else ""
    base = f"{repo}{at}"
    return read_remote_facts(fs, f"{base}/{filename}", f"{base}/{mmproj}" if mmproj else None)


__all__ = [
    "ModelFacts", "facts_from_reader", "hub_facts", "mmproj_bytes", "read_facts", "read_remote_facts",
    "read_remote_header",
]
