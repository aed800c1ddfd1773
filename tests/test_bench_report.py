"""Bench records, report, choice and the tuned override (generators/bench.py, generators/tuned.py), from the
recorded llama-bench JSON of this machine (tests/bench/fixtures)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from benchsupport import cpu_hostvars, fixture_records, module_output
from fit_harness import SHAPES, write_model
from hostsupport import raw_vars, run_cli
from PIL import Image

from generators import bench
from generators.errors import SpecError
from generators.pipeline import check_declared, plan_hostvars, render_hostvars
from generators.tuned import apply_tuned, parse_tuned, read_tuned, tuned_path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("bench") / "tiny-llama.gguf", SHAPES["llama"])


def records_for(model: Path, **server: object) -> tuple[dict, list[dict]]:
    hostvars = cpu_hostvars(str(model), **server)
    plan, sweep = bench.plan_sweep("cpubox", hostvars, cores=2, budget_s=10**6)
    return hostvars, bench.records_from_results(plan, module_output(sweep.runs()))


def test_records_are_keyed_by_gpu_driver_build_and_quantization(tiny: Path) -> None:
    _, records = records_for(tiny)
    assert records, "the recorded JSON covers configurations of the sweep"
    for r in records:
        assert r["key"] == {"gpu": "cpu: AMD EPYC", "driver": None, "build": 11434, "quantization": "Q4_1"}
        assert (r["host"], r["version"], r["backend"], r["model"]) == ("cpubox", "b11434-cpu", "cpu", "smollm2")
        assert {(t["test"], t["n_depth"]) for t in r["tests"]} == {("pp", 0), ("tg", 0), ("pp", 256), ("tg", 256)}
    deployed = [r for r in records if r["deployed"]]
    assert len(deployed) == 1 and deployed[0]["flags"]["threads"] == 2


def test_generation_is_a_fraction_of_bandwidth_over_bytes_per_token(tiny: Path) -> None:
    _, records = records_for(tiny)
    r = records[0]
    tg0, tg256 = (next(t for t in r["tests"] if t["test"] == "tg" and t["n_depth"] == d) for d in (0, 256))
    assert tg0["kv_bytes"] == 0 and tg256["kv_bytes"] > 0  # the KV cache read at depth counts
    assert tg256["bytes_per_token"] == tg0["bytes_per_token"] + tg256["kv_bytes"]
    assert tg0["ceiling_ts"] == pytest.approx(10.0e9 / tg0["bytes_per_token"], rel=1e-3)
    assert tg0["fraction_of_ceiling"] == pytest.approx(tg0["avg_ts"] / tg0["ceiling_ts"], rel=1e-3)


def test_a_failed_run_is_kept_with_its_error(tiny: Path) -> None:
    hostvars = cpu_hostvars(str(tiny))
    plan, sweep = bench.plan_sweep("cpubox", hostvars, cores=2)
    run = sweep.runs()[0]
    out = bench.records_from_results(plan, {"results": [{**run, "ok": False, "error": "exit 1", "rc": 1}]})
    assert out[0]["ok"] is False and out[0]["error"] == "exit 1"
    assert bench.latest(out) == []


def test_records_are_appended_never_rewritten(tiny: Path, tmp_path: Path) -> None:
    _, records = records_for(tiny)
    path = bench.records_path(tmp_path, "cpubox")
    assert bench.append_records(path, records[:2]) == 2
    first = path.read_text()
    bench.append_records(path, records[2:])
    assert path.read_text().startswith(first)
    assert len(bench.read_records("cpubox", path)) == len(records)


def test_the_markdown_table_holds_the_recorded_numbers(tiny: Path) -> None:
    _, records = records_for(tiny)
    table = bench.markdown("cpubox", records)
    recorded = fixture_records()
    deployed = next(r for r in records if r["deployed"])
    row = next(line for line in table.splitlines() if "(deployed)" in line)
    pp0 = next(x["avg_ts"] for x in recorded if x["n_threads"] == 2 and x["n_ubatch"] == 512 and x["type_k"] == "f16"
               and x["type_v"] == "f16" and x["n_prompt"] > 0 and x["n_depth"] == 0)
    assert f"{pp0:.2f}" in row.split("|")[4]
    assert deployed["label"] in row
    assert len([line for line in table.splitlines() if line.startswith("| b11434")]) == len(records)


def test_the_chart_holds_the_series(tiny: Path, tmp_path: Path) -> None:
    _, records = records_for(tiny)
    png = bench.chart("cpubox", records, tmp_path / "cpubox.png")
    image = Image.open(png)
    assert image.format == "PNG"
    data = json.loads(image.text["llamafleet-series"])
    assert data == json.loads(json.dumps(bench.series(records)))
    assert {s["label"].split(" ", 2)[2] for s in data["series"]} == {r["label"] for r in records}


def test_the_choice_is_the_fastest_and_says_why(tiny: Path) -> None:
    hostvars, records = records_for(tiny)
    (choice,) = bench.choose("cpubox", hostvars, records)
    deployed = next(r for r in records if r["deployed"])
    best = max((r for r in records if not r["deployed"]), key=lambda r: bench.score(r, deployed, 256) or 0)
    assert choice.winner is not None and choice.winner["label"] == best["label"]
    assert "beats the deployed" in choice.why and f"{bench.speed(best, 'tg', 256):.2f}" in choice.why
    assert choice.fields and set(choice.fields) <= {"batch", "ubatch", "flash_attn", "cache_type_k", "cache_type_v",
                                                    "threads"}
    text = bench.tuned_text("cpubox", [choice])
    assert text is not None and parse_tuned("cpubox", "t.yml", yaml.safe_load(text)).file.servers["main"]


def test_nothing_is_chosen_when_no_variant_is_clearly_faster(tiny: Path) -> None:
    hostvars, records = records_for(tiny)
    (choice,) = bench.choose("cpubox", hostvars, records, min_gain=1000.0)
    assert choice.winner is None and choice.fields == {} and "stays" in choice.why
    assert bench.tuned_text("cpubox", [choice]) is None


def unit_argv(rendered) -> str:
    return next(f.content for f in rendered.files if f.path == "systemd/user/llamafleet-main.service")


def test_a_tuned_file_changes_the_rendered_flags(tiny: Path) -> None:
    hostvars = cpu_hostvars(str(tiny))
    tuned = parse_tuned("cpubox", "inv/tuned/cpubox.yml",
                        {"host": "cpubox", "servers": {"main": {"ubatch": 256, "threads": 1, "cache_type_k": "q8_0"}}})
    before, after = unit_argv(render_hostvars("cpubox", hostvars)), unit_argv(render_hostvars("cpubox", hostvars, tuned=tuned))
    assert "--ubatch-size 256" not in before and "--ubatch-size 256" in after
    assert "--threads 1" in after and "--cache-type-k q8_0" in after
    assert apply_tuned("cpubox", hostvars, None) is hostvars


def test_a_tuned_file_overrides_the_chosen_preset_too(tiny: Path) -> None:
    hostvars = cpu_hostvars(str(tiny), preset="fast", presets={"fast": {"ubatch": 128}})
    tuned = parse_tuned("cpubox", "t.yml", {"host": "cpubox", "servers": {"main": {"ubatch": 256}}})
    assert "--ubatch-size 256" in unit_argv(render_hostvars("cpubox", hostvars, tuned=tuned))


@pytest.mark.parametrize(("content", "field", "words"), [
    ({"host": "cpubox", "servers": {"main": {"ubatch": 8}}}, "servers.main.ubatch", "greater than or equal to 32"),
    ({"host": "cpubox", "servers": {"main": {"mlock": True}}}, "servers.main.mlock", "unknown key"),
    ({"host": "cpubox", "servers": {"main": {"cache_type_k": "q9"}}}, "servers.main.cache_type_k", "'f32'"),
    ({"host": "other", "servers": {}}, "host", "another host's tuned file"),
    ({"host": "cpubox", "servers": {"nope": {"ubatch": 256}}}, "servers.nope", "no server 'nope'"),
])
def test_a_bad_tuned_file_is_one_line_naming_file_host_and_field(tiny: Path, tmp_path: Path, content, field,
                                                                words) -> None:
    path = tuned_path(tmp_path, "cpubox")
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(SpecError) as caught:
        render_hostvars("cpubox", cpu_hostvars(str(tiny)), tuned=read_tuned("cpubox", path))
    (line,) = str(caught.value).splitlines()
    assert line.startswith(f"host cpubox: {path}: {field}: ") and words in line


def test_a_tuned_file_that_is_not_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "tuned.yml"
    path.write_text("servers: [unclosed\n")
    with pytest.raises(SpecError) as caught:
        read_tuned("cpubox", path)
    (line,) = str(caught.value).splitlines()
    assert line.startswith(f"host cpubox: {path}: ")


def test_a_tuned_flag_the_planner_refuses_fails_the_render_naming_the_tuned_file() -> None:
    data = copy.deepcopy(raw_vars("t1200-laptop"))
    data["llamafleet"]["servers"][0]["ctx"] = 49152
    render_hostvars("t1200-laptop", data)  # q8_0 KV fits
    tuned = parse_tuned("t1200-laptop", "example/tuned/t1200-laptop.yml",
                        {"host": "t1200-laptop", "servers": {"main": {"cache_type_k": "f16", "cache_type_v": "f16"}}})
    with pytest.raises(SpecError) as caught:
        render_hostvars("t1200-laptop", data, tuned=tuned)
    (line,) = str(caught.value).splitlines()
    assert "llamafleet.servers[0].ctx" in line and "example/tuned/t1200-laptop.yml" in line
    with pytest.raises(SpecError):
        check_declared("t1200-laptop", data, tuned)


def write_inventory(root: Path, model: Path) -> Path:
    (root / "host_vars").mkdir(parents=True)
    (root / "hosts.yml").write_text("all:\n  hosts:\n    cpubox: {ansible_connection: local}\n")
    (root / "host_vars" / "cpubox.yml").write_text(yaml.safe_dump(cpu_hostvars(str(model))))
    return root


def test_bench_report_cli_writes_table_chart_and_tuned_file_only_when_asked(tiny: Path, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv", tiny)
    _, records = records_for(tiny)
    bench.append_records(bench.records_path(inv, "cpubox"), records)
    done = run_cli("bench-report", "--inventory", str(inv), "--host", "cpubox")
    assert done.returncode == 0, done.stderr
    assert (inv / "bench" / "cpubox.md").read_text() in done.stdout
    assert Image.open(inv / "bench" / "cpubox.png").text["llamafleet-series"]
    assert not tuned_path(inv, "cpubox").exists()
    before = run_cli("render", "--inventory", str(inv), "--host", "cpubox", "--out", str(tmp_path / "r1"))
    assert before.returncode == 0, before.stderr
    done = run_cli("bench-report", "--inventory", str(inv), "--host", "cpubox", "--write-tuned")
    assert done.returncode == 0 and "tuned: " in done.stdout
    tuned = read_tuned("cpubox", tuned_path(inv, "cpubox"))
    assert tuned is not None and tuned.file.servers["main"].threads == 1  # the recorded one-thread runs won
    run_cli("render", "--inventory", str(inv), "--host", "cpubox", "--out", str(tmp_path / "r2"))
    unit = (tmp_path / "r2" / "systemd/user/llamafleet-main.service").read_text()
    assert "--threads 1" in unit
    assert "--threads 1" not in (tmp_path / "r1" / "systemd/user/llamafleet-main.service").read_text()


def test_bench_report_without_records_is_one_line(tiny: Path, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv", tiny)
    done = run_cli("bench-report", "--inventory", str(inv), "--host", "cpubox")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("host cpubox: ") and "playbooks/bench.yml" in line


def upgraded(records: list[dict], factor: float, version: str = "b11500-cpu") -> list[dict]:
    """The same records as if measured on another build, every speed times ``factor``."""
    out = []
    for r in copy.deepcopy(bench.latest(records)):
        r["version"] = version
        for t in r["tests"]:
            t["avg_ts"] *= factor
        out.append(r)
    return out


def test_the_gate_reruns_the_running_builds_deployed_record_on_the_new_build(tiny: Path) -> None:
    hostvars, records = records_for(tiny)
    data = copy.deepcopy(hostvars)
    data["llamafleet"]["llamacpp"]["build"] = 11500
    plan = plan_hostvars("cpubox", data)
    (run,) = bench.gate_runs("cpubox", records, "b11434-cpu", plan)
    deployed = next(r for r in records if r["deployed"])
    assert run["args"] == deployed["args"] and run["binary"].endswith("/b11500-cpu/bin/llama-bench")
    assert run["version"] == "b11500-cpu" and run["deployed"]
    with pytest.raises(SpecError) as caught:
        bench.gate_runs("cpubox", records, "b11000-cpu", plan)
    (line,) = str(caught.value).splitlines()
    assert "no stored bench record of b11000-cpu" in line and "playbooks/bench.yml" in line


@pytest.mark.parametrize(("factor", "passes"), [(1.0, True), (0.95, True), (0.85, False), (1.3, True)])
def test_the_gate_refuses_a_regression_beyond_the_threshold(tiny: Path, factor: float, passes: bool) -> None:
    _, records = records_for(tiny)
    new = [r for r in upgraded(records, factor) if r["deployed"]]
    ok, lines = bench.gate(records, new, "b11434-cpu")
    assert ok is passes
    assert len(lines) == 4  # prefill and generation at both depths
    assert all(("REGRESSION" in line) is (not passes) for line in lines)
    assert f"({100 * (factor - 1):+.1f} %)" in lines[0]


def test_the_gate_fails_a_failed_run_and_a_missing_baseline(tiny: Path) -> None:
    _, records = records_for(tiny)
    (new,) = [r for r in upgraded(records, 1.0) if r["deployed"]]
    assert bench.gate(records, [{**new, "ok": False, "error": "exit 134"}], "b11434-cpu") == (
        False, ["main: the gate's run on b11500-cpu failed (exit 134)"])
    ok, lines = bench.gate(records, [new], "b11000-cpu")
    assert not ok and "no record of b11000-cpu" in lines[0]
