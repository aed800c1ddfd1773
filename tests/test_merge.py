"""Merging llamafleet's client config fragments into a user's own files keeps the user's other settings."""

from __future__ import annotations

import json

import pytest
import yaml

from hostsupport import render

from generators.plan.clients import CLIENTS
from generators.merge import MergeError, merge, merge_text

USER_OPENCODE = {
    "$schema": "https://opencode.ai/config.json",
    "theme": "tokyonight",
    "model": "anthropic/claude-sonnet-4",
    "provider": {"anthropic": {"options": {"apiKey": "{env:ANTHROPIC_API_KEY}"}}},
    "tools": {"webfetch": True, "mymcp_*": False},
    "mcp": {"jira": {"type": "remote", "url": "https://example.invalid/mcp"}},
}


def fragment(host: str, name: str) -> str:
    return next(f.content for p, f in render(host).items() if p.startswith(f"clients/{name}/"))


def spec(name: str):
    return next(c for c in CLIENTS if c.name == name)


def test_merge_is_recursive_and_ours_wins_on_shared_keys() -> None:
    assert merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}, "c": 4}) == {"a": {"x": 1, "y": 3}, "b": 1, "c": 4}


def test_merge_does_not_change_its_arguments() -> None:
    base, ours = {"a": {"x": 1}}, {"a": {"y": 2}}
    merge(base, ours)
    assert base == {"a": {"x": 1}} and ours == {"a": {"y": 2}}


def test_lists_merge_by_identity_only_where_asked() -> None:
    base = {"models": [{"name": "mine", "v": 1}, {"name": "llamafleet chat", "v": 1}], "other": [1, 2]}
    ours = {"models": [{"name": "llamafleet chat", "v": 2}, {"name": "llamafleet autocomplete"}], "other": [3]}
    got = merge(base, ours, {"models": "name"})
    assert got["models"] == [
        {"name": "mine", "v": 1},
        {"name": "llamafleet chat", "v": 2},
        {"name": "llamafleet autocomplete"},
    ]
    assert got["other"] == [3]


def test_opencode_merge_keeps_the_users_providers_mcp_and_theme() -> None:
    merged = json.loads(merge_text(json.dumps(USER_OPENCODE), fragment("t1200-laptop", "opencode"), "json"))
    assert merged["theme"] == "tokyonight" and merged["mcp"] == USER_OPENCODE["mcp"]
    assert merged["provider"]["anthropic"] == USER_OPENCODE["provider"]["anthropic"]
    assert merged["provider"]["llamafleet"]["options"]["baseURL"] == "http://127.0.0.1:8080/v1"
    assert merged["model"] == "llamafleet/local"
    # the lite tool set is merged in; the user's own tool switches for other tools stay
    assert merged["tools"] == {"webfetch": False, "mymcp_*": False, "todowrite": False, "task": False, "skill": False}


def test_merging_twice_changes_nothing_the_second_time() -> None:
    once = merge_text(json.dumps(USER_OPENCODE), fragment("t1200-laptop", "opencode"), "json")
    assert merge_text(once, fragment("t1200-laptop", "opencode"), "json") == once


def test_continue_merge_keeps_the_users_models_name_and_rules() -> None:
    user = {
        "name": "My setup",
        "version": "0.3.0",
        "schema": "v1",
        "models": [{"name": "gpt", "provider": "openai", "model": "gpt-5", "roles": ["chat"]}],
        "rules": ["Be terse"],
    }
    c = spec("continue")
    merged = yaml.safe_load(
        merge_text(yaml.safe_dump(user), fragment("rtx3070", "continue"), "yaml", dict(c.list_keys), c.keep_user)
    )
    assert (merged["name"], merged["version"], merged["rules"]) == ("My setup", "0.3.0", ["Be terse"])
    assert [m["name"] for m in merged["models"]] == ["gpt", "llamafleet chat", "llamafleet autocomplete"]


def test_pi_merge_keeps_other_providers() -> None:
    user = {"providers": {"openrouter": {"baseUrl": "https://openrouter.ai/api/v1", "models": [{"id": "x"}]}}}
    c = spec("pi")
    merged = json.loads(merge_text(json.dumps(user), fragment("rtx4090", "pi"), "json", dict(c.list_keys)))
    assert set(merged["providers"]) == {"openrouter", "llamafleet"}
    assert merged["providers"]["openrouter"] == user["providers"]["openrouter"]


def test_claude_settings_merge_keeps_permissions_and_other_env() -> None:
    user = {"permissions": {"allow": ["Bash(git diff:*)"]}, "env": {"DISABLE_TELEMETRY": "1"}}
    merged = json.loads(merge_text(json.dumps(user), fragment("strix-halo", "claude_code"), "json"))
    assert merged["permissions"] == user["permissions"]
    assert merged["env"]["DISABLE_TELEMETRY"] == "1"
    assert merged["env"]["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8080"


@pytest.mark.parametrize("existing", [None, "", "  \n"])
def test_a_missing_or_empty_file_gets_the_fragment(existing: str | None) -> None:
    text = fragment("strix-halo", "claude_code")
    assert json.loads(merge_text(existing, text, "json")) == json.loads(text)


@pytest.mark.parametrize(("existing", "fmt"), [("{not json", "json"), ("[1, 2]", "json"), ("a: [", "yaml")])
def test_an_unreadable_user_file_is_never_overwritten(existing: str, fmt: str) -> None:
    with pytest.raises(MergeError):
        merge_text(existing, "{}" if fmt == "json" else "{}\n", fmt)
