"""The agent probe module's pure checks (roles/probe/library/llamafleet_agent_probe.py), without Ansible.

The answers and /props, /slots documents are the real llama-server b11434's, recorded by record_fixtures.py:
SmolLM2-135M (its own template, two slots), SmolLM2 with the demo's chatml-json-tools template, Gemma 3 270M.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from agent_upstream import AgentUpstream, written

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
MODULE_PATH = HERE.parents[2] / "roles" / "probe" / "library" / "llamafleet_agent_probe.py"


def load_module():
    spec = importlib.util.spec_from_file_location("llamafleet_agent_probe", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ap = load_module()


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def call(name: str, arguments: Any) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": name, "arguments": args}}]}}]}


# --- the agent probe against what the real small models answered ---


@pytest.mark.parametrize("name", ["smollm2-b11434-np2", "smollm2-chatml-json-tools-b11434", "gemma3-270m-b11434"])
def test_the_real_small_models_do_not_call_write_file_by_themselves(name: str) -> None:
    answer = fixture(f"{name}.agent.json")
    problem, got = ap.check_agent(answer, "local", 200)
    text = answer["choices"][0]["message"]["content"]
    assert got == "" and problem is not None
    assert problem.startswith("model local did not call write_file by itself with tool_choice auto (it answered "
                              f"text: {ap.quote_text(text.strip())}")
    assert problem.endswith("; OpenCode/pi/Continue/Claude Code will stall waiting for tool calls")
    assert "\n" not in problem
    assert ("cut off at agent_max_tokens 200" in problem) == (answer["choices"][0]["finish_reason"] == "length")


def test_a_correct_write_file_call_passes_and_says_what_it_got() -> None:
    problem, got = ap.check_agent(call("write_file", {"path": ap.AGENT_PATH, "content": ap.AGENT_CONTENT}), "m", 9)
    assert problem is None and got == f"write_file({ap.AGENT_PATH}, 4 lines exact)"
    problem, _ = ap.check_agent(call("write_file", {"path": ap.AGENT_PATH, "content": ap.AGENT_CONTENT + "\n"}), "m", 9)
    assert problem is None  # one trailing newline more is what editors write


def test_the_asked_content_has_lines_a_quote_a_tab_and_non_ascii() -> None:
    content = ap.AGENT_CONTENT
    assert content.count("\n") == 3 and '"' in content and "\t" in content
    assert any(len(c.encode()) == 2 for c in content) and any(len(c.encode()) == 3 for c in content)
    assert content in ap.AGENT_PROMPT and ap.AGENT_PATH in ap.AGENT_PROMPT


def test_double_escaped_content_fails_saying_agents_would_write_literal_backslash_n() -> None:
    assert ap.content_problem("a\\nb", "a\nb").startswith(
        "its content is double-escaped: literal \\n where newlines were asked, so agents would write literal \\n "
        "into files")
    problem, _ = ap.check_agent(call("write_file", {"path": ap.AGENT_PATH,
                                                    "content": written(ap.AGENT_CONTENT, "double-escaped")}), "m", 9)
    assert problem is not None and "double-escaped" in problem and "literal \\n" in problem
    only_tabs = ap.AGENT_CONTENT.replace("\t", "\\t")
    assert "literal \\t where tabs were asked" in ap.content_problem(only_tabs)
    only_quotes = ap.AGENT_CONTENT.replace('"', '\\"')
    assert 'literal \\" where double quotes were asked' in ap.content_problem(only_quotes)


def test_a_replacement_character_or_a_missing_character_fails() -> None:
    fffd = ap.content_problem(written(ap.AGENT_CONTENT, "fffd"))
    assert fffd is not None and fffd.startswith("its content holds U+FFFD (a broken UTF-8 character)")
    missing = ap.content_problem(ap.AGENT_CONTENT.replace("東", ""))
    assert missing is not None and missing.startswith("its content lacks '東'")
    no_tab = ap.content_problem(ap.AGENT_CONTENT.replace("\t", ""))
    assert no_tab is not None and "'\\t'" in no_tab
    changed = ap.content_problem(ap.AGENT_CONTENT.replace("naïve", "naive"))
    assert changed is not None and "lacks 'ï'" in changed
    swapped = ap.content_problem(ap.AGENT_CONTENT.replace("first line", "line first"))
    assert swapped == "its content differs from what was asked at character 0: expected 'first line\\nshe said \"hi\"\\n\\tinde…', got 'line first\\nshe said \"hi\"\\n\\tinde…'"


def test_wrong_tool_path_or_arguments_fail_in_one_line() -> None:
    path = ap.check_agent(call("write_file", {"path": "agent-probe.txt", "content": ap.AGENT_CONTENT}), "m", 9)[0]
    assert path == ("model m called write_file for path 'agent-probe.txt' instead of 'notes/agent-probe.txt': "
                    "agents would write the wrong file")
    bad_json = ap.check_agent(call("write_file", '{"path": "notes/agent-probe.txt", "content": "a\nb"'), "m", 9)[0]
    assert bad_json is not None and "arguments are not JSON" in bad_json and "\n" not in bad_json
    other = ap.check_agent(call("read_file", {"path": "x"}), "m", 9)[0]
    assert other == ("model m called 'read_file' instead of write_file with tool_choice auto; "
                     "OpenCode/pi/Continue/Claude Code would run the wrong tool")


def test_the_forced_probe_needs_a_get_weather_call_with_json_arguments() -> None:
    assert ap.check_forced(call("get_weather", {"city": "Oslo"})) == (None, 'get_weather({"city": "Oslo"})')
    assert "arguments are not JSON" in ap.check_forced(call("get_weather", "{city: Oslo}"))[0]
    text_only = ap.check_forced(fixture("gemma3-270m-b11434.agent.json"))[0]
    assert text_only.startswith("forced tool call: no tool call came back (text: 'You are a coding agent")


def test_the_chat_probe_needs_text() -> None:
    assert ap.check_chat({"choices": [{"message": {"content": " Hello! "}}]}) == (None, "Hello!")
    assert ap.check_chat({"choices": []})[0] == "chat: the answer has no text"


# --- the streamed agent probe: deltas reassembled as the AI SDK does ---


def sse(events: list[dict[str, Any]]) -> list[bytes]:
    return [b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\n" for e in events] + [b"data: [DONE]\n"]


@pytest.mark.parametrize("variant", ["correct", "double-escaped", "fffd", "text"])
def test_a_stream_reassembles_to_the_same_answer(variant: str) -> None:
    upstream = AgentUpstream(0, variant)
    body = ap.agent_body("m", 64)
    message, finish = upstream.message(body)
    events = upstream.events(message, finish)
    assert sum("tool_calls" in e["choices"][0]["delta"] for e in events) > 5 or variant == "text"
    rebuilt = ap.reassemble_stream(sse(events))
    assert ap.check_agent(rebuilt, "m", 64) == ap.check_agent({"choices": [{"message": message}]}, "m", 64)
    assert (ap.check_agent(rebuilt, "m", 64)[0] is None) == (variant == "correct")


def test_a_utf8_character_split_across_two_events_becomes_fffd_and_fails() -> None:
    """What the AI SDK does with a raw multi-byte character cut between events: each half becomes U+FFFD."""
    args = json.dumps({"path": ap.AGENT_PATH, "content": ap.AGENT_CONTENT}, ensure_ascii=False).encode()
    cut = args.index("東".encode()) + 1

    def event(piece: bytes) -> bytes:
        head = b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"'
        return head + piece.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"}}]}}]}\n'

    name = b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"write_file"}}]}}]}\n'
    rebuilt = ap.reassemble_stream([name, event(args[:cut]), event(args[cut:]), b"data: [DONE]\n"])
    problem, _ = ap.check_agent(rebuilt, "m", 9)
    assert problem is not None and "U+FFFD" in problem
    whole = ap.reassemble_stream([name, event(args[:cut - 1]), event(args[cut - 1:]), b"data: [DONE]\n"])
    assert ap.check_agent(whole, "m", 9)[0] is None


# --- /props and /slots against the plan ---

SMOLLM2_NP2 = {"agent_probe": "warn", "slots": 2, "build": 11434, "tools_template": False,
               "models": [{"name": "local", "n_ctx_slot": 2048, "alias": "local"}]}


def test_the_served_props_match_their_plan() -> None:
    props, slots = fixture("smollm2-b11434-np2.props.json"), fixture("smollm2-b11434-np2.slots.json")
    problems, served = ap.check_props(props, slots, SMOLLM2_NP2, SMOLLM2_NP2["models"][0])
    assert problems == []
    assert served == "n_ctx 2048 x 2 slots, alias local, b11434-unknown, no tools template"
    tools = fixture("smollm2-chatml-json-tools-b11434.props.json")
    plan = SMOLLM2_NP2 | {"slots": 1, "tools_template": True, "models": [{"name": "local", "n_ctx_slot": 4096,
                                                                          "alias": "local"}]}
    assert ap.check_props(tools, fixture("smollm2-chatml-json-tools-b11434.slots.json"), plan, plan["models"][0])[0] == []


def test_each_mismatch_names_the_planned_and_the_served_value() -> None:
    props, slots = fixture("smollm2-b11434-np2.props.json"), fixture("smollm2-b11434-np2.slots.json")
    plan = {"agent_probe": "warn", "slots": 1, "build": 11500, "tools_template": True,
            "models": [{"name": "local", "n_ctx_slot": 4096, "alias": "coder"}]}
    problems, _ = ap.check_props(props, slots, plan, plan["models"][0])
    assert problems == [
        "context per slot: planned 4096, served 2048 (/props default_generation_settings.n_ctx)",
        "slots: planned 1, served 2 (/props total_slots)",
        "alias: planned 'coder', served 'local' (/props model_alias)",
        "build: planned b11500, served 'b11434-unknown' (/props build_info)",
        "tools template: planned one that takes tools, served one without "
        "(/props chat_template_caps.supports_tool_calls false): tool calls cannot be parsed",
        "slots: planned 1, /slots lists 2",
        "context per slot: planned 4096, /slots reports 2048",
    ]
    line = ap.problem_line("h1", "main", problems)
    assert line.startswith("host h1: server main: context per slot: planned 4096, served 2048") and "\n" not in line


def test_an_unknown_context_is_not_compared_and_an_unpromised_tools_template_is_no_failure() -> None:
    props = fixture("smollm2-chatml-json-tools-b11434.props.json")
    plan = {"agent_probe": "off", "slots": 1, "build": 11434, "tools_template": False,
            "models": [{"name": "local", "n_ctx_slot": 0, "alias": "local"}]}
    assert ap.check_props(props, None, plan, plan["models"][0])[0] == []


def test_quote_text_is_one_line_and_shows_escapes() -> None:
    assert ap.quote_text('a\nb\t"c"\\n') == "'a\\nb\\t\"c\"\\\\n'"
    assert ap.quote_text("x" * 100, 10) == "'xxxxxxxxxx…'"
    assert ap.served_build({"build_info": "b11434-0c1e570"}) == 11434 and ap.served_build({}) is None
