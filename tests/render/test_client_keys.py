"""A server with an api_key_file: every client config names the key by reference (never the literal), the
manifest tells the role which key to copy where, and the redacted view ``--check --diff`` prints hides secrets."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from hostsupport import raw_vars

from generators.merge import REDACTED, MergeError, changes, merge_text, parse, redact
from generators.pipeline import plan_hostvars, render_plan

KEYS = {"chat": "/etc/llamafleet/chat.key", "autocomplete": "/etc/llamafleet/fim.key"}


def keyed(host: str, keys: dict[str, str], clients: dict[str, Any] | None = None) -> tuple[dict[str, str], dict]:
    """Render ``host`` with ``api_key_file`` set on the named servers: (files by path, manifest)."""
    data = copy.deepcopy(raw_vars(host))
    for server in data["llamafleet"]["servers"]:
        if server.get("name", "main") in keys:
            server["api_key_file"] = keys[server.get("name", "main")]
    if clients is not None:
        data["llamafleet"]["clients"] = clients
    files, manifest = render_plan(plan_hostvars(host, data))
    return {f.path: f.content for f in files}, manifest


ALL = {"opencode": {"tools": "lite"}, "pi": {}, "continue": {}, "claude_code": {}}


def client(files: dict[str, str], name: str) -> dict[str, Any]:
    path, text = next((p, t) for p, t in files.items() if p.startswith(f"clients/{name}/"))
    return json.loads(text) if path.endswith(".json") else yaml.safe_load(text)


def test_every_client_references_the_users_copy_of_the_key() -> None:
    files, manifest = keyed("rtx3070", KEYS, ALL)
    chat_copy, fim_copy = "/home/dev/.config/llamafleet/keys/chat.key", "/home/dev/.config/llamafleet/keys/autocomplete.key"
    assert manifest["clients"]["keys"] == [
        {"server": "chat", "source": KEYS["chat"], "dest": chat_copy, "env": "LLAMAFLEET_CHAT_API_KEY"},
        {"server": "autocomplete", "source": KEYS["autocomplete"], "dest": fim_copy,
         "env": "LLAMAFLEET_AUTOCOMPLETE_API_KEY"},
    ]
    assert manifest["clients"]["continue_env"] == "/home/dev/.continue/.env"
    assert client(files, "opencode")["provider"]["llamafleet"]["options"]["apiKey"] == "{file:" + chat_copy + "}"
    assert client(files, "pi")["providers"]["llamafleet"]["apiKey"] == "!cat " + chat_copy
    models = {m["name"]: m for m in client(files, "continue")["models"]}
    assert models["llamafleet chat"]["apiKey"] == "${{ secrets.LLAMAFLEET_CHAT_API_KEY }}"
    assert models["llamafleet autocomplete"]["apiKey"] == "${{ secrets.LLAMAFLEET_AUTOCOMPLETE_API_KEY }}"
    claude = client(files, "claude_code")
    assert claude["apiKeyHelper"] == "cat " + chat_copy
    assert claude["env"]["ANTHROPIC_AUTH_TOKEN"] is None  # the merge removes it: it would win over the helper
    assert not any("sk-local" in text for path, text in files.items() if path.startswith("clients/"))


def test_servers_without_a_key_keep_the_placeholder_and_the_manifest_as_it_was() -> None:
    files, manifest = keyed("rtx3070", {"autocomplete": KEYS["autocomplete"]}, ALL)
    assert client(files, "opencode")["provider"]["llamafleet"]["options"]["apiKey"] == "sk-local"
    assert [k["server"] for k in manifest["clients"]["keys"]] == ["autocomplete"]
    _, plain = keyed("rtx3070", {}, ALL)
    assert "keys" not in plain["clients"] and "continue_env" not in plain["clients"]


def test_continue_env_only_with_continue() -> None:
    _, manifest = keyed("rtx3070", KEYS, {"opencode": {"tools": "lite"}})
    assert manifest["clients"]["continue_env"] is None and len(manifest["clients"]["keys"]) == 1


def test_claude_code_merge_drops_the_old_placeholder_token_and_keeps_the_users_env() -> None:
    files, _ = keyed("rtx3070", KEYS, ALL)
    fragment = next(t for p, t in files.items() if p.startswith("clients/claude_code/"))
    user = json.dumps({"env": {"ANTHROPIC_AUTH_TOKEN": "sk-local", "HTTPS_PROXY": "http://proxy:3128"}})
    merged = json.loads(merge_text(user, fragment, "json"))
    assert "ANTHROPIC_AUTH_TOKEN" not in merged["env"] and merged["env"]["HTTPS_PROXY"] == "http://proxy:3128"
    assert merged["apiKeyHelper"].startswith("cat ")
    assert "null" not in merge_text(None, fragment, "json")


def test_redact_hides_every_value_under_a_secret_looking_key() -> None:
    data = {"provider": {"openai": {"options": {"apiKey": "sk-LEAK", "baseURL": "https://x"}}},
            "env": {"GH_TOKEN": "ghp_LEAK", "DB_PASSWORD": {"nested": "LEAK"}, "PATH": "/bin"},
            "list": [{"client_secret": "LEAK", "name": "n"}], "plain": "kept"}
    out = redact(data)
    assert "LEAK" not in json.dumps(out)
    assert out["provider"]["openai"]["options"] == {"apiKey": REDACTED, "baseURL": "https://x"}
    assert out["env"]["PATH"] == "/bin" and out["plain"] == "kept" and out["list"][0]["name"] == "n"
    assert data["env"]["GH_TOKEN"] == "ghp_LEAK"  # a new object: the input is unchanged


def test_changes_names_the_keys_and_shows_only_our_part_redacted() -> None:
    files, _ = keyed("rtx3070", KEYS, ALL)
    fragment = next(t for p, t in files.items() if p.startswith("clients/opencode/"))
    user = json.dumps({"theme": "x", "provider": {"openai": {"options": {"apiKey": "sk-USER-LEAK"}}}})
    out = changes(user, fragment, "json")
    assert out["changed"] == ["provider"] and "model" in out["added"] and out["removed"] == []
    assert "sk-USER-LEAK" not in json.dumps(out) and "openai" not in out["llamafleet"]["provider"]
    assert out["llamafleet"]["provider"]["llamafleet"]["options"]["apiKey"] == REDACTED
    assert out["llamafleet"]["provider"]["llamafleet"]["options"]["baseURL"].startswith("http://")
    assert changes(merge_text(user, fragment, "json"), fragment, "json")["changed"] == []


@pytest.mark.parametrize(("fmt", "text"), [("yaml", "models:\n  - apiKey: sk-LEAK-1\n    [oops"),
                                           ("json", '{"apiKey": "sk-LEAK-1",, }')])
def test_an_unreadable_file_is_one_line_that_never_quotes_it(fmt: str, text: str) -> None:
    with pytest.raises(MergeError) as err:
        parse(text, fmt, "/home/u/f")
    message = str(err.value)
    assert "\n" not in message and "LEAK" not in message and message.startswith(f"/home/u/f is not valid {fmt}: ")
