"""Each seed host's rendered llama-server command equals the seed's final working launch, flag for flag.

The expected command lines are copied from the write-ups in ../shared/seeds (short flags and all); both sides
are normalised to llama-server's long option names (aliases as listed in llama.cpp's common/arg.cpp) before
comparison. Flags a seed leaves out and llamafleet always renders are filled with llama-server's defaults
(--host 127.0.0.1, --port 8080) or what llamafleet adds to every server (--metrics: the fleet status and
Prometheus read it). Every intentional difference from a seed is spelled out below, with its reason.
"""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath

import pytest

from hostsupport import parse, parse_tweaked, plan_of

from generators.plan.proxy import fronted_server
from generators.spec import Host

LONG = {
    "-m": "--model",
    "-c": "--ctx-size",
    "-ngl": "--n-gpu-layers",
    "--gpu-layers": "--n-gpu-layers",
    "-fa": "--flash-attn",
    "-ctk": "--cache-type-k",
    "-ctv": "--cache-type-v",
    "-np": "--parallel",
    "-a": "--alias",
    "-b": "--batch-size",
    "-ub": "--ubatch-size",
    "-dev": "--device",
    "-nkvo": "--no-kv-offload",
    "-kvu": "--kv-unified",
    "-cram": "--cache-ram",
    "-sps": "--slot-prompt-similarity",
    "-mm": "--mmproj",
    "-lm": "--load-mode",
}
DEFAULTS: dict[str, str | None] = {"--host": "127.0.0.1", "--port": "8080", "--metrics": None}


def normalise(argv: list[str]) -> dict[str, str | None]:
    """option -> value (None for a switch); the model and mmproj by file name, since paths differ per host."""
    out: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        flag = LONG.get(argv[i], argv[i])
        assert flag.startswith("--"), f"not an option: {argv[i]!r}"
        value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None
        if flag in ("--model", "--mmproj") and value is not None:
            value = PurePosixPath(value).name
        assert flag not in out, f"{flag} given twice"
        out[flag] = value
        i += 2 if value is not None else 1
    return out


def seed(command: str, **replace: str | None) -> dict[str, str | None]:
    argv = shlex.split(command)
    assert argv[0].endswith("llama-server")
    got = {**DEFAULTS, **normalise(argv[1:])}
    for flag, value in replace.items():
        flag = "--" + flag.replace("_", "-")
        if value is None:
            got.pop(flag, None)
        else:
            got[flag] = value
    return got


def rendered(host: Host, server: str = "main") -> dict[str, str | None]:
    """The server's launch, with --host/--port as agents reach it: where the proxy (on by default) fronts the
    server, it takes the server's address and llama-server itself moves behind it (test_000 checks that move)."""
    got = normalise(list(plan_of(host).server(server).argv[1:]))
    fronted = fronted_server(host)
    if fronted is not None and fronted.name == server:
        got["--host"], got["--port"] = fronted.host, str(fronted.port)
    return got


SEED_000 = """llama-server --model qwen2.5-3b-q4_k_m.gguf
  --device Vulkan1 --n-gpu-layers 99 --ctx-size 32768 --parallel 1
  --cache-type-k q8_0 --cache-type-v q8_0 --flash-attn on
  --ubatch-size 1536 --batch-size 1536 --jinja --alias local"""

SEED_001 = """/home/sachin/code/llama.cpp/build/bin/llama-server
  -m /home/sachin/models/qwen3.6-35b-a3b-unsloth/Qwen3.6-35B-A3B-UD-IQ4_XS.gguf
  -ngl 99 -c 262144 -fa on --cache-type-k q8_0 --cache-type-v q8_0
  --kv-unified --cache-idle-slots --cache-ram 16384 --slot-prompt-similarity 0.9
  --jinja --host 127.0.0.1 --port 8080"""

SEED_003 = """llama-server -m ~/models/Qwen3-Coder-30B-A3B-Instruct-IQ4_NL.gguf
  -c 65536 -fa on -ngl 99 --no-mmap -ctk f16 -ctv f16 --jinja -np 1 -a coder-qwen"""

SEED_004_TEXT = """./build/bin/llama-server -m ./Qwen3.5-9B-Q5_K_M.gguf --port 8000 -c 131072 --host 0.0.0.0
  -ngl auto -b 512 -ub 128 --cache-type-k q4_0 --cache-type-v q4_0 --flash-attn on --jinja"""

SEED_004_VISION = """./build/bin/llama-server -m ./Qwen3.5-9B-Q5_K_M.gguf --mmproj ./mmproj-BF16.gguf --port 8000
  -c 65536 --host 0.0.0.0 --no-kv-offload -ngl auto -b 128 -ub 64 --cache-type-k q4_0 --cache-type-v q4_0
  --flash-attn on --jinja"""


def test_000_t1200_vulkan1_with_big_batches() -> None:
    # The seed's stack is OpenCode -> proxy -> llama-server: the proxy takes 8080,
    # the port OpenCode uses, so llama-server itself moves behind it to 127.0.0.1:9080 (its port + 1000).
    host = parse("t1200-laptop")
    assert rendered(host) == seed(SEED_000)
    assert normalise(list(plan_of(host).server("main").argv[1:]))["--port"] == "9080"
    fronted = fronted_server(host)
    assert fronted is not None and (fronted.host, fronted.port) == ("127.0.0.1", 8080)


def test_001_rtx4090_shared_kv_pool_without_cmoe() -> None:
    got = rendered(parse("rtx4090"))
    assert got == seed(SEED_001)
    assert "--cpu-moe" not in got and "-cmoe" not in got and "--parallel" not in got


def test_003_strix_halo_at_b11434_uses_load_mode_none() -> None:
    # b11434 has no --no-mmap any more: the same setting is spelled --load-mode none (data/flag_renames.yaml)
    host = parse("strix-halo")
    assert host.llamacpp is not None and host.llamacpp.build == 11434
    assert rendered(host) == seed(SEED_003, no_mmap=None, load_mode="none")


def test_003_strix_halo_on_an_older_build_is_the_seed_verbatim() -> None:
    host = parse_tweaked("strix-halo", {"llamacpp": {"build": 10404}})
    assert rendered(host) == seed(SEED_003)


def test_003_strix_halo_environment_has_radv_bfloat16() -> None:
    host = parse("strix-halo")
    assert dict(plan_of(host).servers[0].environment) == {"RADV_PERFTEST": "bfloat16"}


def test_004_text_keeps_kv_in_host_ram_with_small_batches() -> None:
    # Differences from the seed's last text command, on purpose:
    # - --host: llamafleet binds loopback unless the server has an api_key_file (the seed's 0.0.0.0 is open).
    # - --no-kv-offload: the seed's own "speed tax" section runs 131K with it ("the only way I could fit 131K");
    #   its final one-liner dropped it, which would put 131K of KV back on the 8 GB card.
    # - --parallel: not given by the seed either (llama-server's auto).
    # - KV q8_0: the seed's evaluation supersedes its launch ("q4_0 KV is a hard floor", "KV cache >= q8_0").
    expected = seed(SEED_004_TEXT, host="127.0.0.1", no_kv_offload=None, cache_type_k="q8_0", cache_type_v="q8_0")
    expected["--no-kv-offload"] = None
    assert rendered(parse("rtx4060-laptop")) == expected


def test_004_vision_preset_is_the_seed_multimodal_launch() -> None:
    host = parse_tweaked("rtx4060-laptop", {"servers": [{**_server0("rtx4060-laptop"), "preset": "vision"}]})
    # KV q8_0, not the launch's q4_0: the seed's evaluation ("KV cache >= q8_0")
    assert rendered(host) == seed(SEED_004_VISION, host="127.0.0.1", cache_type_k="q8_0", cache_type_v="q8_0")


def test_004_vision_batches_are_smaller_than_text() -> None:
    text = rendered(parse("rtx4060-laptop"))
    vision = rendered(
        parse_tweaked("rtx4060-laptop", {"servers": [{**_server0("rtx4060-laptop"), "preset": "vision"}]})
    )
    assert int(vision["--batch-size"] or 0) < int(text["--batch-size"] or 0)
    assert int(vision["--ubatch-size"] or 0) < int(text["--ubatch-size"] or 0)


def test_002_rtx3070_runs_autocomplete_and_chat_on_two_ports() -> None:
    host = parse("rtx3070")
    chat, auto = rendered(host, "chat"), rendered(host, "autocomplete")
    assert (chat["--port"], auto["--port"]) == ("8080", "8081")
    assert chat["--model"] == "qwen2.5-coder-14b-instruct-q4_k_m.gguf"
    assert auto["--model"] == "qwen2.5-coder-7b-instruct-q4_k_m.gguf"
    # the chat server gets the planner's explicit layer count (tests/render/test_seed_conclusions.py checks it)
    assert auto["--n-gpu-layers"] == "99" and chat["--n-gpu-layers"] == "5"


@pytest.mark.parametrize(
    ("preset", "model", "alias"),
    [
        ("coder", "Qwen3-Coder-30B-A3B-Instruct-IQ4_NL.gguf", "coder-qwen"),
        ("2507", "Qwen3-30B-A3B-Instruct-2507-IQ4_NL.gguf", "qwen3-2507"),
        ("gpt-oss", "gpt-oss-20b-mxfp4.gguf", "gpt-oss-20b"),
        ("next-80b", "Qwen3-Next-80B-A3B-Instruct-IQ4_NL.gguf", "qwen3-next-80b"),
    ],
)
def test_003_presets_switch_with_one_variable(preset: str, model: str, alias: str) -> None:
    host = parse_tweaked("strix-halo", {"servers": [{**_server0("strix-halo"), "preset": preset}]})
    got = rendered(host)
    assert (got["--model"], got["--alias"]) == (model, alias)
    # the rest of the launch is the preset-independent part of the seed
    assert {k: v for k, v in got.items() if k not in ("--model", "--alias")} == {
        k: v for k, v in seed(SEED_003, no_mmap=None, load_mode="none").items() if k not in ("--model", "--alias")
    }


def _server0(host: str) -> dict:
    from hostsupport import raw_vars

    return dict(raw_vars(host)["llamafleet"]["servers"][0])
