"""What real llama-server b11434 tool-call streams look like, replayed through the proxy and an AI-SDK-style client.

The recordings (fixtures/split_survey/, made by record_split_survey.py; fixtures/*.sse, made by record_fixtures.py)
are real SSE bodies of llama-server b11434 with --jinja and tools-capable templates, tool_choice "required",
temperatures 0 to 1.3, several seeds; half of the survey pins the written content through the tool's schema to text
with é, ✓, CJK, emoji, quotes, tabs, CR/LF and backslashes, so the grammar makes the model spell exactly those.

What they show (asserted below, so a new recording that differs fails here): no event ever cuts a UTF-8 character
(every event is valid UTF-8, no U+FFFD, no lone surrogate) and no ``arguments`` delta ends inside a JSON escape
(no odd run of backslashes, no unfinished ``\\uXXXX``, checked with the rechunker's independent oracle
``ends_inside``) — llama.cpp #22722's premise did not reproduce with this build. Accordingly the proxy's repair has
nothing to do: every stream leaves it byte for byte, in one piece or cut into small reads, and an AI-SDK-style
reassembly (JSON-parse each event, concatenate the argument deltas) gets the same arguments directly and through it,
with the pinned content intact wherever the model finished its call. A cut was possible: SmolLM2 spells 13 of the 29
tokens of the first pinned text as partial UTF-8 bytes (llama-server's /tokenize with_pieces), so b11434 holds such
tokens back until the character is whole.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from llamafleet_sseproxy.rechunk import StreamRechunker, ends_inside  # roles/sse_proxy/files, on pytest's pythonpath

FIXTURES = Path(__file__).resolve().parent / "fixtures"
STREAMS = sorted((FIXTURES / "split_survey").glob("*.sse")) + sorted(
    p for p in FIXTURES.glob("tool_call_*.sse")
)
SURVEY = sorted((FIXTURES / "split_survey").glob("*.sse"))


@dataclass
class Reassembled:
    """What a client that JSON-parses each event and concatenates the deltas ends up with."""

    events: int = 0
    argument_deltas: int = 0
    content_deltas: int = 0
    non_ascii_deltas: int = 0
    arguments: dict[int, str] = field(default_factory=dict)
    cuts: dict[int, list[int]] = field(default_factory=dict)  # where each delta of a call's arguments ended
    content: str = ""


def events(body: bytes) -> list[bytes]:
    return [ev for ev in body.split(b"\n\n") if ev]


def ai_sdk_reassemble(body: bytes) -> Reassembled:
    """@ai-sdk/openai-compatible's way: each event's data decoded on its own (a cut character becomes U+FFFD),
    JSON-parsed, ``content`` and each call's ``arguments`` concatenated as strings."""
    out = Reassembled()
    for ev in events(body):
        out.events += 1
        assert ev.startswith(b"data: "), ev[:60]
        if ev == b"data: [DONE]":
            continue
        chunk = json.loads(ev[6:].decode("utf-8", "replace"))
        for choice in chunk.get("choices", []):
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                out.content_deltas += 1
                out.non_ascii_deltas += not delta["content"].isascii()
                out.content += delta["content"]
            for call in delta.get("tool_calls") or []:
                args = (call.get("function") or {}).get("arguments")
                if isinstance(args, str):
                    i = call.get("index", 0)
                    out.argument_deltas += 1
                    out.non_ascii_deltas += not args.isascii()
                    out.arguments[i] = out.arguments.get(i, "") + args
                    out.cuts.setdefault(i, []).append(len(out.arguments[i]))
    return out


def pinned_content(path: Path) -> str | None:
    request = json.loads(path.with_suffix(".request.json").read_text())
    enum = request["tools"][0]["function"]["parameters"]["properties"]["content"].get("enum")
    return enum[0] if enum else None


def through_proxy(body: bytes, seed: int) -> tuple[bytes, int]:
    """The proxy's repair over the stream as the network may deliver it (reads of 1..40 bytes): what the client
    gets, and how many events the proxy rewrote."""
    rng = random.Random(seed)
    rechunker = StreamRechunker()
    out = bytearray()
    i = 0
    while i < len(body):
        n = rng.randint(1, 40)
        out += rechunker.feed(body[i : i + n])
        i += n
    out += rechunker.finish()
    return bytes(out), rechunker.events_changed


def content_ending_in_backslash(body: bytes) -> int:
    """Plain-text ``content`` deltas whose text ends in a backslash (``C:\\`` before ``temp``)."""
    found = 0
    for ev in events(body):
        if ev != b"data: [DONE]":
            for choice in json.loads(ev[6:]).get("choices", []):
                text = (choice.get("delta") or {}).get("content")
                found += isinstance(text, str) and text.endswith("\\")
    return found


def test_the_recordings_are_a_real_sample() -> None:
    totals = [ai_sdk_reassemble(p.read_bytes()) for p in STREAMS]
    assert len(SURVEY) >= 30 and len(STREAMS) >= len(SURVEY) + 3
    assert sum(t.events for t in totals) > 2000
    assert sum(t.argument_deltas for t in totals) > 400
    assert sum(t.non_ascii_deltas for t in totals) > 100
    assert sum(1 for p in SURVEY if pinned_content(p) is not None) >= 20
    assert {p.name.split("-")[0] + "-" + p.name.split("-")[1] for p in SURVEY} == {
        "smollm2-chatml", "smollm2-hermes", "gemma3-free0", "gemma3-free1", "gemma3-free2", "gemma3-free3",
        "gemma3-pinned0", "gemma3-pinned1",
    }


@pytest.mark.parametrize("path", STREAMS, ids=[p.stem for p in STREAMS])
def test_no_event_cuts_a_character_or_an_escape(path: Path) -> None:
    body = path.read_bytes()
    for ev in events(body):
        text = ev.decode("utf-8")  # raises on a cut character: none is cut
        assert "\ufffd" not in text
        if ev != b"data: [DONE]":
            value = json.loads(text[6:])
            assert not any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(value, ensure_ascii=False))
    got = ai_sdk_reassemble(body)
    assert "\ufffd" not in got.content
    for i, whole in got.arguments.items():
        assert "\ufffd" not in whole
        for cut in got.cuts[i][:-1]:
            assert not ends_inside(whole, cut), (cut, whole[max(0, cut - 8) : cut + 8])
            run = len(whole[:cut]) - len(whole[:cut].rstrip("\\"))
            assert run % 2 == 0, (cut, whole[max(0, cut - 8) : cut + 8])  # no lone backslash at a delta's end


@pytest.mark.parametrize("path", STREAMS, ids=[p.stem for p in STREAMS])
def test_the_proxy_passes_every_tool_call_byte_for_byte_and_the_client_sees_the_same(path: Path) -> None:
    """Tool-call streams leave the proxy unchanged. The one change seen: a plain-text ``content`` delta ending in a
    backslash (a Windows path the model wrote as free text) is held back and sent with the next one, because
    the proxy also guards ``content`` for clients that parse it as partial JSON; the text the client assembles is
    the same either way."""
    body = path.read_bytes()
    direct = ai_sdk_reassemble(body)
    for seed in range(3):
        out, changed = through_proxy(body, seed)
        proxied = ai_sdk_reassemble(out)
        assert (proxied.arguments, proxied.content) == (direct.arguments, direct.content)
        if content_ending_in_backslash(body) == 0:
            assert out == body and changed == 0
        else:
            assert 0 < changed <= 2 * content_ending_in_backslash(body)
            assert not direct.arguments or direct.content  # a text answer, not a clean tool call


def test_rewritten_streams_are_only_the_backslash_content_ones() -> None:
    rewritten = [p.stem for p in STREAMS if through_proxy(p.read_bytes(), 0)[1]]
    assert rewritten == [p.stem for p in STREAMS if content_ending_in_backslash(p.read_bytes())]
    assert len(rewritten) <= 5


def test_pinned_content_arrives_exactly_where_the_model_finished_its_call() -> None:
    finished = 0
    for path in SURVEY:
        pinned = pinned_content(path)
        args = ai_sdk_reassemble(path.read_bytes()).arguments.get(0)
        if pinned is None or args is None:
            continue
        try:
            call = json.loads(args)
        except ValueError:  # cut by max_tokens, or a second object after the first (chatml template)
            continue
        assert call["content"] == pinned
        finished += 1
    assert finished >= 8  # both hazards, both templates, both temperatures
