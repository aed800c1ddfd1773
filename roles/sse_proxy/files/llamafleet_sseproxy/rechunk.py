"""Pure re-chunking of an OpenAI chat-completion SSE stream (no I/O).

A guard. llama.cpp #22722 reported tool-call ``arguments`` (itself JSON text) streamed in fragments that end inside a
JSON escape (``{"content": "a\\`` then ``nb"}``) and clients losing the newline. Neither held up when measured:
@ai-sdk/openai-compatible (OpenCode's) concatenates argument deltas, so a split escape arrives intact, and
llama-server b11434 never split an escape or a character in 36 recorded streams (tests/programs/proxy/
test_proxy_split_survey.py). What does break such a client is a raw UTF-8 character cut between two events (each
half becomes U+FFFD). Other upstreams may cut one, as raw bytes, or as a surrogate pair sent as two ``\\uXXXX``
escapes in two events, and ``content`` may be parsed as partial JSON (structured output).

:class:`StreamRechunker` reads the upstream's bytes and returns bytes for the client in which no ``content``,
``reasoning_content`` or ``arguments`` fragment ends inside an escape sequence (``\\X``, ``\\uXXXX``, a surrogate
pair of escapes) or inside a character. The unfinished tail of a fragment is held back (at most 11 characters)
and sent at the front of the next fragment of the same field, or in an event of its own before the choice finishes,
before ``[DONE]`` or at the end of the stream: what a client concatenates is exactly what the upstream sent.
Events that need no change are passed on byte for byte; only changed events are serialised again.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

KeepAlive = Literal["pass", "drop"]

HEX = frozenset("0123456789abcdefABCDEF")
MAX_HELD = 11  # the longest unfinished tail: "\uD83D\uDE0" (a backslash and 3 bytes of UTF-8 are 4)
TEXT_FIELDS = ("content", "reasoning_content")
_EVENT_END = re.compile(rb"\r?\n\r?\n")
_ERRORS = "llamafleet-sseproxy"
DONE = b"data: [DONE]\n\n"


# --- where a fragment may end ------------------------------------------------------------------------------


def _escape_start(text: str, p: int) -> bool:
    """True when the backslash at ``p`` starts an escape (an odd run of backslashes ends at ``p``).

    ``text`` must begin at an escape boundary, which holds for every text the rechunker looks at.
    """
    q = p
    while q > 0 and text[q - 1] == "\\":
        q -= 1
    return (p - q) % 2 == 0


def _is_hex(s: str) -> bool:
    return all(c in HEX for c in s)


def _high_escape_at(text: str, p: int) -> bool:
    """True when ``text[p:p+6]`` is a complete ``\\uXXXX`` escape of a high surrogate starting an escape."""
    if p < 0 or text[p : p + 2] != "\\u" or not _escape_start(text, p):
        return False
    digits = text[p + 2 : p + 6]
    return len(digits) == 4 and _is_hex(digits) and 0xD800 <= int(digits, 16) <= 0xDBFF


def _could_be_low_escape(tail: str) -> bool:
    """True when ``tail`` is a proper prefix of a ``\\uDC00``..``\\uDFFF`` escape (more input could complete it)."""
    pattern = ("\\", "u", "dD", "cdefCDEF", HEX, HEX)
    return len(tail) < 6 and all(c in allowed for c, allowed in zip(tail, pattern, strict=False))


def _open_escape(text: str) -> int:
    """Index where an escape that more input could still extend begins, or ``len(text)``.

    Open escapes: a lone ``\\``; ``\\u`` with fewer than four hex digits; a complete high-surrogate escape
    (its low half may follow); a high-surrogate escape followed by an unfinished low-surrogate escape.
    """
    n = len(text)
    p = text.rfind("\\", max(0, n - 6))
    if p < 0 or not _escape_start(text, p):
        return n
    if p == n - 1:
        cut = p
    elif text[p + 1] != "u":
        return n
    else:
        digits = text[p + 2 :]
        if not _is_hex(digits):
            return n
        if len(digits) < 4:
            cut = p
        elif 0xD800 <= int(digits, 16) <= 0xDBFF:
            return p
        else:
            return n
    if _high_escape_at(text, cut - 6) and _could_be_low_escape(text[cut:]):
        return cut - 6
    return cut


def _utf8_need(lead: int) -> int:
    """Length of the UTF-8 sequence a lead byte starts (0 for a byte that cannot lead)."""
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def _open_char(text: str) -> int:
    """Index where an unfinished character at the end of ``text`` begins, or ``len(text)``.

    Unfinished characters: a high surrogate (its low half may come in the next event), and the first bytes of a
    UTF-8 sequence, which reach us as ``surrogateescape`` characters U+DC80..U+DCFF.
    """
    n = len(text)
    if n == 0:
        return 0
    last = ord(text[-1])
    if 0xD800 <= last <= 0xDBFF:
        return n - 1
    if not 0xDC80 <= last <= 0xDCFF:
        return n
    for back in range(1, min(4, n) + 1):
        code = ord(text[n - back])
        if not 0xDC80 <= code <= 0xDCFF:
            return n
        need = _utf8_need(code - 0xDC00)
        if need:
            return n - back if back < need else n
    return n


def safe_cut(text: str) -> int:
    """Longest prefix of ``text`` that ends neither inside an escape sequence nor inside a character.

    ``text`` starts at an escape boundary. ``text[safe_cut(text):]`` is what must wait for more input;
    it is never longer than :data:`MAX_HELD` characters.
    """
    n = len(text)
    if n == 0:
        return 0
    cut = _open_char(text)
    if cut < n:  # an escape is closed by any non-hex character, except a bare backslash right before it
        return cut - 1 if cut > 0 and text[cut - 1] == "\\" and _escape_start(text, cut - 1) else cut
    return _open_escape(text)


def ends_inside(whole: str, boundary: int) -> bool:
    """True when cutting ``whole`` at ``boundary`` splits an escape sequence or a character (the test oracle).

    Parses ``whole`` from the start, independently of :func:`safe_cut`: escapes are ``\\`` plus one character,
    or ``\\u`` plus up to four hex digits, joined with a following low-surrogate escape when they form a pair;
    characters are surrogate pairs and UTF-8 sequences carried as ``surrogateescape`` bytes.
    """
    i = 0
    n = len(whole)
    while i < n:
        c = whole[i]
        if c == "\\" and i + 1 < n:
            end = i + 2
            if whole[i + 1] == "u":
                while end < n and end < i + 6 and whole[end] in HEX:
                    end += 1
                digits = whole[i + 2 : end]
                if len(digits) == 4 and 0xD800 <= int(digits, 16) <= 0xDBFF:
                    low = whole[end + 2 : end + 6]
                    if (
                        whole[end : end + 2] == "\\u"
                        and len(low) == 4
                        and _is_hex(low)
                        and 0xDC00 <= int(low, 16) <= 0xDFFF
                    ):
                        end += 6
        elif 0xD800 <= ord(c) <= 0xDBFF and i + 1 < n and 0xDC00 <= ord(whole[i + 1]) <= 0xDFFF:
            end = i + 2
        elif 0xDC80 <= ord(c) <= 0xDCFF and _utf8_need(ord(c) - 0xDC00):
            end = i + 1
            need = _utf8_need(ord(c) - 0xDC00)
            while end < n and end < i + need and 0xDC80 <= ord(whole[end]) <= 0xDCBF:
                end += 1
        else:
            end = i + 1
        if i < boundary < end:
            return True
        i = end
    return False


# --- serialising text that may hold lone surrogates or raw bytes ---------------------------------------------


def _encode_errors(exc: UnicodeError) -> tuple[bytes, int]:
    """``surrogateescape`` characters go back to their raw byte; other surrogates become ``\\uXXXX`` escapes.

    Only used on JSON produced by :func:`dumps`, where every such character sits inside a string literal.
    """
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = bytearray()
    s = exc.object
    i = exc.start
    while i < exc.end:
        code = ord(s[i])
        pair = 0xD800 <= code <= 0xDBFF and i + 1 < len(s) and 0xDC00 <= ord(s[i + 1]) <= 0xDFFF
        if pair:
            out += f"\\u{code:04x}\\u{ord(s[i + 1]):04x}".encode("ascii")
            i += 2
            continue
        out += bytes([code - 0xDC00]) if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}".encode("ascii")
        i += 1
    return bytes(out), max(i, exc.end)


codecs.register_error(_ERRORS, _encode_errors)


def dumps(obj: Any) -> bytes:
    """Compact JSON as llama-server writes it (UTF-8, not ASCII-escaped)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8", _ERRORS)


def loads(data: bytes) -> Any:
    """Parse JSON that may carry raw bytes that are not UTF-8 (kept as ``surrogateescape`` characters)."""
    return json.loads(data.decode("utf-8", "surrogateescape"))


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _closed(data: bytes) -> bool:
    """True when no string in this JSON can end inside an escape or a character, whatever it holds.

    In a JSON text, two backslashes in a row only come from the ``\\\\`` escape (a backslash in the string);
    a surrogate only from a ``\\u`` escape; a cut UTF-8 character only as bytes that do not decode.
    """
    return b"\\\\" not in data and b"\\u" not in data and (data.isascii() or _utf8(data))


def sse_event(obj: Any) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


def error_event(message: str, code: int = 502, kind: str = "upstream_error") -> bytes:
    """An OpenAI-style error event (the ``openai`` library raises it as APIError; the AI SDK reports it), then DONE."""
    return sse_event({"error": {"message": message, "type": kind, "code": code}}) + DONE


# --- the stream ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RechunkOptions:
    """How the stream is re-chunked."""

    keepalive: KeepAlive = "pass"  # SSE ":" comment events: pass them on, or drop them
    split_open_brace: bool = False  # send a tool call's opening "{" as a delta of its own
    max_event_bytes: int = 1 << 20  # a longer event switches the stream to plain pass-through


# A field of a choice: ("content",), ("reasoning_content",) or ("tool", tool-call index).
FieldKey = tuple[str] | tuple[str, int]
_ENVELOPE = ("id", "object", "created", "model", "system_fingerprint")


def _fragments(delta: dict[str, Any]) -> list[tuple[FieldKey, dict[str, Any], dict[str, Any] | None]]:
    """The string fragments of a delta, in order: (field key, the dict holding the string, the tool call)."""
    items: list[tuple[FieldKey, dict[str, Any], dict[str, Any] | None]] = [
        ((field,), delta, None) for field in TEXT_FIELDS if isinstance(delta.get(field), str)
    ]
    calls = delta.get("tool_calls")
    for tpos, call in enumerate(calls if isinstance(calls, list) else []):
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            ti = call.get("index")
            items.append((("tool", ti if isinstance(ti, int) else tpos), fn, call))
    return items


class StreamRechunker:
    """Incremental: ``feed`` upstream bytes, write what it returns; ``finish`` at the upstream's end.

    With ``repair=False`` it only frames: events go on whole and unchanged, so a broken stream can still end
    with a clean error event. Memory per stream is bounded: one partial event (at most ``max_event_bytes``) and, per choice, one held tail
    of at most :data:`MAX_HELD` characters.
    """

    def __init__(self, options: RechunkOptions | None = None, repair: bool = True) -> None:
        self.options = options or RechunkOptions()
        self.repair = repair  # False: only frame the stream into whole events, every byte unchanged
        self._buf = bytearray()
        self._held: dict[int, tuple[FieldKey, str]] = {}  # choice index -> (field, unsent tail)
        self._braced: set[tuple[int, int]] = set()  # tool calls whose first arguments were seen
        self._envelope: dict[str, Any] = {}
        self._raw = False  # gave up re-chunking (an event too long): pass everything on as it comes
        self.events_changed = 0

    # public --------------------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        if self._raw:
            return data
        self._buf += data
        end = self._buf.rfind(b"\n\n") + 2
        block = bytes(self._buf[:end]) if end > 1 and b"\r" not in self._buf else b""
        if block and self._untouched(block):
            out = block  # the common case: every whole event goes on as it is, in one piece
            del self._buf[:end]
        else:
            out = self._events()
        if len(self._buf) > self.options.max_event_bytes:
            out += self._flush_all() + bytes(self._buf)
            self._buf.clear()
            self._raw = True
        return out

    def _untouched(self, block: bytes) -> bool:
        """True when no event of ``block`` (whole "\n"-framed events) can change, so it goes on in one piece.

        See :func:`_closed`; a held tail, brace splitting and dropped keep-alive comments need the events one by one.
        """
        if not self.repair:
            return True
        if self._held or self.options.split_open_brace:
            return False
        if self.options.keepalive == "drop" and (block.startswith(b":") or b"\n:" in block):
            return False
        return _closed(block)

    def _events(self) -> bytes:
        """Split the buffer into whole events and re-chunk each; the unterminated rest stays buffered."""
        out = bytearray()
        if b"\r" not in self._buf:  # llama-server's framing: events end with a blank "\n" line
            *events, rest = bytes(self._buf).split(b"\n\n")
            for ev in events:
                out += self._event(ev + b"\n\n", 2)
            self._buf = bytearray(rest)
        else:
            start = 0
            while (m := _EVENT_END.search(self._buf, start)) is not None:
                out += self._event(bytes(self._buf[start : m.end()]), m.end() - m.start())
                start = m.end()
            del self._buf[:start]
        return bytes(out)

    def finish(self) -> bytes:
        """The upstream ended normally: held tails, then whatever unterminated bytes remain."""
        out = self._flush_all() + bytes(self._buf)
        self._buf.clear()
        return out

    def abort(self, message: str) -> bytes:
        """The upstream broke mid-stream: held tails, an error event the client understands, then ``[DONE]``.

        A partial event is dropped: appending to it would corrupt the framing of the error event.
        """
        self._buf.clear()
        return self._flush_all() + error_event(message)

    @property
    def holding(self) -> int:
        return sum(len(tail) for _, tail in self._held.values())

    # events --------------------------------------------------------------------------------------------------

    def _event(self, raw: bytes, term_len: int) -> bytes:
        if not self.repair:
            return raw
        if raw.startswith(b"data: ") and b"\n" not in raw[:-term_len] and b"\r" not in raw[:-term_len]:
            data = raw[6:-term_len]  # the common case: one "data: " line
            other: list[bytes] = []
        else:
            lines = re.split(rb"\r?\n", raw[:-term_len])
            datas = [ln[5:].removeprefix(b" ") for ln in lines if ln.startswith(b"data:")]
            other = [ln for ln in lines if not ln.startswith(b"data:")]
            if not datas:
                if all(ln.startswith(b":") for ln in lines) and self.options.keepalive == "drop":
                    return b""
                return raw
            data = b"\n".join(datas)
        if data == b"[DONE]":
            return self._flush_all() + raw
        if not self._held and not self.options.split_open_brace and _closed(data):
            return raw  # no backslash or \\u escape in any string, valid UTF-8, nothing held: nothing can change
        try:
            chunk = loads(data)
        except ValueError:
            return raw
        if not isinstance(chunk, dict) or not isinstance(chunk.get("choices"), list):
            return raw
        out = self._chunk(chunk)
        if out is None:
            return raw
        self.events_changed += 1
        prefix = b"".join(ln + b"\n" for ln in other)
        return b"".join(prefix + sse_event(c) for c in out)

    def _chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The chunks to send for one upstream chunk, or None when it goes on unchanged."""
        self._envelope = {k: chunk[k] for k in _ENVELOPE if k in chunk}
        before: list[dict[str, Any]] = []
        changed = False
        for pos, choice in enumerate(chunk["choices"]):
            if not isinstance(choice, dict):
                continue
            ci = choice.get("index")
            ci = ci if isinstance(ci, int) else pos
            delta = choice.get("delta")
            items = _fragments(delta) if isinstance(delta, dict) else []
            finish = choice.get("finish_reason") is not None
            held = self._held.get(ci)
            if held and ((items and held[0] != items[0][0]) or (not items and finish)):
                before += self._flush(ci)  # an earlier event's tail of another field goes first
            for idx, (key, owner, call) in enumerate(items):
                field = "arguments" if key[0] == "tool" else key[0]
                # a field followed by another one in the same delta, or a finishing choice, holds nothing back
                text = self._take(ci, key, owner[field], final=finish or idx < len(items) - 1)
                if text != owner[field]:
                    owner[field] = text
                    changed = True
                if call is not None and self.options.split_open_brace and (ci, key[1]) not in self._braced and text:
                    self._braced.add((ci, key[1]))
                    if text.startswith("{") and (text != "{" or "name" in owner):
                        before += self._brace_split(ci, key[1], call, owner, text)
                        changed = True
        if not changed and not before:
            return None
        return [*before, chunk]

    def _take(self, ci: int, key: FieldKey, fragment: str, final: bool) -> str:
        """Prepend the held tail of this field, hold back the new unfinished tail, return what may be sent."""
        held = self._held.pop(ci, None)
        text = held[1] + fragment if held else fragment
        cut = len(text) if final else safe_cut(text)
        if cut < len(text):
            self._held[ci] = (key, text[cut:])
        return text[:cut]

    def _flush(self, ci: int) -> list[dict[str, Any]]:
        key, tail = self._held.pop(ci)
        if key[0] == "tool":
            delta: dict[str, Any] = {"tool_calls": [{"index": key[1], "function": {"arguments": tail}}]}
        else:
            delta = {key[0]: tail}
        return [self._synthetic(ci, delta)]

    def _flush_all(self) -> bytes:
        return b"".join(sse_event(c) for ci in sorted(self._held) for c in self._flush(ci))

    def _synthetic(self, ci: int, delta: dict[str, Any]) -> dict[str, Any]:
        return {**self._envelope, "choices": [{"index": ci, "delta": delta, "finish_reason": None}]}

    def _brace_split(
        self, ci: int, ti: int, call: dict[str, Any], fn: dict[str, Any], text: str
    ) -> list[dict[str, Any]]:
        """Send the call's header (id, type, name) with empty arguments, then "{" alone; the rest stays in place."""
        named = "id" in call or "type" in call or "name" in fn  # the call's header came with the brace
        header = {k: v for k, v in call.items() if k not in ("function",)}
        header["index"] = ti
        header["function"] = {**{k: v for k, v in fn.items() if k != "arguments"}, "arguments": ""}
        for k in ("id", "type"):
            call.pop(k, None)
        fn.pop("name", None)
        fn["arguments"] = text[1:]
        brace = {"tool_calls": [{"index": ti, "function": {"arguments": "{"}}]}
        return [*([self._synthetic(ci, {"tool_calls": [header]})] if named else []), self._synthetic(ci, brace)]
