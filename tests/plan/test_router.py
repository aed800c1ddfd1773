"""``serve: router``: which models one router serves, what each one's preset says, how many stay loaded, and every
refusal as one line naming host and field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hostsupport import raw_vars

from generators import data
from generators.errors import SpecError
from generators.pipeline import plan_hostvars, render_hostvars
from generators.plan.fit.router import capacity, model_plans
from generators.plan.router import ini_options, router_since, shared_options


def router_vars(host: str, **changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(raw_vars(host))
    spec["llamafleet"]["serve"] = "router"
    spec["llamafleet"].update(changes)
    return spec


def seed002() -> dict[str, Any]:
    """rtx3070 (seed 002) as one router: the FIM server gives up its own port."""
    spec = router_vars("rtx3070")
    del spec["llamafleet"]["servers"][0]["port"]
    return spec


def problems(host: str, spec: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as exc:
        render_hostvars(host, spec)
    lines = str(exc.value).splitlines()
    assert all(line.startswith(f"host {host}: llamafleet.") for line in lines), lines
    return lines


def test_seed_003s_four_presets_are_four_models_of_one_router() -> None:
    plan = plan_hostvars("strix-halo", router_vars("strix-halo"))
    assert len(plan.servers) == 1
    router = plan.router
    assert router is not None and router.sized
    assert [m.id for m in router.models] == ["coder-qwen", "qwen3-2507", "gpt-oss-20b", "qwen3-next-80b"]
    assert router.startup == ("coder-qwen",)  # the chosen preset
    unit = plan.servers[0]
    assert unit.argv[1:] == ("--host", "127.0.0.1", "--port", "9080", "--models-preset",  # behind the proxy
                             "/var/lib/llamafleet/presets/llamafleet-main.ini", "--models-max",
                             str(router.models_max), "--models-autoload")
    assert [m.id for m in unit.served] == [m.id for m in router.models]  # what clients and probes list
    # shared by all four: the server's own settings and the APU's --load-mode none; each has only its model
    assert dict(router.shared) == {"ctx-size": "65536", "parallel": "1", "n-gpu-layers": "99", "cache-type-k": "f16",
                                   "cache-type-v": "f16", "flash-attn": "on", "jinja": "true", "load-mode": "none",
                                   "metrics": "true"}
    assert all([k for k, _ in m.options] == ["model"] for m in router.models)
    assert unit.environment["RADV_PERFTEST"] == "bfloat16"  # the GPU's quirk reaches every child (inherited env)


def test_models_max_is_the_largest_count_the_planner_fits_together() -> None:
    plan = plan_hostvars("strix-halo", router_vars("strix-halo"))
    router = plan.router
    assert router is not None
    plans, warnings = model_plans(plan, router)
    assert warnings == [] and len(plans) == 4
    k = router.models_max
    assert k == capacity(plans)
    gpu = sorted((p.used("gpu") for p in plans), reverse=True)
    budget = plans[0].available("gpu") - 256 * 2**20
    assert sum(gpu[:k]) <= budget < sum(gpu[: k + 1])  # the k biggest fit together, one more does not
    assert 1 <= k < 4


def test_a_pinned_models_max_below_the_planners_is_kept_above_it_refused() -> None:
    plan = plan_hostvars("strix-halo", router_vars("strix-halo", router={"models_max": 1}))
    assert plan.router is not None and plan.router.models_max == 1
    assert "--models-max" in plan.servers[0].argv and plan.servers[0].argv[-2] == "1"
    fits = plan_hostvars("strix-halo", router_vars("strix-halo")).router.models_max  # type: ignore[union-attr]
    lines = problems("strix-halo", router_vars("strix-halo", router={"models_max": 4}))
    assert lines == [f"host strix-halo: llamafleet.router.models_max: 4 models do not fit together here: at most "
                     f"{fits} (the memory planner's sum of the biggest)"]


def test_seed_002s_fim_and_chat_pair_is_one_router_with_both_roles() -> None:
    rendered = render_hostvars("rtx3070", seed002())
    router = rendered.plan.router
    assert router is not None
    assert [m.id for m in router.models] == ["qwen2.5-coder-14b", "qwen2.5-coder-7b"]  # the chat server's first
    by_id = {m.id: dict(m.options) for m in router.models}
    assert by_id["qwen2.5-coder-14b"]["n-gpu-layers"] == "5" and by_id["qwen2.5-coder-7b"]["n-gpu-layers"] == "99"
    assert by_id["qwen2.5-coder-7b"]["ctx-size"] == "4096"
    # an 8 GB card: with the 14B at its planned 5 layers (KV in RAM) both stay loaded together, as two units do
    assert router.models_max == 2 and router.startup == ("qwen2.5-coder-14b", "qwen2.5-coder-7b")
    continue_cfg = next(f.content for f in rendered.files if f.path == "clients/continue/config.yaml")
    assert "model: qwen2.5-coder-7b\n  apiBase: http://127.0.0.1:8080\n" in continue_cfg  # FIM: same router
    manifest = rendered.manifest["servers"][0]
    assert manifest["router"]["models"][1] == {
        "name": "qwen2.5-coder-7b", "model": "qwen2.5-coder-7b", "role": "autocomplete", "alias": "qwen2.5-coder-7b",
        "n_ctx_slot": 4096, "model_path": "/home/dev/models/qwen2.5-coder-7b-instruct-q4_k_m.gguf",
        "load_on_start": True}
    assert {"--models-preset", "--ctx-size", "--n-gpu-layers", "--model"} <= set(manifest["flags"])
    assert "--load-on-startup" not in manifest["flags"]  # preset-only: not an option --help lists


def test_agent_configs_list_every_chat_model_of_the_router() -> None:
    spec = router_vars("strix-halo")
    spec["llamafleet"]["clients"] = {"opencode": {"tools": "lite"}, "pi": {}}
    files = {f.path: f.content for f in render_hostvars("strix-halo", spec).files}
    for model in ("coder-qwen", "qwen3-2507", "gpt-oss-20b", "qwen3-next-80b"):
        assert f'"{model}": {{' in files["clients/opencode/opencode.json"], model
        assert f'"id": "{model}"' in files["clients/pi/models.json"], model
    assert '"model": "llamafleet/coder-qwen"' in files["clients/opencode/opencode.json"]


def test_a_server_keeping_its_own_address_is_refused() -> None:
    assert problems("rtx3070", router_vars("rtx3070")) == [
        "host rtx3070: llamafleet.servers[0].port: serve: router serves every model at servers[1] (chat)'s port "
        "(8080): drop port here"]


def test_router_mode_on_a_build_without_it_names_the_build_it_needs() -> None:
    spec = router_vars("strix-halo")
    spec["llamafleet"]["llamacpp"]["build"] = router_since() - 1
    spec["llamafleet"]["llamacpp"]["source"]["git"]["ref"] = f"b{router_since() - 1}"
    lines = problems("strix-halo", spec)
    assert (f"host strix-halo: llamafleet.serve: router mode (--models-preset, --models-max, --models-autoload with "
            f"a [*] section and load-on-startup) needs llama.cpp b{router_since()} or newer; this host runs "
            f"b{router_since() - 1}") in lines
    assert router_since() == data.flag_renames()["features"]["router"]["since"] == 9093


@pytest.mark.parametrize(("change", "expected"), [
    (lambda s: s["servers"][0]["presets"]["coder"].update(alias="coder:q4"),
     "llamafleet.servers[0].presets.coder.alias: 'coder:q4' names a router model: letters, digits and . _ - only "
     "(no ':')"),
    (lambda s: s["servers"][0]["presets"]["gpt-oss"].update(alias="coder-qwen"),
     "llamafleet.servers[0].presets.gpt-oss.alias: router model 'coder-qwen' is also "
     "llamafleet.servers[0].presets.coder.alias's: give each an alias"),
    (lambda s: s["servers"][0]["presets"]["gpt-oss"].update(model="no-such"),
     "llamafleet.servers[0].presets.gpt-oss.model: no model named 'no-such' (models: qwen3-coder-30b, "
     "qwen3-30b-2507, gpt-oss-20b, qwen3-next-80b)"),
    (lambda s: s["servers"][0]["presets"]["gpt-oss"].update(env={"RADV_PERFTEST": "nogttspill"}),
     "llamafleet.servers[0].env: RADV_PERFTEST=nogttspill differs"),
    (lambda s: s.update(router={"models_max": 5}),
     "llamafleet.router.models_max: 5 is more than the 4 models the router serves"),
    (lambda s: s.update(serve="units", router={"models_max": 2}), "llamafleet.router: only with serve: router"),
])
def test_router_refusals_are_one_line_naming_the_field(change: Any, expected: str) -> None:
    spec = router_vars("strix-halo")
    if "RADV" in str(expected):
        spec["llamafleet"]["servers"][0]["env"] = {"RADV_PERFTEST": "bfloat16"}
    change(spec["llamafleet"])
    lines = problems("strix-halo", spec)
    assert any(line.startswith(f"host strix-halo: {expected}") for line in lines), lines


def test_the_proxy_must_front_the_router() -> None:
    spec = seed002()
    spec["llamafleet"]["sse_proxy"] = {"server": "autocomplete"}
    assert "host rtx3070: llamafleet.sse_proxy.server: serve: router: the proxy fronts the router, server 'chat': " \
           "name it here" in problems("rtx3070", spec)
    spec["llamafleet"]["sse_proxy"] = {"server": "chat"}
    plan = plan_hostvars("rtx3070", spec)
    assert plan.servers[0].argv[1:5] == ("--host", "127.0.0.1", "--port", "9080")  # behind the proxy


def test_ini_options_are_the_command_line_less_what_the_router_owns() -> None:
    argv = ("/bin/llama-server", "--model", "/m.gguf", "--alias", "a", "--host", "0.0.0.0", "--port", "1",
            "--ctx-size", "0", "--jinja", "--api-key-file", "/k", "--no-kv-offload", "--fit", "off")
    assert ini_options(argv) == [("model", "/m.gguf"), ("ctx-size", "0"), ("jinja", "true"),
                                 ("no-kv-offload", "true"), ("fit", "off")]
    assert shared_options([[("model", "/a"), ("jinja", "true"), ("c", "1")],
                           [("model", "/a"), ("jinja", "true"), ("c", "2")]]) == [("jinja", "true")]
    assert shared_options([[("jinja", "true")]]) == []  # one model: everything stays in its own section


def test_the_probe_contract_lists_every_model_of_a_router_and_the_one_of_a_unit() -> None:
    """The manifest's probe block: a router's every model under its id, each with its own context per slot and
    slots (as planned alone); a unit's one model."""
    router = render_hostvars("rtx3070", seed002()).manifest["servers"][0]["probe"]["models"]
    assert router == [{"name": "qwen2.5-coder-14b", "n_ctx_slot": 65536, "alias": "qwen2.5-coder-14b", "slots": 1},
                      {"name": "qwen2.5-coder-7b", "n_ctx_slot": 4096, "alias": "qwen2.5-coder-7b", "slots": 1}]
    units = render_hostvars("rtx3070", raw_vars("rtx3070")).manifest["servers"]
    assert [s["probe"]["models"] for s in units] == [
        [{"name": "qwen2.5-coder-7b", "n_ctx_slot": 4096, "alias": "qwen2.5-coder-7b", "slots": 1}],
        [{"name": "qwen2.5-coder-14b", "n_ctx_slot": 65536, "alias": "qwen2.5-coder-14b", "slots": 1}]]
