"""The router's preset INI and unit as rendered (seed 003 as a router: exact text), and the INI filters' refusals."""

from __future__ import annotations

import copy

import pytest
from hostsupport import raw_vars

from generators.errors import SpecError
from generators.pipeline import render_hostvars
from generators.render.templating import MANAGED, Unrenderable, ini_key, ini_section, ini_value

SEED_003_INI = f"""; {MANAGED}
; llama-server router mode: --models-preset (tools/server/README.md, "Model presets"). [*] holds what every model
; shares; each section is one model, named as clients send it ("model"). A model's own keys win over [*].
version = 1

[*]
ctx-size = 65536
parallel = 1
n-gpu-layers = 99
cache-type-k = f16
cache-type-v = f16
flash-attn = on
jinja = true
load-mode = none
metrics = true

[coder-qwen]
load-on-startup = true
model = /var/lib/llamafleet/models/Qwen3-Coder-30B-A3B-Instruct-IQ4_NL.gguf

[qwen3-2507]
model = /var/lib/llamafleet/models/Qwen3-30B-A3B-Instruct-2507-IQ4_NL.gguf

[gpt-oss-20b]
model = /var/lib/llamafleet/models/gpt-oss-20b-mxfp4.gguf

[qwen3-next-80b]
model = /var/lib/llamafleet/models/Qwen3-Next-80B-A3B-Instruct-IQ4_NL.gguf
"""


def strix_router() -> dict:
    spec = copy.deepcopy(raw_vars("strix-halo"))  # the example host as written, plus serve: router
    spec["llamafleet"]["serve"] = "router"
    return spec


def test_seed_003_as_a_router_renders_this_preset_and_unit() -> None:
    rendered = render_hostvars("strix-halo", strix_router())
    files = {f.path: f for f in rendered.files}
    assert files["presets/llamafleet-main.ini"].content == SEED_003_INI
    assert files["presets/llamafleet-main.ini"].mode == "0644"
    unit = files["systemd/user/llamafleet-main.service"].content
    models_max = rendered.plan.router.models_max  # type: ignore[union-attr]
    assert ("Description=llama-server router main (coder-qwen, qwen3-2507, gpt-oss-20b, qwen3-next-80b; port 8080)"
            in unit)
    assert ("ExecStart=/opt/llamafleet/llama.cpp/current/bin/llama-server \\\n    --host 127.0.0.1 \\\n    --port 9080"
            " \\\n    --models-preset /var/lib/llamafleet/presets/llamafleet-main.ini \\\n    --models-max "
            f"{models_max} \\\n    --models-autoload\n") in unit
    entry = rendered.manifest["servers"][0]["router"]
    assert entry["preset_file"] == "/var/lib/llamafleet/presets/llamafleet-main.ini"
    assert entry["render_path"] == "presets/llamafleet-main.ini"


def test_a_host_without_router_renders_no_preset() -> None:
    rendered = render_hostvars("strix-halo", raw_vars("strix-halo"))
    assert not [f for f in rendered.files if f.path.startswith("presets/")]
    assert "router" not in rendered.manifest["servers"][0]


def test_autoload_off_renders_the_negative_flag() -> None:
    spec = strix_router()
    spec["llamafleet"]["router"] = {"autoload": False}
    argv = render_hostvars("strix-halo", spec).plan.servers[0].argv
    assert "--no-models-autoload" in argv and "--models-autoload" not in argv


@pytest.mark.parametrize("value", ["a;b", "a#b", " lead", "trail ", "", "two\nlines", "tab\there", "é", "nul\x00"])
def test_ini_values_the_parser_would_read_differently_are_refused(value: str) -> None:
    with pytest.raises(Unrenderable):
        ini_value(value)


def test_ini_values_keys_and_sections_that_read_back_exactly_pass() -> None:
    assert ini_value("/var/lib/llamafleet/models/a b+c.gguf") == "/var/lib/llamafleet/models/a b+c.gguf"
    assert ini_value("0.9") == "0.9" and ini_key("ctx-size") == "ctx-size" and ini_section("qwen3.6-35b") == "qwen3.6-35b"
    for bad in ("x:tag", "a]b", "a b", ""):
        with pytest.raises(Unrenderable):
            ini_section(bad)
    for bad in ("-c", "a=b", "1x"):
        with pytest.raises(Unrenderable):
            ini_key(bad)


def test_an_alias_that_cannot_name_a_section_is_a_spec_error_before_any_render() -> None:
    spec = strix_router()
    spec["llamafleet"]["servers"][0]["presets"]["coder"]["alias"] = "coder:latest"
    with pytest.raises(SpecError, match=r"llamafleet.servers\[0\].presets.coder.alias: 'coder:latest' names a router"):
        render_hostvars("strix-halo", spec)
