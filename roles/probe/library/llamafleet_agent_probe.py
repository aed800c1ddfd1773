#!/usr/bin/python
"""Ansible module: probe one llama-server the way agents use it, and compare what it serves with the plan.

A host program of the probe role (``roles/probe/library``): it runs on the host with the standard library and
Ansible's module_utils only (never the controller package ``generators``), and speaks HTTP through
``ansible.module_utils.urls.fetch_url``, to the server's ``base_url`` (the SSE-repair proxy's when it fronts the
server: the endpoint agents use). A server with an ``api_key_file`` gets its key, read here on the host, as a
Bearer token; the key is never a parameter, never returned, and masked from every message.

For each model of the server's manifest ``probe.models`` (one for a normal server, every model of a router):

1. chat: a plain chat completion must come back with non-empty text;
2. forced tool call: ``tool_choice: required`` with a get_weather tool must come back as a structured call of
   get_weather whose arguments parse as JSON (llama-server constrains the output: this proves the template and
   parser, not the model);
3. agent: what OpenCode, pi, Continue and Claude Code do. ``tool_choice: auto``, a coding agent's system prompt
   and a request that needs a write_file(path, content) tool: the model must call it by its own choice, with JSON
   arguments, the path exactly and the content exactly as asked (several lines, a double quote, a tab and
   non-ASCII characters). A double-escaped content (literal ``\\n`` where newlines were asked), a U+FFFD, a
   missing character: each fails with what agents would write. With ``agent_stream`` the same request is also
   streamed and its deltas reassembled the way the AI SDK does (tool-call arguments concatenated as strings, each
   event decoded on its own);
4. served = planned: ``/props`` and ``/slots`` (``?model=`` names the model, which a router needs and a normal
   server ignores) against the plan: the context of each slot (``/slots[].n_ctx`` and
   ``default_generation_settings.n_ctx``), the slots (``total_slots``, the /slots list), the alias
   (``model_alias``), the build (``build_info`` ``b<N>-<commit>``) and the template's tool support
   (``chat_template_caps.supports_tool_calls``; a tools template the plan did not promise is no failure).

Chat, forced-call and /props failures fail the module. The agent probe follows ``probe.agent_probe``: ``strict``
fails, ``warn`` returns the problem as a warning naming what agents will see, ``off`` does not send it. Every
message is one line, ``host H: server S: ...``. In check mode nothing is sent (the result says it was skipped).

Outside Ansible (tests, by hand), like any module: ``python3 llamafleet_agent_probe.py ARGS.json`` with
``{"ANSIBLE_MODULE_ARGS": {"host": ..., "server": {<a manifest server entry>}}}``.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import fetch_url

DOCUMENTATION = r"""
module: llamafleet_agent_probe
short_description: Probe a llama-server as agents use it (chat, forced and chosen tool calls) and check /props
description:
  - Sends a chat completion, a forced tool call and an agent-shaped request (tool_choice auto, a write_file tool,
    the written content checked exactly) to each model of a server, through its base_url.
  - Compares /props and /slots with the server's planned probe block (context per slot, slots, alias, build,
    tools template).
  - In check mode, sends nothing.
options:
  host: {type: str, required: true, description: The inventory host name, for messages.}
  server: {type: dict, required: true, description: The server's manifest entry (name, base_url, api_key_file, probe).}
  prompt: {type: str, default: Say hello in one short sentence., description: The chat probe's prompt.}
  max_tokens: {type: int, default: 48, description: The most tokens the chat probe may generate.}
  tool_prompt:
    type: str
    default: Call get_weather for Oslo. Reply with JSON only.
    description: The forced probe's prompt.
  tool_max_tokens: {type: int, default: 300, description: The most tokens the forced tool probe may generate.}
  agent_max_tokens: {type: int, default: 2048, description: The most tokens the agent probe may generate.}
  agent_stream: {type: bool, default: true, description: Also stream the agent request and check the reassembled call.}
  timeout: {type: int, default: 300, description: Seconds each request may take.}
attributes:
  check_mode: {support: full}
"""

FORCED_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

# The agent probe: what a coding agent sends (a system prompt, a tool, tool_choice auto) and what it must get back.
AGENT_TOOL = {
    "type": "function",
    "function": {
        "name": "write_file",
        "description": "Write a text file in the project (created, or replaced with the given content).",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "The file's path, relative to the project root."},
                "content": {"type": "string", "description": "The file's whole content."},
            },
            "required": ["path", "content"],
        },
    },
}
AGENT_SYSTEM = (
    "You are a coding agent working in the user's project. You act only through the tools you are given: to create "
    "or change a file, call write_file with its path and its whole content. Never paste file contents into your "
    "reply; after the tool call, say in one sentence what you did."
)
AGENT_PATH = "notes/agent-probe.txt"
# Four lines: a double quote, a tab, non-ASCII characters of two and three UTF-8 bytes; no trailing newline.
AGENT_CONTENT = 'first line\nshe said "hi"\n\tindented with a tab\ncafé, naïve, 東京'
AGENT_PROMPT = (
    f"Create the file {AGENT_PATH}. Its content is exactly the 4 lines between the markers <<< and >>> "
    "(the third line starts with one tab character; keep every character as written, and no trailing newline):\n"
    f"<<<\n{AGENT_CONTENT}\n>>>"
)
CLIENTS = "OpenCode/pi/Continue/Claude Code"
REPLACEMENT = "\ufffd"


# --- pure checks (unit-tested without Ansible) ------------------------------------------------------------------


def quote_text(text: Any, limit: int = 80) -> str:
    """A one-line, quoted excerpt: backslashes, newlines and tabs shown escaped, cut at ``limit`` characters."""
    text = "" if text is None else str(text)
    shown = text[:limit].replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f"'{shown}{'…' if len(text) > limit else ''}'"


def message_of(answer: Any) -> dict[str, Any]:
    """choices[0].message of a chat completion ({} when there is none)."""
    try:
        message = answer["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return {}
    return message if isinstance(message, dict) else {}


def finish_reason(answer: Any) -> str:
    try:
        return str(answer["choices"][0].get("finish_reason") or "")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""


def tool_calls_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = message.get("tool_calls") or []
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def check_chat(answer: Any) -> tuple[str | None, str]:
    """(problem or None, what it got) for the chat probe's answer."""
    text = str(message_of(answer).get("content") or "").strip()
    if not text:
        return "chat: the answer has no text", ""
    return None, text


def parse_arguments(call: dict[str, Any]) -> tuple[Any, str | None]:
    """A tool call's arguments, parsed: (value, None), or (None, problem)."""
    raw = (call.get("function") or {}).get("arguments")
    if isinstance(raw, dict):  # already an object (some servers); agents would accept it
        return raw, None
    if not isinstance(raw, str):
        return None, f"arguments are {type(raw).__name__}, not a JSON string"
    try:
        return json.loads(raw), None
    except ValueError as exc:
        return None, f"arguments are not JSON ({exc.msg} at {exc.pos}): {quote_text(raw)}"


def check_forced(answer: Any, name: str = "get_weather") -> tuple[str | None, str]:
    """(problem or None, the call as text) for the forced tool call probe's answer."""
    message = message_of(answer)
    calls = tool_calls_of(message)
    if not calls:
        return f"forced tool call: no tool call came back (text: {quote_text(message.get('content'))})", ""
    function = calls[0].get("function") or {}
    if function.get("name") != name:
        return f"forced tool call: called {function.get('name')!r} instead of {name}", ""
    args, problem = parse_arguments(calls[0])
    if problem is not None:
        return f"forced tool call: {name} {problem}", ""
    return None, f"{name}({json.dumps(args, ensure_ascii=False)})"  # one line, however the model spaced it


def content_problem(got: str, want: str = AGENT_CONTENT) -> str | None:
    """What is wrong with the content write_file got, as agents would see it; None when it is exactly as asked
    (one trailing newline more is accepted: editors and agents add it)."""
    if got in (want, want + "\n"):
        return None
    if REPLACEMENT in got:
        return ("its content holds U+FFFD (a broken UTF-8 character): agents would write '\ufffd' into the file "
                f"({quote_text(got)})")
    for char, escaped, name in (("\n", "\\n", "newlines"), ("\t", "\\t", "tabs"), ('"', '\\"', "double quotes")):
        if escaped in got and escaped not in want and (
                got.count(char) < want.count(char) or got.replace(escaped, char) in (want, want + "\n")):
            return (f"its content is double-escaped: literal {escaped} where {name} were asked, so agents would "
                    f"write literal {escaped} into files ({quote_text(got)})")
    missing = [c for c in dict.fromkeys(want) if c not in got]
    if missing:
        names = ", ".join(quote_text(c) if c.isprintable() and c != " " else repr(c) for c in missing)
        return f"its content lacks {names}: agents would write {quote_text(got)}"
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return (f"its content differs from what was asked at character {at}: expected {quote_text(want[at:], 30)}, "
            f"got {quote_text(got[at:], 30)}")


def check_agent(answer: Any, model: str, max_tokens: int) -> tuple[str | None, str]:
    """(problem or None, what it got) for the agent probe's answer: a write_file call by the model's own choice."""
    message = message_of(answer)
    calls = tool_calls_of(message)
    if not calls:
        text = str(message.get("content") or "").strip()
        cut = (f", cut off at agent_max_tokens {max_tokens}" if finish_reason(answer) == "length" else "")
        return (f"model {model} did not call write_file by itself with tool_choice auto (it answered text: "
                f"{quote_text(text)}{cut}); {CLIENTS} will stall waiting for tool calls"), ""
    function = calls[0].get("function") or {}
    if function.get("name") != "write_file":
        return (f"model {model} called {function.get('name')!r} instead of write_file with tool_choice auto; "
                f"{CLIENTS} would run the wrong tool"), ""
    args, problem = parse_arguments(calls[0])
    if problem is not None:
        return f"model {model} called write_file but its {problem}; {CLIENTS} would reject the call", ""
    if not isinstance(args, dict):
        return f"model {model} called write_file with arguments that are not an object: {quote_text(args)}", ""
    path, content = args.get("path"), args.get("content")
    if path != AGENT_PATH:
        return (f"model {model} called write_file for path {quote_text(path)} instead of {quote_text(AGENT_PATH)}: "
                "agents would write the wrong file"), ""
    if not isinstance(content, str):
        return f"model {model} called write_file without a string content (got {quote_text(content)})", ""
    problem = content_problem(content)
    if problem is not None:
        return f"model {model} called write_file, but {problem}", ""
    return None, f"write_file({AGENT_PATH}, {len(content.splitlines())} lines exact)"


def reassemble_stream(lines: Any) -> dict[str, Any]:
    """A chat completion rebuilt from its SSE ``data:`` lines (bytes), as the AI SDK's openai-compatible provider
    does: each event decoded on its own (a UTF-8 character split across events becomes U+FFFD there too), text
    and tool-call arguments concatenated as strings, tool calls keyed by their ``index``."""
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish = ""
    for raw in lines:
        line = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        line = line.rstrip("\r\n")
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        try:
            event = json.loads(payload)
        except ValueError:
            continue
        for choice in event.get("choices") or []:
            finish = choice.get("finish_reason") or finish
            delta = choice.get("delta") or {}
            if delta.get("content"):
                content.append(delta["content"])
            for part in delta.get("tool_calls") or []:
                call = calls.setdefault(int(part.get("index", 0)), {"function": {"name": "", "arguments": ""}})
                function = part.get("function") or {}
                if function.get("name"):
                    call["function"]["name"] += function["name"]
                if function.get("arguments"):
                    call["function"]["arguments"] += function["arguments"]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"choices": [{"message": message, "finish_reason": finish}]}


BUILD_RE = re.compile(r"b(\d+)(?:-|$)")


def served_build(props: dict[str, Any]) -> int | None:
    match = BUILD_RE.match(str(props.get("build_info") or ""))
    return int(match.group(1)) if match else None


def check_props(props: Any, slots: Any, probe: dict[str, Any], model: dict[str, Any]) -> tuple[list[str], str]:
    """(mismatches, what was served) of /props and /slots against the plan's probe block and one of its models."""
    planned_slots = model.get("slots", probe["slots"])  # a router's models each have their own
    if not isinstance(props, dict):
        return ["/props did not answer a JSON object"], ""
    problems: list[str] = []
    settings = props.get("default_generation_settings") or {}
    served_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    planned_ctx = int(model.get("n_ctx_slot") or 0)
    if planned_ctx and served_ctx != planned_ctx:
        problems.append(f"context per slot: planned {planned_ctx}, served {served_ctx} "
                        "(/props default_generation_settings.n_ctx)")
    if props.get("total_slots") != planned_slots:
        problems.append(f"slots: planned {planned_slots}, served {props.get('total_slots')} (/props total_slots)")
    if props.get("model_alias") != model["alias"]:
        problems.append(f"alias: planned {model['alias']!r}, served {props.get('model_alias')!r} (/props model_alias)")
    build = served_build(props)
    if build != probe["build"]:
        problems.append(f"build: planned b{probe['build']}, served {props.get('build_info')!r} (/props build_info)")
    caps = props.get("chat_template_caps") or {}
    tools = bool(caps.get("supports_tool_calls")) if isinstance(caps, dict) else False
    if probe["tools_template"] and not tools:
        problems.append("tools template: planned one that takes tools, served one without "
                        "(/props chat_template_caps.supports_tool_calls false): tool calls cannot be parsed")
    if isinstance(slots, list):
        if len(slots) != planned_slots:
            problems.append(f"slots: planned {planned_slots}, /slots lists {len(slots)}")
        wrong = sorted({s.get("n_ctx") for s in slots if isinstance(s, dict)} - {planned_ctx}) if planned_ctx else []
        if wrong:
            problems.append(f"context per slot: planned {planned_ctx}, /slots reports {', '.join(map(str, wrong))}")
    elif slots is not None:
        problems.append("/slots did not answer a JSON list")
    served = (f"n_ctx {served_ctx} x {props.get('total_slots')} slots, alias {props.get('model_alias')}, "
              f"{props.get('build_info')}, {'tools' if tools else 'no tools'} template")
    return problems, served


def problem_line(host: str, server: str, problems: list[str]) -> str:
    return f"host {host}: server {server}: " + "; ".join(problems)


# --- HTTP (fetch_url) ---------------------------------------------------------------------------------------


class Probe:
    def __init__(self, module: AnsibleModule, base_url: str, key: str | None) -> None:
        self.module = module
        self.base_url = base_url.rstrip("/")
        self.root = self.base_url.removesuffix("/v1")
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.timeout = module.params["timeout"]

    def _error(self, what: str, info: dict[str, Any]) -> str:
        status = info.get("status", -1)
        body = info.get("body") or b""
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body)
        try:
            detail = json.loads(text)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            detail = text.strip() or str(info.get("msg") or "")
        return f"{what}: HTTP {status}: {quote_text(detail, 200)}" if status > 0 else f"{what}: {info.get('msg')}"

    def post(self, what: str, body: dict[str, Any]) -> tuple[Any, str | None]:
        resp, info = fetch_url(self.module, f"{self.base_url}/chat/completions", data=json.dumps(body).encode(),
                               headers=self.headers, method="POST", timeout=self.timeout)
        if resp is None or info.get("status") != 200:
            return None, self._error(what, info)
        try:
            return json.loads(resp.read()), None
        except ValueError:
            return None, f"{what}: the answer is not JSON"

    def stream(self, what: str, body: dict[str, Any]) -> tuple[Any, str | None]:
        data = json.dumps({**body, "stream": True}).encode()
        resp, info = fetch_url(self.module, f"{self.base_url}/chat/completions", data=data,
                               headers=self.headers, method="POST", timeout=self.timeout)
        if resp is None or info.get("status") != 200:
            return None, self._error(what, info)
        return reassemble_stream(iter(resp.readline, b"")), None

    def get(self, path: str, model: str) -> tuple[Any, str | None]:
        resp, info = fetch_url(self.module, f"{self.root}{path}?model={quote(model, safe='')}",
                               headers=self.headers, method="GET", timeout=self.timeout)
        if resp is None or info.get("status") != 200:
            return None, self._error(path, info)
        try:
            return json.loads(resp.read()), None
        except ValueError:
            return None, f"{path}: the answer is not JSON"


def agent_body(model: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "system", "content": AGENT_SYSTEM}, {"role": "user", "content": AGENT_PROMPT}],
        "tools": [AGENT_TOOL],
        "tool_choice": "auto",
        "max_tokens": max_tokens,
        "temperature": 0,
    }


def probe_model(probe: Probe, plan: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """Every probe of one model: {"failures": [...], "agent": problem or None, "got": {...}}."""
    params = probe.module.params
    name = model["name"]
    failures: list[str] = []
    got: dict[str, Any] = {}

    answer, error = probe.post("chat", {"model": name, "messages": [{"role": "user", "content": params["prompt"]}],
                                        "max_tokens": params["max_tokens"], "temperature": 0})
    problem, got["chat"] = (error, "") if error else check_chat(answer)
    failures += [problem] if problem else []

    answer, error = probe.post("forced tool call", {
        "model": name, "messages": [{"role": "user", "content": params["tool_prompt"]}], "tools": [FORCED_TOOL],
        "tool_choice": "required", "parallel_tool_calls": False, "max_tokens": params["tool_max_tokens"],
        "temperature": 0})
    problem, got["forced"] = (error, "") if error else check_forced(answer)
    failures += [problem] if problem else []

    agent_problem = None
    if plan["agent_probe"] != "off":
        body = agent_body(name, params["agent_max_tokens"])
        answer, error = probe.post("agent tool call", body)
        if error:
            agent_problem = (f"model {name}: the agent request (tool_choice auto, write_file) failed, {error}; "
                             f"{CLIENTS} get this error instead of a tool call")
        else:
            agent_problem, got["agent"] = check_agent(answer, name, params["agent_max_tokens"])
        if agent_problem is None and params["agent_stream"]:
            answer, error = probe.stream("agent tool call, streamed", body)
            if error:
                agent_problem = f"model {name}: {error}"
            else:
                agent_problem, _ = check_agent(answer, name, params["agent_max_tokens"])
                agent_problem = None if agent_problem is None else f"streamed: {agent_problem}"
                got["agent"] += ", streamed too" if agent_problem is None else ""

    props, error = probe.get("/props", name)
    if error:
        failures.append(error)
    else:
        slots, slots_error = probe.get("/slots", name)
        if slots_error:
            failures.append(slots_error)
        mismatches, got["props"] = check_props(props, slots, plan, model)
        failures += mismatches
    return {"failures": failures, "agent": agent_problem, "got": got}


def read_key(path: str | None) -> str | None:
    """The API key: the first line of the server's key file, read on the host; the error never holds the key."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().strip().splitlines()
    except OSError as exc:
        raise ValueError(f"api_key_file {path}: {exc.__class__.__name__}: {exc.strerror}") from None
    if not lines or not lines[0].strip():
        raise ValueError(f"api_key_file {path} holds no key")
    return lines[0].strip()


def run(module: AnsibleModule) -> dict[str, Any]:
    host, server = module.params["host"], module.params["server"]
    name, plan = server["name"], server["probe"]
    try:
        key = read_key(server.get("api_key_file"))
    except ValueError as exc:
        module.fail_json(msg=problem_line(host, name, [str(exc)]))
    if key:
        module.no_log_values.add(key)
    probe = Probe(module, server["base_url"], key)
    failures: list[str] = []
    warnings: list[str] = []
    got: dict[str, Any] = {}
    for model in plan["models"]:
        result = probe_model(probe, plan, model)
        got[model["name"]] = result["got"]
        prefix = f"model {model['name']}: " if len(plan["models"]) > 1 else ""
        failures += [prefix + f for f in result["failures"]]
        if result["agent"] is not None:
            (failures if plan["agent_probe"] == "strict" else warnings).append(
                result["agent"] + ("" if plan["agent_probe"] == "strict" else " (agent_probe: warn)"))
    no_agent = "off" if plan["agent_probe"] == "off" else "failed (see the warning)"
    summary = "; ".join(
        f"{m}: chat {quote_text(g.get('chat'), 40)}, forced {g.get('forced') or '-'}, "
        f"agent {g.get('agent') or no_agent}, /props {g.get('props') or '-'}"
        for m, g in got.items()
    )
    warnings = [problem_line(host, name, [w]) for w in warnings]
    for warning in warnings:
        module.warn(warning)
    if failures:
        module.fail_json(msg=problem_line(host, name, failures), probes=got, agent_warnings=warnings)
    return {
        "changed": False,
        "msg": f"host {host}: server {name} at {server['base_url']}: {summary}",
        "probes": got,
        "agent_warnings": warnings,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "required": True},
            "server": {"type": "dict", "required": True},
            "prompt": {"type": "str", "default": "Say hello in one short sentence."},
            "max_tokens": {"type": "int", "default": 48},
            "tool_prompt": {"type": "str", "default": "Call get_weather for Oslo. Reply with JSON only."},
            "tool_max_tokens": {"type": "int", "default": 300},
            "agent_max_tokens": {"type": "int", "default": 2048},
            "agent_stream": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 300},
        },
        supports_check_mode=True,
    )
    if module.check_mode:
        module.exit_json(changed=False, skipped=True,
                         msg=f"host {module.params['host']}: server {module.params['server'].get('name')}: "
                             "check mode sends no probe")
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
