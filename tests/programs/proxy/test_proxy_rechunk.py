"""The pure re-chunking logic: where a fragment may end, and what a stream becomes (no sockets here)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proxy_support import DONE, chunk, content_events, event, tool_call_events

from llamafleet_sseproxy.rechunk import (
    MAX_HELD,
    RechunkOptions,
    StreamRechunker,
    ends_inside,
    loads,
    safe_cut,
)

# Arguments JSON text with every kind of escape the bug is about, and raw multi-byte characters.
HOSTILE = '{"path": "f.txt", "content": "a\\nb \\"q\\" c:\\\\ caf\\u00e9 \\ud83d\\ude00 é😀\\t€"}'


def run(data: bytes, options: RechunkOptions | None = None, piece: int = 0) -> bytes:
    """Feed a stream through a rechunker, in ``piece``-byte TCP reads (0: all at once)."""
    r = StreamRechunker(options)
    if piece:
        out = b"".join(r.feed(data[i : i + piece]) for i in range(0, len(data), piece))
    else:
        out = r.feed(data)
    return out + r.finish()


def events_of(out: bytes) -> list[Any]:
    """The data of each event (dicts, or the string "[DONE]"); comment-only events as ("comment", text)."""
    evs: list[Any] = []
    for raw in out.split(b"\n\n"):
        if not raw:
            continue
        if raw.startswith(b":"):
            evs.append(("comment", raw))
        elif raw == b"data: [DONE]":
            evs.append("[DONE]")
        else:
            assert raw.startswith(b"data: "), raw
            evs.append(loads(raw[6:]))
    return evs


def fragments(evs: list[Any]) -> dict[tuple[Any, ...], list[str]]:
    """Per (choice, field[, tool index]): the fragments in the order a client sees them."""
    got: dict[tuple[Any, ...], list[str]] = {}
    for ev in evs:
        if not isinstance(ev, dict):
            continue
        for choice in ev.get("choices", []):
            delta = choice.get("delta", {})
            for field in ("content", "reasoning_content"):
                if isinstance(delta.get(field), str):
                    got.setdefault((choice["index"], field), []).append(delta[field])
            for call in delta.get("tool_calls", []):
                got.setdefault((choice["index"], "tool", call["index"]), []).append(call["function"]["arguments"])
    return got


def assert_clean(frags: list[str], whole: str) -> None:
    assert "".join(frags) == whole
    pos = 0
    for frag in frags[:-1]:
        pos += len(frag)
        assert not ends_inside(whole, pos), f"fragment ends inside an escape at {pos}: {frags!r}"


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("", 0),
        ("abc", 3),
        ("a\\", 1),  # lone backslash
        ("a\\\\", 3),  # an escaped backslash is complete
        ("a\\\\\\", 3),  # ... and a third one starts a new escape
        ("a\\n", 3),
        ('a\\"', 3),
        ("x\\u", 1),
        ("x\\u00", 1),
        ("x\\u00e", 1),
        ("x\\u00e9", 7),
        ("x\\u00eZ", 7),  # not hex: the escape is over (invalid, but nothing to wait for)
        ("\\ud83d", 0),  # a high surrogate waits for its low half
        ("\\ud83d\\", 0),
        ("\\ud83d\\udE0", 0),
        ("\\ud83d\\ude00", 12),
        ("\\ud83d\\u00", 6),  # not a low surrogate follows: only the new escape waits
        ("\\ud83dx", 7),
        ("\\\\ud83d", 7),  # "\\" then literal text
        ("q\ud83d", 1),  # a raw high surrogate (sent as \ud83d in the event's JSON)
        ("q\ud83d\ude00", 3),
        ("caf\udcc3", 3),  # raw UTF-8 lead byte, carried as surrogateescape
        ("caf\udcc3\udca9", 5),
        ("x\udcf0\udc9f\udc98", 1),
        ("x\udcf0\udc9f\udc98\udc80", 5),
        ("x\udc80", 2),  # a stray continuation byte can never complete: sent on
        ("\\\udcc3", 0),  # a backslash right before an unfinished character waits with it
    ],
)
def test_safe_cut(text: str, cut: int) -> None:
    assert safe_cut(text) == cut


def test_every_two_way_split_of_tool_arguments_reassembles_without_mid_escape_ends() -> None:
    inside = 0
    for b in range(len(HOSTILE) + 1):
        out = run(b"".join(tool_call_events([HOSTILE[:b], HOSTILE[b:]])))
        got = fragments(events_of(out))[(0, "tool", 0)]
        assert_clean(got, HOSTILE)
        inside += ends_inside(HOSTILE, b)
    assert inside >= 20  # the input really was cut inside escapes and characters that often


def test_every_three_way_split_of_content_reassembles_without_mid_escape_ends() -> None:
    text = 'x\\n\\"\\\\\\u00e9\\ud83d\\ude00é😀'
    for a in range(len(text) + 1):
        for b in range(a, len(text) + 1):
            out = run(b"".join(content_events([text[:a], text[a:b], text[b:]])), piece=5)
            assert_clean(fragments(events_of(out))[(0, "content")], text)


def test_every_byte_split_of_utf8_is_joined_back_into_whole_characters() -> None:
    text = "é😀東€ a"
    raw = text.encode()
    for b in range(len(raw) + 1):
        halves = [raw[:b].decode("utf-8", "surrogateescape"), raw[b:].decode("utf-8", "surrogateescape")]
        out = run(b"".join(content_events(halves)))
        got = fragments(events_of(out))[(0, "content")]
        assert "".join(got) == text
        for frag in got:
            frag.encode("utf-8")  # strict: every fragment is whole characters
        out.decode("utf-8")  # and the stream itself is valid UTF-8


def test_a_surrogate_pair_sent_as_two_escapes_in_two_events_is_joined() -> None:
    units = "a\ud83d\ude00b"  # UTF-16 code units, as a server that cuts between them would send
    for b in range(len(units) + 1):
        evs = [b"data: " + json.dumps(chunk({"content": part})).encode() + b"\n\n" for part in (units[:b], units[b:])]
        out = run(b"".join([*evs, DONE]))
        got = fragments(events_of(out))[(0, "content")]
        assert "".join(got).encode("utf-16", "surrogatepass").decode("utf-16") == "a😀b"
        for frag in got:
            frag.encode("utf-8")  # no lone surrogate in any fragment


def test_unchanged_stream_passes_byte_for_byte() -> None:
    data = b"".join(content_events(["Bonjour", " le", " monde", " \u00e9t\u00e9"]))
    data += b"".join(tool_call_events(['{"path": "a.txt",', ' "content": "x"}']))
    assert run(data, piece=3) == data


def test_events_that_cannot_leave_a_fragment_open_go_on_unparsed_and_the_others_are_repaired() -> None:
    plain = content_events(["def f():\n", '    return "caf\u00e9"', "\t}"])  # JSON escapes \n \" \t, UTF-8
    assert b"\\n" in b"".join(plain) and b'\\"' in b"".join(plain)
    cut = content_events(["a\\", "nb"])  # a text whose backslash is cut from its n
    r = StreamRechunker()
    out = r.feed(b"".join(plain))
    assert out == b"".join(plain)
    assert r.events_changed == 0
    out += r.feed(b"".join(cut)) + r.finish()
    assert r.events_changed == 2
    assert fragments(events_of(out))[(0, "content")] == ["def f():\n", '    return "caf\u00e9"', "\t}", "a", "\\nb"]


def test_held_tail_goes_out_before_finish_and_done() -> None:
    out = run(b"".join(tool_call_events(['{"content": "a\\', "n\\u00", "e9\\"])))
    evs = events_of(out)
    assert fragments(evs)[(0, "tool", 0)] == ['{"content": "a', "\\n", "\\u00e9", "\\"]
    finish = next(i for i, e in enumerate(evs) if isinstance(e, dict) and e["choices"][0]["finish_reason"])
    last_args = max(i for i, e in enumerate(evs) if isinstance(e, dict) and e["choices"][0]["delta"].get("tool_calls"))
    assert last_args < finish
    assert evs[-1] == "[DONE]"


def test_fragment_in_the_finishing_event_is_sent_whole() -> None:
    evs = [event(chunk({"content": "a\\"})), event(chunk({"content": "b\\"}, finish="stop")), DONE]
    got = fragments(events_of(run(b"".join(evs))))
    assert got[(0, "content")] == ["a", "\\b\\"]


def test_fields_keep_upstream_order_when_one_follows_another() -> None:
    evs = [
        event(chunk({"content": "see\\"})),
        event(
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c", "type": "function", "function": {"name": "w", "arguments": "{"}}
                    ]
                }
            )
        ),
        event(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"a": "\\'}}]})),
        event(
            chunk(
                {
                    "tool_calls": [
                        {"index": 1, "id": "d", "type": "function", "function": {"name": "w", "arguments": "n\\u"}}
                    ]
                }
            )
        ),
        event(chunk({"tool_calls": [{"index": 1, "function": {"arguments": "0041"}}]})),
        event(chunk({}, finish="tool_calls")),
        DONE,
    ]
    order = []
    for ev in events_of(run(b"".join(evs))):
        if isinstance(ev, dict):
            delta = ev["choices"][0]["delta"]
            order += [("content", delta["content"])] if delta.get("content") else []
            order += [(c["index"], c["function"]["arguments"]) for c in delta.get("tool_calls", [])]
    assert order == [
        ("content", "see"),
        ("content", "\\"),
        (0, "{"),
        (0, '"a": "'),
        (0, "\\"),
        (1, "n"),
        (1, "\\u0041"),
    ]


def test_open_brace_split_into_its_own_delta() -> None:
    evs = events_of(
        run(b"".join(tool_call_events(['{"path": "x",', ' "content": ""}'])), RechunkOptions(split_open_brace=True))
    )
    calls = [
        e["choices"][0]["delta"]["tool_calls"][0]
        for e in evs
        if isinstance(e, dict) and e["choices"][0]["delta"].get("tool_calls")
    ]
    assert calls[0] == {"index": 0, "id": "call_1", "type": "function", "function": {"name": "write", "arguments": ""}}
    assert calls[1] == {"index": 0, "function": {"arguments": "{"}}
    assert calls[2] == {"index": 0, "function": {"arguments": '"path": "x",'}}
    assert "".join(c["function"]["arguments"] for c in calls) == '{"path": "x", "content": ""}'


def test_open_brace_arriving_after_the_name_is_split_without_a_second_header() -> None:
    evs = events_of(run(b"".join(tool_call_events(["", '{"path": "x"}'])), RechunkOptions(split_open_brace=True)))
    calls = [
        e["choices"][0]["delta"]["tool_calls"][0]
        for e in evs
        if isinstance(e, dict) and e["choices"][0]["delta"].get("tool_calls")
    ]
    assert [c["function"]["arguments"] for c in calls] == ["", "{", '"path": "x"}']
    assert [c["function"].get("name") for c in calls] == ["write", None, None]


def test_keepalive_comments_pass_or_drop() -> None:
    data = b": keep-alive\n\n" + b"".join(content_events(["a"])) + b": ping\n\n"
    assert run(data) == data
    dropped = run(data, RechunkOptions(keepalive="drop"), piece=4)
    assert dropped == b"".join(content_events(["a"]))


def test_crlf_framing_is_understood() -> None:
    data = b"".join(content_events(["a\\", "n"])).replace(b"\n", b"\r\n")
    got = fragments(events_of(run(data, piece=3).replace(b"\r\n", b"\n")))
    assert got[(0, "content")] == ["a", "\\n"]


def test_oversized_event_switches_to_passthrough_with_held_tail_first() -> None:
    head = b"".join(content_events(["a\\"])[:2])
    big = b"data: " + b"x" * 300
    r = StreamRechunker(RechunkOptions(max_event_bytes=100))
    out = r.feed(head) + r.feed(big) + r.feed(b"\n\n" + DONE) + r.finish()
    assert out.endswith(big + b"\n\n" + DONE)
    assert fragments(events_of(out[: -len(big + b"\n\n" + DONE)]))[(0, "content")] == ["a", "\\"]


def test_abort_flushes_then_ends_with_error_and_done() -> None:
    r = StreamRechunker()
    out = r.feed(b"".join(tool_call_events(['{"content": "a\\'])[:2]) + b'data: {"choi')
    out += r.abort("upstream went away")
    evs = events_of(out)
    assert fragments(evs)[(0, "tool", 0)] == ['{"content": "a', "\\"]
    assert evs[-2] == {"error": {"message": "upstream went away", "type": "upstream_error", "code": 502}}
    assert evs[-1] == "[DONE]"


def test_framing_only_mode_never_changes_a_byte() -> None:
    data = b"".join(tool_call_events(['{"content": "a\\', 'n"}'])) + b": ping\n\n"
    r = StreamRechunker(RechunkOptions(keepalive="drop"), repair=False)
    assert b"".join(r.feed(data[i : i + 7]) for i in range(0, len(data), 7)) + r.finish() == data


# --- property: random texts, random fragment cuts, random TCP reads ------------------------------------------

TOKENS = st.sampled_from(
    [
        "a",
        " ",
        "{",
        '"',
        ":",
        "\\n",
        '\\"',
        "\\\\",
        "\\/",
        "\\t",
        "\\u00e9",
        "\\u20ac",
        "\\ud83d\\ude00",
        "é",
        "😀",
        "東",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(TOKENS, min_size=1, max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    piece=st.one_of(st.integers(min_value=1, max_value=64), st.just(1 << 20)),  # TCP-sized reads, or all at once
    as_tool=st.booleans(),
)
def test_random_resplits_reassemble_exactly(parts: list[str], cuts: list[int], piece: int, as_tool: bool) -> None:
    text = "".join(parts)
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    frags = [text[a:b] for a, b in itertools.pairwise(points)] or [""]
    r = StreamRechunker()
    data = b"".join(tool_call_events(frags) if as_tool else content_events(frags))
    out = bytearray()
    for i in range(0, len(data), piece):
        out += r.feed(data[i : i + piece])
        assert r.holding <= MAX_HELD
    out += r.finish()
    key = (0, "tool", 0) if as_tool else (0, "content")
    assert_clean(fragments(events_of(bytes(out)))[key], text)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=130), max_size=8),
)
def test_random_byte_splits_give_whole_characters(text: str, cuts: list[int]) -> None:
    raw = text.encode()
    points = sorted({min(c, len(raw)) for c in cuts} | {0, len(raw)})
    frags = [raw[a:b].decode("utf-8", "surrogateescape") for a, b in itertools.pairwise(points)]
    out = run(b"".join(content_events(frags)))
    got = fragments(events_of(out))[(0, "content")]
    assert "".join(got) == text
    assert all(frag.encode("utf-8") is not None for frag in got)
