"""The proxy in a host description: llama-server moves behind it, the proxy takes the agents' port.

Seed 000 runs OpenCode -> proxy -> llama-server. The proxy is on by default on llama.cpp hosts (``sse_proxy:
false`` turns it off) in front of the first chat server (or ``sse_proxy.server``); the fronted llama-server binds 127.0.0.1:<upstream_port>, the proxy's unit listens where the server's host/port
say, and everything agents and probes use (client configs, the manifest's client_host/client_port) points there.
"""

from __future__ import annotations

import json

import pytest
from llamafleet_sseproxy.__main__ import parse_args  # roles/sse_proxy/files, on pytest's pythonpath

from hostsupport import DEMO, parse, parse_tweaked, plan_of, render_spec

from generators.errors import SpecError
from generators.plan.proxy import UNIT_NAME, fronted_server, proxy_argv
from generators.spec import Host

PROXY_PATH = f"systemd/user/{UNIT_NAME}"


def files(host: Host) -> dict[str, str]:
    return {path: f.content for path, f in render_spec(host).items()}


def manifest(host: Host) -> dict:
    return json.loads(files(host)["manifest.json"])


def bind(host: Host, name: str = "main") -> tuple[str, str]:
    argv = plan_of(host).server(name).argv
    return argv[argv.index("--host") + 1], argv[argv.index("--port") + 1]


def test_seed_000_llama_server_moves_behind_the_proxy() -> None:
    host = parse("t1200-laptop")
    assert bind(host) == ("127.0.0.1", "9080")
    proxy = plan_of(host).proxy
    assert proxy is not None
    unit = proxy.unit
    cfg = parse_args(proxy_argv(unit)[3:])  # the unit's own command line, read by the proxy's parser
    assert (cfg.listen_host, cfg.listen_port, cfg.upstream) == ("127.0.0.1", 8080, "http://127.0.0.1:9080")
    rendered = files(host)
    assert "--upstream http://127.0.0.1:9080" in rendered[PROXY_PATH]
    assert "After=llamafleet-main.service" in rendered[PROXY_PATH]
    assert "--port 9080" in rendered["systemd/user/llamafleet-main.service"]


def test_seed_000_manifest_tells_roles_and_probes_apart() -> None:
    got = manifest(parse("t1200-laptop"))
    server = got["servers"][0]
    assert (server["host"], server["port"]) == ("127.0.0.1", 9080)  # llama_server's /health wait
    assert (server["client_host"], server["client_port"]) == ("127.0.0.1", 8080)  # probes, like an agent
    proxy = got["sse_proxy"]
    assert proxy["unit"] == UNIT_NAME and proxy["render_path"] == PROXY_PATH
    assert (proxy["listen_host"], proxy["listen_port"]) == ("127.0.0.1", 8080)
    assert proxy["upstream_url"] == "http://127.0.0.1:9080"
    assert proxy["health_url"] == "http://127.0.0.1:8080/proxy/health"


def test_seed_000_opencode_talks_to_the_proxy() -> None:
    opencode = json.loads(files(parse("t1200-laptop"))["clients/opencode/opencode.json"])
    assert opencode["provider"]["llamafleet"]["options"]["baseURL"] == "http://127.0.0.1:8080/v1"


def test_without_a_proxy_nothing_moves() -> None:
    host = parse_tweaked("rtx4090", {"sse_proxy": False})
    assert host.sse_proxy is None and PROXY_PATH not in files(host)
    got = manifest(host)
    assert got["sse_proxy"] is None
    for server in got["servers"]:
        assert (server["client_host"], server["client_port"]) == (server["host"], server["port"])


@pytest.mark.parametrize("host", ["rtx4090", "strix-halo", "rtx4060-laptop", "rtx3070"])
def test_the_proxy_is_on_by_default_in_front_of_the_first_chat_server(host: str) -> None:
    spec = parse(host)
    fronted = fronted_server(spec)
    assert spec.sse_proxy is not None and fronted is not None and fronted.role == "chat"
    assert PROXY_PATH in files(spec)
    assert manifest(spec)["sse_proxy"]["server"] == fronted.name
    assert bind(spec, fronted.name) == ("127.0.0.1", str(fronted.port + 1000))


def test_rtx3070_proxy_fronts_the_chat_server_not_the_autocomplete_one() -> None:
    host = parse("rtx3070")
    assert fronted_server(host).name == "chat"  # type: ignore[union-attr]
    assert bind(host, "autocomplete") == ("127.0.0.1", "8081")


@pytest.mark.parametrize("value", [None, True, {}])
def test_absent_empty_or_true_is_the_default_proxy_and_false_turns_it_off(value: object) -> None:
    on = parse_tweaked("demo", {"sse_proxy": value}, DEMO)
    assert on.sse_proxy is not None and plan_of(on).proxy is not None
    off = parse_tweaked("demo", {"sse_proxy": False}, DEMO)
    assert off.sse_proxy is None and plan_of(off).proxy is None and bind(off) == ("127.0.0.1", "8080")


def test_ollama_hosts_get_no_proxy_by_default() -> None:
    assert parse("rtx3070-ollama").sse_proxy is None


def test_proxy_fronts_the_named_server_on_its_chosen_port() -> None:
    host = parse_tweaked("t1200-laptop", {
        "servers": [
            {"name": "main", "model": "qwen2.5-3b", "ctx": 32768},  # OpenCode's server: the host's agent minimum
            {"name": "fim", "model": "qwen2.5-3b", "role": "autocomplete", "port": 8012, "ctx": 4096},
        ],
        "sse_proxy": {"server": "fim", "upstream_port": 18012, "keepalive": "drop", "split_open_brace": True,
                      "wait_timeout": 30},
    })
    assert bind(host, "main") == ("127.0.0.1", "8080")
    assert bind(host, "fim") == ("127.0.0.1", "18012")
    text = files(host)[PROXY_PATH]
    for part in ("--listen 127.0.0.1:8012", "--upstream http://127.0.0.1:18012", "--keepalive drop",
                 "--wait-timeout 30", "--split-open-brace", "After=llamafleet-fim.service"):
        assert part in text
    servers = {s["name"]: s for s in manifest(host)["servers"]}
    assert servers["main"]["client_port"] == servers["main"]["port"] == 8080
    assert (servers["fim"]["port"], servers["fim"]["client_port"]) == (18012, 8012)


def test_public_server_keeps_its_address_for_the_proxy_and_llama_server_goes_to_loopback() -> None:
    host = parse_tweaked("t1200-laptop", {
        "servers": [{"name": "main", "model": "qwen2.5-3b", "ctx": 32768, "host": "0.0.0.0",
                     "api_key_file": "/etc/llamafleet/key"}],
    })
    assert bind(host) == ("127.0.0.1", "9080")
    proxy = manifest(host)["sse_proxy"]
    assert proxy["listen_host"] == "0.0.0.0"
    assert proxy["health_url"] == "http://127.0.0.1:8080/proxy/health"  # asked on the host itself


def test_demo_host_is_proxied_by_default() -> None:
    host = parse("demo", DEMO)
    assert fronted_server(host) is not None and plan_of(host).proxy is not None
    assert bind(host) == ("127.0.0.1", "9080")


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"sse_proxy": {"server": "nope"}}, "llamafleet.sse_proxy.server", "no server named 'nope'"),
    ({"sse_proxy": {"wait_timeout": 0}}, "llamafleet.sse_proxy.wait_timeout", "greater than 0"),
    ({"sse_proxy": {"upstream_port": 8080}}, "llamafleet.sse_proxy.upstream_port", "used by server main"),
    ({"sse_proxy": {"colour": "red"}}, "llamafleet.sse_proxy.colour", "unknown key"),
    ({"servers": [{"name": "main", "model": "qwen2.5-3b", "ctx": 4096, "port": 65000}]},
     "llamafleet.sse_proxy.upstream_port", "above 65535"),
])
def test_bad_proxy_settings_name_host_and_field(change: dict, field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_tweaked("t1200-laptop", change)
    lines = [p.line("t1200-laptop") for p in err.value.problems]
    assert any(line.startswith(f"host t1200-laptop: {field}: ") and words in line for line in lines), lines
