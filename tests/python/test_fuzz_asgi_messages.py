"""Property-based fuzzing of the ASGI messages an app sends (src/asgi/messages.rs, http.rs,
websocket.rs), end to end against one real server per module.

Hypothesis builds sequences of `send()` messages, mostly valid ones that are then mutated:
wrong types in every field, missing keys, unknown types, messages out of order or repeated,
headers as lists, tuples, iterators, bytes-like names and values, CR/LF/NUL in them, statuses
out of range, Content-Length against the body, `more_body`, trailers, and early hints
(`http.response.early_hint`: `links` in every iterable form, before the start message,
between it and the first body message, once the body started). The app of
tests/apps/fuzz_app.py sends them and records what each `send()` did. A reference model of
the spec (asgiref specs/www.rst) and of the README's rules says, for every message, whether
`send()` must accept it or raise (RuntimeError naming the field; OSError once the response or
socket is over), and what the client must get: exactly the response a valid sequence
describes (status, headers, body bytes, trailers), before it each 103 Early Hints due (byte
for byte on HTTP/1.1, none on HTTP/1.0, on HTTP/2 where the scope offers the extension and
only there), a 500 with an error line when the app failed before its response started, a
cut connection or an incomplete body when it failed after (never a byte past a declared
Content-Length), and a connection that stays in step with the next request. After every
example the server still answers a plain request 200.

    FERRICORN_FUZZ_EXAMPLES=N    examples per test (default: a few seconds' worth)
    FERRICORN_FUZZ_SEED=clock    a fresh random seed (default: derandomized, repeatable);
                                 a number replays that seed

Server bugs the fuzzing found are kept below as plain tests (`test_bug_*`), and the model
steers the fuzzing away from their inputs (`KNOWN_BUGS`) so that it keeps looking for new
ones; drop a name from KNOWN_BUGS once its bug is fixed.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import socket
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import hpack
import pytest
from conftest import TESTS_DIR
from h2client import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    FrameReader,
    goaway_error,
    raw_frame,
)
from hypothesis import HealthCheck, Phase, assume, event, given, note, seed, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.timeout(600)

# ----- run length and seed ---------------------------------------------------------------------

_EXAMPLES = int(os.environ.get("FERRICORN_FUZZ_EXAMPLES") or 0)
_SEED = os.environ.get("FERRICORN_FUZZ_SEED")


def fuzz_settings(default_examples: int):
    """Hypothesis settings for one end-to-end fuzz test: derandomized unless
    FERRICORN_FUZZ_SEED asks otherwise, no example database, no per-example deadline."""
    def apply(test):
        test = settings(
            max_examples=_EXAMPLES or default_examples,
            deadline=None,
            database=None,
            derandomize=_SEED is None,
            print_blob=True,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                   HealthCheck.filter_too_much],
        )(test)
        if _SEED not in (None, "", "clock"):
            test = seed(int(_SEED))(test)
        return test
    return apply


# ----- the app's value codec (shared with the app, so both sides decode alike) ----------------

_spec = importlib.util.spec_from_file_location("fuzz_app_codec", TESTS_DIR / "apps" / "fuzz_app.py")
fuzz_app = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_app)
decode = fuzz_app.decode

APP = "apps.fuzz_app:app"
TIMEOUT = 5.0  # the bound on any one read (generous on loopback): past it, the server hung


def e_int(i: int) -> list:
    return ["int", str(i)]


def e_str(s: str) -> list:
    return ["str", s]


def e_bytes(data: bytes, kind: str = "bytes") -> list:
    if len(data) >= 4096 and data == data[:16] * (len(data) // 16):
        return [kind + "*", data[:16].hex(), len(data) // 16]  # big bodies stay small here
    return [kind, data.hex()]


def e_bool(b: bool) -> list:
    return ["bool", b]


def e_dict(items: list[tuple[Any, list]], kind: str = "dict") -> list:
    return [kind, [[k if isinstance(k, list) else e_str(k), v] for k, v in items]]


# ----- what the app may send: strategies of encoded values ------------------------------------

TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                  b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
COMMON_NAMES = ["x-a", "x-b", "content-type", "set-cookie", "cache-control", "X-Mixed-Case",
                "vary", "etag", "location"]
FRAMING_NAMES = ["content-length", "transfer-encoding", "connection", "trailer", "date",
                 "server", "keep-alive", "upgrade", "te", "proxy-connection"]
BAD_NAMES = [b"", b"x a", b"x:a", b"x\r\nInjected: 1", b"a\x00", b"\xe9t\xe9", b"(x)", b"x/y",
             b'"q"', b"\x7f", b"x\t", b":path"]
BAD_VALUES = [b"a\r\nInjected: yes", b"a\nb", b"a\rb", b"\x00", b"a\x7f", b"\x1b[31m"]

junk = st.one_of(
    st.just(["none"]),
    st.booleans().map(e_bool),
    st.one_of(st.integers(-3, 700),
              st.sampled_from([2**16, 2**31, 2**63, 2**64 + 200, -(2**70), 10**40])).map(e_int),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: ["float", f]),
    st.text(max_size=6).map(e_str),
    st.sampled_from(["é", "x\x00", "", "200", "http.response.start"]).map(e_str),
    st.binary(max_size=6).map(e_bytes),
    st.just(["object"]),
    st.just(["list", []]),
    st.just(["dict", []]),
    st.just(["tuple", [e_int(1), e_int(2)]]),
    st.just(["list", [e_int(104), e_int(105)]]),
)


def bytes_like(data: bytes) -> st.SearchStrategy:
    return st.sampled_from(["bytes", "bytes", "bytes", "bytearray", "memoryview"]).map(
        lambda kind: e_bytes(data, kind))


@st.composite
def header_name(draw, allow_bad: bool = True) -> list:
    """A header name as the app might give it: valid token in any bytes-like form or an
    ASCII str (uvicorn's h11 takes those), or, sometimes, an invalid one."""
    if allow_bad and draw(st.integers(0, 15)) == 0:
        choice = draw(st.integers(0, 4))
        if choice == 0:
            return draw(st.sampled_from(BAD_NAMES).flatmap(bytes_like))
        if choice == 1:
            return e_str(draw(st.sampled_from(["é-name", "x y", ""])))
        if choice == 2:
            return draw(junk)
        return draw(st.binary(min_size=1, max_size=6).flatmap(bytes_like))
    text = draw(st.one_of(st.sampled_from(COMMON_NAMES),
                          st.text(alphabet="".join(map(chr, sorted(TCHAR))), min_size=1,
                                  max_size=10)))
    form = draw(st.sampled_from(["bytes", "bytes", "bytearray", "memoryview", "str", "strsub"]))
    return [form, text] if form in ("str", "strsub") else e_bytes(text.encode(), form)


VALUE_ALPHABET = "".join(chr(c) for c in [*range(0x20, 0x7f), 0x09, *range(0xa0, 0x100)])


@st.composite
def header_value(draw, text: st.SearchStrategy | None = None, allow_bad: bool = True) -> list:
    if allow_bad and draw(st.integers(0, 15)) == 0:
        if draw(st.booleans()):
            return draw(st.sampled_from(BAD_VALUES).flatmap(bytes_like))
        return draw(st.one_of(junk, st.just(e_str("caf\u00e9")), st.just(e_str("\u2603"))))
    raw = draw(text if text is not None else st.text(alphabet=VALUE_ALPHABET, max_size=12))
    data = raw.encode("latin-1")
    if data.isascii() and draw(st.integers(0, 3)) == 0:
        return e_str(raw)
    return draw(bytes_like(data))


LINK_TEXTS = ["</style.css>; rel=preload; as=style", "</app.js>; rel=preload; as=script",
              "<https://cdn.example>; rel=preconnect",
              "</font.woff2>; rel=preload; as=font; crossorigin", '</a b>;\ttitle="x, y"']


@st.composite
def link_value(draw, allow_bad: bool = True) -> list:
    """One Link field value of an early hint: taken as a header value (any bytes-like form or
    an ASCII str; sometimes one that is refused), with whitespace around it at times (not
    part of the value, so trimmed)."""
    pad = st.sampled_from(["", "", "", " ", "\t", " \t "])
    if draw(st.integers(0, 39)) == 0:  # past a 16 KiB HTTP/2 frame, up to 80 KiB
        core = st.integers(1100, 5000).map(lambda n: "</aaaaaaaaaaaaa>" * n)
    else:
        core = st.one_of(st.sampled_from(LINK_TEXTS),
                         st.text(alphabet=VALUE_ALPHABET, max_size=12))
    return draw(header_value(st.tuples(pad, core, pad).map("".join), allow_bad))


@st.composite
def links_field(draw, allow_bad: bool = True) -> list:
    """An early hint's `links`: Link values in a list, tuple, iterator or generator (none at
    all: no 103), now and then another iterable of values; or, sometimes, what the extension
    refuses: one value on its own (bytes, str or bytearray, refused as such; a memoryview,
    which iterates as ints), something not iterable, items that are not values."""
    if allow_bad and draw(st.integers(0, 9)) == 0:
        link = LINK_TEXTS[0]
        return draw(st.one_of(junk, st.sampled_from([
            e_bytes(link.encode()), e_bytes(b""), e_str(link), e_str(""), ["strsub", link],
            ["bytearray", link.encode().hex()], ["bytearray", ""],
            ["memoryview", link.encode().hex()],
            ["list", [["list", [e_bytes(link.encode())]]]], ["iter", [e_int(60)]],
        ])))
    values = [draw(link_value(allow_bad)) for _ in range(draw(st.integers(0, 3)))]
    if draw(st.integers(0, 11)) == 0:
        # Iterables of values too, if odd ones: a dict's keys, a memoryview of nothing.
        keys = draw(st.lists(st.sampled_from(LINK_TEXTS), max_size=3, unique=True))
        return draw(st.sampled_from([["dict", [[e_bytes(k.encode()), ["none"]] for k in keys]],
                                     ["memoryview", ""]]))
    return [draw(st.sampled_from(["list", "list", "tuple", "iter", "gen"])), values]


@st.composite
def early_hint(draw, allow_bad: bool = True) -> dict:
    """An `http.response.early_hint` message; sometimes without its `links`."""
    items = [("type", e_str("http.response.early_hint"))]
    if not allow_bad or draw(st.integers(0, 19)):
        items.append(("links", draw(links_field(allow_bad))))
    if draw(st.integers(0, 9)) == 0:
        items.append(("x-unknown-key", draw(junk)))  # unknown keys are ignored
    return msg(items)


def pair(name: list, value: list, form: str) -> list:
    return [form, [name, value]]


@st.composite
def headers_field(draw, extra: list[tuple[str, str]] = (), allow_bad: bool = True) -> list:
    """A `headers` value: some ordinary headers plus `extra` (name, value) ones, as a list,
    tuple or iterator of pairs that are lists, tuples or iterators; sometimes malformed."""
    pairs = [pair(draw(header_name(allow_bad)), draw(header_value(allow_bad=allow_bad)),
                  draw(st.sampled_from(["tuple", "list", "iter"])))
             for _ in range(draw(st.integers(0, 3)))]
    for name, value in extra:
        pairs.insert(draw(st.integers(0, len(pairs))),
                     pair(e_bytes(name.encode()), e_bytes(value.encode("latin-1")),
                          draw(st.sampled_from(["tuple", "list"]))))
    if allow_bad and draw(st.integers(0, 14)) == 0:
        broken = draw(st.sampled_from([
            ["tuple", [e_bytes(b"x-a")]],
            ["tuple", [e_bytes(b"x-a"), e_bytes(b"1"), e_bytes(b"2")]],
            e_bytes(b"ab"), e_str("ab"), ["bytearray", b"ab".hex()], e_int(7),
            ["dict", [[e_str("x-from-dict"), e_str("v")], [e_str("yes"), e_str("v")]]],
            ["iter", [e_bytes(b"x-a")]], ["list", []],
        ]))
        pairs.insert(draw(st.integers(0, len(pairs))), broken)
    if allow_bad and draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from([["none"], e_int(3), e_str(""), e_bytes(b""), ["object"],
                                     e_str("x")]))
    return [draw(st.sampled_from(["list", "list", "tuple", "iter"])), pairs]


STATUSES = [200, 201, 204, 206, 299, 304, 400, 404, 418, 500, 503, 599]
BAD_STATUSES = [0, 99, 100, 101, 103, 199, 600, 999, -200, 2**16 + 200, 2**70]


@st.composite
def status_field(draw, allow_bad: bool = True) -> list:
    if allow_bad and draw(st.integers(0, 7)) == 0:
        return draw(st.one_of(st.sampled_from(BAD_STATUSES).map(e_int),
                              st.sampled_from([e_str("200"), ["float", 200.0], e_bool(True),
                                               ["none"], e_bytes(b"200")])))
    return e_int(draw(st.one_of(st.sampled_from(STATUSES), st.integers(200, 599))))


@st.composite
def body_data(draw) -> bytes:
    if draw(st.integers(0, 24)) == 0:  # past the 64 KiB response buffer
        return b"0123456789abcdef" * draw(st.integers(4096, 9000))
    return draw(st.binary(max_size=24))


def truthy(draw, value: bool) -> list:
    """`value` as one of the many things Python finds true or false."""
    if value:
        return draw(st.sampled_from([e_bool(True), e_bool(True), e_int(1), e_str("yes"),
                                     ["list", [e_int(0)]]]))
    return draw(st.sampled_from([e_bool(False), e_bool(False), e_int(0), e_str(""), ["none"],
                                 ["list", []]]))


def msg(items: list[tuple[str, list]], kind: str = "dict") -> dict:
    """A message under construction: its keys in order and its container type."""
    return {"kind": kind, "items": list(items)}


def encode_message(m: dict | list) -> list:
    if isinstance(m, list):  # already an encoded non-dict value
        return m
    return e_dict(m["items"], m["kind"])


# ----- sequences: a valid skeleton, then mutations -------------------------------------------

PATHSEND_FILES = {"empty": b"", "ten": b"0123456789", "big": bytes(range(256)) * 1200}


@st.composite
def http_skeleton(draw, files: dict[str, str]) -> list[dict]:
    """A valid response: start, body messages (or pathsend), trailers when announced."""
    clean = draw(st.integers(0, 2)) > 0  # two skeletons in three have no malformed field
    chunks = draw(st.lists(body_data(), min_size=0, max_size=4))
    ending = draw(st.sampled_from(["body", "body", "body", "pathsend", "no-body-message"]))
    total = sum(map(len, chunks))
    extra: list[tuple[str, str]] = []
    length = draw(st.sampled_from(["none", "none", "exact", "exact", "short", "long", "zero"]
                                  + ([] if clean else ["junk"])))
    if ending == "pathsend":
        fname = draw(st.sampled_from(sorted(PATHSEND_FILES)))
        total = len(PATHSEND_FILES[fname])
    values = {"exact": str(total), "short": str(max(total - 1, 0)), "long": str(total + 1),
              "zero": "0", "junk": draw(st.sampled_from(["abc", "", "-1", " 5", "5 ", "1,1",
                                                          "00", "99999999999999999999999"]))}
    if length != "none":
        extra.append(("content-length", values[length]))
        if draw(st.integers(0, 5)) == 0:  # a second one, agreeing or not
            extra.append(("content-length", draw(st.sampled_from([values[length], "7"]))))
    for name in draw(st.lists(st.sampled_from(FRAMING_NAMES[1:]), max_size=2, unique=True)):
        extra.append((name, draw(st.sampled_from({
            "transfer-encoding": ["chunked", "gzip", "gzip, chunked", "identity"],
            "connection": ["close", "keep-alive", "Close", "upgrade", "x-token"],
            "trailer": ["x-t", "x-t, x-u", "content-type, x-t", "x-u"],
            "date": ["Thu, 01 Jan 2026 00:00:00 GMT"],
            "server": ["not-ferricorn"],
            "keep-alive": ["timeout=5"],
            "upgrade": ["h2c"],
            "te": ["trailers", "gzip"],
            "proxy-connection": ["keep-alive"],
        }[name]))))
    trailers = draw(st.integers(0, 3)) == 0
    start = [("type", e_str("http.response.start")), ("status", draw(status_field(not clean))),
             ("headers", draw(headers_field(extra, allow_bad=not clean)))]
    if trailers:
        start.append(("trailers", truthy(draw, True)))
    elif draw(st.integers(0, 9)) == 0:
        start.append(("trailers", truthy(draw, False)))
    if draw(st.integers(0, 9)) == 0:
        start.append(("x-unknown-key", draw(junk)))  # unknown keys are ignored
    messages = [msg(start, draw(st.sampled_from(["dict"] * 5 + ["dictsub"])))]
    if ending == "pathsend":
        messages.append(msg([("type", e_str("http.response.pathsend")),
                             ("path", e_str(files[fname]))]))
    else:
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            items = [("type", e_str("http.response.body"))]
            if chunk or draw(st.booleans()):
                items.append(("body", draw(bytes_like(chunk))))
            if not last or draw(st.integers(0, 3)) == 0:
                items.append(("more_body", truthy(draw, not last)))
            messages.append(msg(items))
        if ending == "body" and not chunks:
            messages.append(msg([("type", e_str("http.response.body"))]))
    if trailers:
        for i in range(draw(st.integers(1, 2))):
            items = [("type", e_str("http.response.trailers")),
                     ("headers", draw(headers_field(allow_bad=False)))]
            items.append(("more_trailers", truthy(draw, i == 0 and draw(st.booleans()))))
            messages.append(msg(items))
    # Early hints: before the start message, between it and the first body message (the
    # head still waits for that one, so a 103 can go first), or once the body started (the
    # head is out: dropped).
    start_at = 0
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        where = draw(st.sampled_from(["before", "between", "after"]))
        if where == "before":
            at, start_at = start_at, start_at + 1
        elif where == "between":
            at = start_at + 1
        else:
            at = draw(st.integers(min(start_at + 2, len(messages)), len(messages)))
        messages.insert(at, draw(early_hint(allow_bad=not clean)))
    return messages


@st.composite
def random_http_message(draw, files: dict[str, str]) -> dict | list:
    kind = draw(st.sampled_from(["http.response.start", "http.response.body",
                                 "http.response.trailers", "http.response.pathsend",
                                 "http.response.early_hint",
                                 "http.response.bogus", "websocket.send", "http.request",
                                 "not-a-dict", "no-type", "type-not-str", "HTTP.RESPONSE.BODY",
                                 "type-with-surrogate"]))
    if kind == "not-a-dict":
        return draw(st.one_of(junk, st.just(["list", [["tuple", [e_str("type"),
                                                                  e_str("http.response.body")]]]])))
    if kind == "no-type":
        return msg([("body", e_bytes(b"x")), ("status", e_int(200))])
    if kind == "type-not-str":
        return msg([("type", draw(st.one_of(junk, st.just(e_bytes(b"http.response.body")))))])
    if kind == "type-with-surrogate":
        return msg([("type", e_str("http.response.\ud800"))])
    items: list[tuple[str, list]] = [("type", [draw(st.sampled_from(["str", "strsub"])), kind])]
    if kind == "http.response.start":
        if draw(st.integers(0, 5)):
            items.append(("status", draw(status_field())))
        if draw(st.booleans()):
            items.append(("headers", draw(headers_field())))
    elif kind in ("http.response.body", "http.request", "websocket.send"):
        if draw(st.booleans()):
            items.append(("body", draw(st.one_of(body_data().flatmap(bytes_like), junk))))
        if draw(st.booleans()):
            items.append(("more_body", draw(st.one_of(junk, st.booleans().map(e_bool)))))
    elif kind == "http.response.trailers":
        if draw(st.booleans()):
            items.append(("headers", draw(headers_field())))
        if draw(st.booleans()):
            items.append(("more_trailers", draw(junk)))
    elif kind == "http.response.pathsend":
        if draw(st.integers(0, 4)):
            items.append(("path", draw(st.one_of(
                st.sampled_from(sorted(files.values())).map(e_str),
                st.sampled_from(["relative/file", "", "/"]).map(e_str),
                st.just(e_bytes(files["ten"].encode())), junk))))
    elif kind == "http.response.early_hint":
        if draw(st.integers(0, 5)):
            items.append(("links", draw(links_field())))
    return msg(items)


@st.composite
def mutated(draw, skeleton: list, random_message: st.SearchStrategy) -> list:
    """The skeleton with 0-3 mutations: messages replaced, dropped, repeated, swapped or
    added; a field removed, replaced with junk, or an unknown one added."""
    messages = [dict(m, items=list(m["items"])) if isinstance(m, dict) else m for m in skeleton]
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 0, 1, 1, 2, 3]))):
        op = draw(st.sampled_from(["replace", "drop", "repeat", "swap", "insert", "field",
                                   "field", "field"]))
        if not messages:
            op = "insert"
        i = draw(st.integers(0, max(len(messages) - 1, 0)))
        if op == "replace":
            messages[i] = draw(random_message)
        elif op == "drop":
            del messages[i]
        elif op == "repeat":
            messages.insert(i, messages[i])
        elif op == "swap":
            j = draw(st.integers(0, len(messages) - 1))
            messages[i], messages[j] = messages[j], messages[i]
        elif op == "insert":
            messages.insert(i, draw(random_message))
        elif isinstance(messages[i], dict):
            m = dict(messages[i], items=list(messages[i]["items"]))
            messages[i] = m
            if m["items"] and draw(st.booleans()):
                k = draw(st.integers(0, len(m["items"]) - 1))
                if draw(st.booleans()):
                    del m["items"][k]
                else:
                    m["items"][k] = (m["items"][k][0], draw(junk))
            else:
                m["items"].append((draw(st.sampled_from(
                    ["more_body", "body", "status", "trailers", "headers", "links", "extra"])),
                    draw(junk)))
    return messages


# ----- the reference model --------------------------------------------------------------------

class Refused(Exception):
    """send() must raise: `kind` is the exception type's name."""

    def __init__(self, kind: str = "RuntimeError") -> None:
        super().__init__(kind)
        self.kind = kind


#: Server bugs this fuzzing found and that are still open (each with a strict-xfail
#: `test_bug_*` below). The model notes when an example goes through one and the property
#: skips that example, so the fuzzing goes on finding others; remove a name here once its
#: bug is fixed and the model (`Rules`, `HttpModel`, `WsModel`, the checks of `run_h2` and
#: `check_ws`) says what the server does now. Every bug found so far is fixed; their
#: `test_bug_*` tests hold the server to the fixes.
KNOWN_BUGS: dict[str, str] = {}


class Rules:
    """messages.rs as a spec: the checks every send() goes through."""

    def __init__(self) -> None:
        self.known: set[str] = set()

    def utf8(self, s: str) -> bytes:
        try:
            return s.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused() from None

    def message_and_type(self, message: Any) -> tuple[dict, str]:
        if not isinstance(message, dict) or "type" not in message:
            raise Refused()
        kind = message["type"]
        if not isinstance(kind, str):
            raise Refused()
        return message, self.utf8(kind).decode()

    @staticmethod
    def bytes_like(obj: Any) -> bytes | None:
        if isinstance(obj, bytes):
            return bytes(obj)
        if isinstance(obj, bytearray):
            return bytes(obj)
        if isinstance(obj, str):
            return None
        try:
            return memoryview(obj).tobytes()
        except TypeError:
            return None

    def body(self, message: dict) -> bytes:
        if "body" not in message:
            return b""
        data = self.bytes_like(message["body"])
        if data is None:
            raise Refused()
        return data

    @staticmethod
    def header_pair(item: Any) -> tuple[Any, Any] | None:
        if isinstance(item, (tuple, list)):
            return (item[0], item[1]) if len(item) == 2 else None
        if isinstance(item, (bytes, str)):
            return None
        try:
            parts = iter(item)
        except TypeError:
            return None
        got = []
        for part in parts:
            if len(got) == 2:
                return None
            got.append(part)
        return (got[0], got[1]) if len(got) == 2 else None

    def header_bytes(self, obj: Any) -> bytes:
        if isinstance(obj, str):
            data = self.utf8(obj)
            if not obj.isascii():
                raise Refused()
            return data
        data = self.bytes_like(obj)
        if data is None:
            raise Refused()
        return data

    def headers(self, message: dict) -> list[tuple[bytes, bytes]]:
        if "headers" not in message:
            return []
        try:
            items = iter(message["headers"])
        except TypeError:
            raise Refused() from None
        out = []
        for item in items:
            got = self.header_pair(item)
            if got is None:
                raise Refused()
            name = self.header_bytes(got[0])
            if not name or len(name) > 65535 or any(b not in TCHAR for b in name):
                raise Refused()
            out.append((name.lower(), self.field_value(got[1])))
        return out

    def field_value(self, obj: Any) -> bytes:
        value = self.header_bytes(obj)
        if any((b < 32 and b != 9) or b == 127 for b in value):
            raise Refused()
        # RFC 9110 5.5: whitespace around a value is not part of it (a Content-Length
        # of " 5" is 5); the server trims it for every protocol (handoff/fields.rs).
        return value.strip(b" \t")

    def links(self, message: dict) -> list[bytes]:
        """The Link values of an `http.response.early_hint`, each taken as a header value."""
        if "links" not in message:
            raise Refused()
        links = message["links"]
        # One value on its own would iterate as ints or characters: refused, not split.
        if isinstance(links, (bytes, str, bytearray)):
            raise Refused()
        try:
            items = iter(links)
        except TypeError:
            raise Refused() from None
        return [self.field_value(item) for item in items]

    def status(self, message: dict) -> int:
        if "status" not in message:
            raise Refused()
        status = message["status"]
        if not isinstance(status, int) or isinstance(status, bool) \
                or not 200 <= status <= 599:
            raise Refused()
        return status

    @staticmethod
    def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
        declared = None
        for name, value in headers:
            if name != b"content-length":
                continue
            if not value or not all(48 <= b <= 57 for b in value) or int(value) >= 2**64:
                raise Refused()
            if declared is not None and declared != int(value):
                raise Refused()
            declared = int(value)
        if declared is not None and any(n == b"transfer-encoding" for n, _ in headers):
            raise Refused()
        return declared


def short(value: Any, limit: int = 600) -> str:
    """repr() cut to `limit` characters, for notes about examples with big bodies."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


@dataclass(repr=False)
class Wire:
    """What the client must see for one HTTP response."""
    kind: str  # "response", "server-error" (the 500 of a failed app), "file-error"
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    end: str = "open"  # "open" (still streaming), "end", "cut"
    close: str = ""  # "header": Connection: close; "after": closed after the response
    trailers: list[tuple[bytes, bytes]] | None = None
    file: str | None = None

    def __repr__(self) -> str:
        return (f"Wire({self.kind}, {self.status}, headers={short(self.headers)}, "
                f"body={short(bytes(self.body), 120)}, end={self.end}, close={self.close}, "
                f"trailers={self.trailers})")


class HttpModel:
    """http.rs as a spec: one response's state machine and what reaches the client."""

    def __init__(self, rules: Rules, method: str, files: dict[str, bytes]) -> None:
        self.r = rules
        self.is_head = method == "HEAD"
        self.files = files
        self.state = "pending"  # started, streaming, discarding (HEAD), complete
        self.head: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.trailers: str | list = "none"  # "announced", or the fields gathered so far
        self.declared: int | None = None
        self.sent = 0
        self.wire: Wire | None = None
        self.streamed = 0
        self.problem: str | None = None  # the line logged when the app returns
        self.early_hints: list[list[bytes]] = []  # each 103 due, as its Link values

    def send(self, message: Any) -> None:
        message, kind = self.r.message_and_type(message)
        if kind == "http.response.start":
            return self.start(message)
        if kind == "http.response.body":
            return self.body(message)
        if kind == "http.response.pathsend":
            return self.pathsend(message)
        if kind == "http.response.trailers":
            return self.send_trailers(message)
        if kind == "http.response.early_hint":
            return self.early_hint(message)
        raise Refused()

    def early_hint(self, message: dict) -> None:
        links = self.r.links(message)  # checked whatever the state, and changes none
        # A 103 must come before the final head: while the head has not gone to the engine
        # (pending, or started: it leaves with the first body message), each hint with a
        # link is one 103; later ones are dropped, as the extension allows.
        if self.state in ("pending", "started") and links:
            self.early_hints.append(links)

    def start(self, message: dict) -> None:
        if self.state != "pending":
            raise Refused()
        status = self.r.status(message)
        headers = self.r.headers(message)
        if status in (204, 304):
            # Neither a Content-Length nor a Transfer-Encoding of the app's reaches the wire,
            # valid or not (RFC 9110 8.6), and the app's body is dropped, on every protocol.
            headers = [(n, v) for n, v in headers
                       if n not in (b"content-length", b"transfer-encoding")]
        if status in (204, 304):
            self.declared = None
        else:
            # Checked for HEAD too (it describes the GET response, RFC 9110 8.6), and said
            # once on the wire, however many agreeing fields the app gave.
            declared = self.r.declared_length(headers)
            if declared is not None:
                headers = [(n, v) for n, v in headers if n != b"content-length"] \
                    + [(b"content-length", str(declared).encode())]
            self.declared = None if self.is_head else declared
        self.state = "started"
        self.head = (status, headers)
        if "trailers" in message and bool(message["trailers"]):
            self.trailers = "announced"

    def measure(self, body: bytes, last: bool) -> tuple[str, bytes]:
        if self.declared is None:
            return "fits", body
        room = self.declared - self.sent
        if len(body) > room:
            self.sent = self.declared
            return "over", body[:room]
        self.sent += len(body)
        if last and self.sent < self.declared:
            return "short", body
        return "fits", body

    def response(self, body: bytes, end: str, close: str = "") -> Wire:
        status, headers = self.head
        return Wire("response", status, list(headers), bytearray(body), end, close)

    def body(self, message: dict) -> None:
        data = self.r.body(message)
        more = bool(message.get("more_body", False))
        if self.trailers == "announced":
            # A last body short of the declared length ends the response, as without
            # trailers; otherwise the trailers say where the body ends. (Whatever the
            # response's state: once it was cut short, a later last body that is still
            # short leaves the trailers announced, so they are refused.)
            short = self.declared is not None and self.sent + len(data) < self.declared
            if not more and not short:
                self.trailers = []
                more = True
        elif isinstance(self.trailers, list):
            raise Refused()
        if self.state in ("pending", "complete"):
            raise Refused()
        if self.state == "discarding":
            if more:
                if self.is_head:
                    raise Refused("OSError")
                return  # a 204/304 body is dropped
            self.state = "complete"
            return
        if self.state == "started":
            if self.is_head or self.head[0] in (204, 304):
                status, headers = self.head
                # A HEAD answer says the GET body's length; a 204/304 has none to say.
                if self.is_head and not more and status not in (204, 304) \
                        and not any(n == b"content-length" for n, _ in headers):
                    self.head = (status, headers + [(b"content-length", str(len(data)).encode())])
                self.wire = self.response(b"", "end")
                self.state = "discarding" if more else "complete"
                return
            fit, data = self.measure(data, not more)
            self.streamed = len(data)
            if fit == "fits":
                self.wire = self.response(data, "open" if more else "end")
                self.state = "streaming" if more else "complete"
                return
            self.state = "complete"
            if fit == "over":
                status, headers = self.head
                self.head = (status, [(n, v) for n, v in headers if n != b"connection"]
                             + [(b"connection", b"close")])
                self.wire = self.response(data, "end", close="header")
            else:
                self.wire = self.response(data, "cut")
            raise Refused()
        # streaming
        fit, data = self.measure(data, not more)
        self.wire.body += data
        self.streamed += len(data)
        if fit == "fits":
            if not more:
                self.wire.end = "end"
                self.state = "complete"
            return
        self.state = "complete"
        if fit == "over":
            self.wire.end, self.wire.close = "end", "after"
        else:
            self.wire.end = "cut"
        raise Refused()

    def pathsend(self, message: dict) -> None:
        if "path" not in message or not isinstance(message["path"], str):
            raise Refused()
        path = message["path"]
        if not path.startswith("/"):
            raise Refused()
        if self.state != "started":
            raise Refused()
        self.state = "complete"
        status, headers = self.head
        if path not in self.files:
            self.wire = Wire("file-error", 500)
            return
        content = self.files[path]
        # start() checked the app's Content-Length and left at most one.
        given = next((int(v) for n, v in headers if n == b"content-length"), None)
        chunked = any(n == b"transfer-encoding" for n, _ in headers)
        declared = len(content) if given is None else given
        if given is None and status not in (204, 304) and not chunked:
            # The engine says the file's length; an app that chose chunked framing keeps it
            # (over HTTP/2, where Transfer-Encoding is dropped, see expected_http).
            headers = headers + [(b"content-length", str(declared).encode())]
        if self.is_head:
            self.wire = Wire("response", status, headers, bytearray(), "end")
        elif status in (204, 304):  # no body, on any protocol
            self.wire = Wire("response", status, headers, bytearray(), "end", file=path)
        elif declared <= len(content):
            self.wire = Wire("response", status, headers, bytearray(content[:declared]), "end")
        else:
            self.wire = Wire("response", status, headers, bytearray(content), "cut")

    def send_trailers(self, message: dict) -> None:
        fields = self.r.headers(message)
        more = bool(message.get("more_trailers", False))
        if not isinstance(self.trailers, list):
            raise Refused()
        self.trailers += fields
        if more:
            return
        gathered, self.trailers = self.trailers, "none"
        if self.state == "streaming":
            # (A body short of its Content-Length never gets here: its last message ended
            # the response, cut, and left the trailers announced, so they are refused.)
            self.wire.end = "end"
            self.wire.trailers = gathered
        self.state = "complete"

    def conclude(self, failed: bool) -> None:
        if self.state in ("complete", "discarding"):
            return
        if self.state in ("pending", "started"):
            self.wire = Wire("server-error", 500, close="header")
            self.problem = "ASGI callable returned without sending a response."
        else:
            self.wire.end = "cut"
            self.problem = "ASGI callable returned without completing the response."
        if failed:
            self.problem = None


def run_model(model, plan: dict) -> tuple[list[str], bool]:
    """Plays the plan against the model as the app does: each send()'s outcome ("ok" or the
    exception's type name), and whether the app ended by raising."""
    outcomes: list[str] = []
    failed = False
    for encoded in plan["messages"]:
        try:
            model.send(decode(encoded))
        except Refused as refused:
            outcomes.append(refused.kind)
            if plan["on_error"] == "raise":
                failed = True
                break
            if plan["on_error"] == "return":
                break
            continue
        outcomes.append("ok")
    else:
        failed = plan["end"] == "raise"
    model.conclude(failed)
    return outcomes, failed


# ----- talking to the server ------------------------------------------------------------------

class Fuzzing:
    """The module's server, its files, and the log read so far."""

    def __init__(self, srv, files: dict[str, str], contents: dict[str, bytes]) -> None:
        self.srv = srv
        self.files = files          # name -> absolute path
        self.contents = contents    # absolute path -> bytes (regular files only)
        self.log_offset = 0

    def new_log(self) -> str:
        with open(self.srv.log_path, "rb") as f:
            f.seek(self.log_offset)
            data = f.read()
        return data.decode("utf-8", "replace")

    def wait_log(self, needle: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while needle not in self.new_log():
            assert time.monotonic() < deadline, f"no log line with {needle!r}:\n{self.new_log()}"
            time.sleep(0.01)

    def skip_log(self) -> None:
        self.log_offset = self.srv.log_path.stat().st_size

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.srv.port), timeout=TIMEOUT)
        sock.settimeout(TIMEOUT)
        return sock

    def http(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        with self.connect() as sock:
            sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            reader = H1Reader(sock)
            resp = reader.response(method)
            return resp.status, bytes(resp.body)

    def put_plan(self, plan: dict) -> str:
        plan_id = uuid.uuid4().hex[:12]
        status, body = self.http("PUT", f"/plan/{plan_id}", json.dumps(plan).encode())
        assert (status, body) == (200, b"stored")
        return plan_id

    def finished_run(self, plan_id: str) -> dict:
        """What the app recorded of a plan's run once it is over: `sent`, what each send()
        did, and `extensions`, those its scope offered."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            status, body = self.http("GET", f"/result/{plan_id}")
            assert status == 200
            result = json.loads(body)
            if result["done"]:
                return result
            assert time.monotonic() < deadline, f"the app never finished plan {plan_id}"
            time.sleep(0.01)

    def result(self, plan_id: str) -> list:
        return self.finished_run(plan_id)["sent"]

    def assert_serving(self) -> None:
        """The server still answers a plain request, on a new connection."""
        assert self.srv.alive(), f"the server exited:\n{self.new_log()}"
        assert self.http("GET", "/ok") == (200, b"ok"), "the server stopped answering"


@dataclass
class H1Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytearray
    complete: bool          # the body ended as its framing says
    framing: str            # "length", "chunked", "close", "none"
    trailers: list[tuple[bytes, bytes]]
    raw_head: bytes = b""


class H1Reader:
    """A strict HTTP/1.1 response reader (RFC 9112 6.3 framing); EOF is told apart from a
    complete body, and a server that stalls fails the read after TIMEOUT. The interim (1xx)
    responses before a final one are kept as sent, in `interim`; final responses must carry
    `version`."""

    def __init__(self, sock: socket.socket, version: bytes = b"HTTP/1.1") -> None:
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.version = version
        self.interim: list[bytes] = []  # those read by the last response() call

    def fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            raise AssertionError(f"server hung: no byte within {TIMEOUT}s; have "
                                 f"{bytes(self.buf[:300])!r}") from None
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def until(self, marker: bytes) -> bytes | None:
        while (at := self.buf.find(marker)) < 0:
            if not self.fill():
                return None
        out = bytes(self.buf[:at])
        del self.buf[:at + len(marker)]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n and self.fill():
            pass
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def at_eof(self) -> bool:
        """Nothing more arrives: the server closed the connection."""
        return not self.buf and not self.fill()

    def response(self, method: str = "GET") -> H1Response | None:
        """The next final response, or None when the server closed before any byte of one;
        the interim responses before it go to `interim`."""
        self.interim = []
        while True:
            if not self.buf and not self.fill():
                return None
            head = self.until(b"\r\n\r\n")
            assert head is not None, \
                f"connection closed inside a response head: {bytes(self.buf)!r}"
            lines = head.split(b"\r\n")
            version, code, _ = (lines[0].split(b" ", 2) + [b""])[:3]
            status = int(code)
            # RFC 9110 15.2: a 1xx precedes the final response to the same request (a 101
            # ends HTTP/1.1 on the connection, so it is final here).
            if not 100 <= status < 200 or status == 101:
                break
            self.interim.append(head + b"\r\n\r\n")
        assert version == self.version, lines[0]
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            assert sep and name and name == name.strip(), f"bad header line {line!r}"
            headers.append((name.lower(), value.strip(b" \t")))
        resp = H1Response(status, headers, bytearray(), False, "none", [], head)
        te = [v for n, v in headers if n == b"transfer-encoding"]
        cl = {v for n, v in headers if n == b"content-length"}
        if method == "HEAD" or status in (204, 304) or status < 200:
            resp.complete = True
            return resp
        if te:
            assert not cl, f"both Transfer-Encoding and Content-Length: {head!r}"
            codings = [c.strip().lower() for v in te for c in v.split(b",")]
            if codings[-1] == b"chunked":
                resp.framing = "chunked"
                self.chunked(resp)
                return resp
            resp.framing = "close"
        elif cl:
            assert len(cl) == 1, f"Content-Length values disagree: {head!r}"
            (value,) = cl
            assert value.isdigit(), f"invalid Content-Length {value!r}"
            resp.framing = "length"
            resp.body += self.exactly(int(value))
            resp.complete = len(resp.body) == int(value)
            return resp
        resp.framing = "close"
        while self.fill():
            pass
        resp.body += self.buf
        self.buf.clear()
        resp.complete = True
        return resp

    def chunked(self, resp: H1Response) -> None:
        while True:
            line = self.until(b"\r\n")
            if line is None:
                return
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    trailer = self.until(b"\r\n")
                    if trailer is None:
                        return
                    if trailer == b"":
                        resp.complete = True
                        return
                    name, _, value = trailer.partition(b":")
                    resp.trailers.append((name.lower(), value.strip(b" \t")))
            data = self.exactly(size)
            resp.body += data
            if len(data) < size or self.exactly(2) != b"\r\n":
                return


# ----- checking a response against the model -------------------------------------------------

#: Headers the server adds or handles itself: checked by their own rules, not as app headers.
H1_OWN = {b"content-length", b"transfer-encoding", b"connection", b"date", b"server",
          b"trailer"}
H2_DROPPED = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
              b"upgrade", b"te"}


def by_name(headers) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        out.setdefault(name, []).append(value)
    return out


def connection_close(headers) -> bool:
    return any(token.strip().lower() == b"close"
               for n, v in headers if n == b"connection" for token in v.split(b","))


def check_headers(got, wire: Wire, http2: bool) -> None:
    """The app's headers arrive as it set them (per name, in order; the values as an HTTP
    client reads them), and the server adds only its own."""
    want, have = by_name(wire.headers), by_name(got)
    own = H1_OWN | (H2_DROPPED if http2 else set())
    for name, values in want.items():
        if name in own:
            continue
        assert have.get(name) == [v.strip(b" \t") for v in values], \
            f"header {name!r}: app sent {values}, client got {have.get(name)}"
    for name in have:
        assert name in want or name in {b"content-length", b"transfer-encoding", b"connection",
                                        b"date", b"server"}, f"unexpected header {name!r}"
    for name in (b"date", b"server"):
        if name in want:
            assert have.get(name) == [v.strip(b" \t") for v in want[name]], name
    if b"server" not in want:
        assert have.get(b"server") == [b"ferricorn"]
    if http2:
        for name in H2_DROPPED:
            assert name not in have, f"connection-specific {name!r} in an HTTP/2 response"
    if wire.status == 204:
        assert b"content-length" not in have, "Content-Length on a 204 (RFC 9110 8.6)"


def h1_trailers(wire: Wire, te_trailers: bool, chunked: bool) -> list:
    """The trailer fields hyper writes on HTTP/1.1: the request said `TE: trailers`, the body
    is chunked, and each field is listed in `Trailer` and allowed as a trailer."""
    if not (wire.trailers and te_trailers and chunked):
        return []
    allowed = set()
    for name, value in wire.headers:
        if name == b"trailer" and all(32 <= b < 127 or b == 9 for b in value):
            for part in value.split(b","):
                part = part.strip(b" \t")
                if part and all(b in TCHAR for b in part):
                    allowed.add(part.lower())
    forbidden = {b"authorization", b"cache-control", b"content-encoding", b"content-length",
                 b"content-range", b"content-type", b"host", b"max-forwards", b"set-cookie",
                 b"trailer", b"transfer-encoding", b"te"}
    return [(n, v.strip(b" \t")) for n, v in wire.trailers if n in allowed and n not in forbidden]


def check_h1(resp: H1Response | None, wire: Wire, method: str, te_trailers: bool) -> str:
    """Holds one HTTP/1.1 response to the model. Returns what the connection must do next:
    "close" (nothing more comes), "keep" (it answers the next request) or "either" (the
    response was complete on the wire before the app broke its framing: the server may
    keep the connection or close it, but must not fall out of step)."""
    if wire.kind in ("server-error", "file-error"):
        assert resp is not None and resp.status == 500 and resp.complete, resp
        expected = b"Internal Server Error" + (b"\n" if wire.kind == "file-error" else b"")
        assert method == "HEAD" or bytes(resp.body) == expected, resp.body
        if wire.kind == "server-error":
            assert connection_close(resp.headers), resp.raw_head
        return "close" if connection_close(resp.headers) else "keep"
    if wire.end == "cut":
        # The app failed after the response started: the client may get the head and the
        # bytes sent so far, never more, and never a body that looks complete...
        if resp is None:
            return "close"
        assert resp.status == wire.status
        assert bytes(wire.body).startswith(bytes(resp.body)), "bytes the app never sent"
        # ...unless it declared a Content-Length and sent all of it before it failed.
        declared = [v for n, v in resp.headers if n == b"content-length"]
        all_sent = resp.framing == "length" and len(wire.body) == int(declared[0])
        no_body = method == "HEAD" or wire.status in (204, 304)
        assert not resp.complete or all_sent or no_body, \
            f"a cut response looks complete to the client: {resp.raw_head!r} {resp.body!r}"
        return "either" if resp.complete else "close"
    assert wire.end == "end", wire
    assert resp is not None, "no response for a complete one"
    assert resp.status == wire.status, (resp.status, wire.status)
    check_headers(resp.headers, wire, http2=False)
    assert resp.complete, f"response ended early: {resp.raw_head!r} {bytes(resp.body)[:200]!r}"
    no_body = method == "HEAD" or wire.status in (204, 304)
    assert bytes(resp.body) == (b"" if no_body else bytes(wire.body)), \
        f"body {bytes(resp.body)[:100]!r} != {bytes(wire.body)[:100]!r}"
    assert by_name(resp.trailers) == by_name(h1_trailers(wire, te_trailers,
                                                      resp.framing == "chunked")), \
        (resp.trailers, wire.trailers)
    if wire.close == "header" or connection_close(wire.headers):
        assert connection_close(resp.headers), resp.raw_head
    if connection_close(resp.headers) or resp.framing == "close":
        return "close"
    return "either" if wire.close == "after" else "keep"


def h1_request(method: str, path: str, te_trailers: bool, body: bytes,
               version: str = "HTTP/1.1", expect_continue: bool = False) -> bytes:
    lines = [f"{method} {path} {version}", "Host: t"]
    if te_trailers:
        lines.append("TE: trailers")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    if expect_continue:
        lines.append("Expect: 100-continue")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


OK_REQUEST = b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n"


def early_hints_h1(hints: list[list[bytes]]) -> list[bytes]:
    """The 103 Early Hints an HTTP/1.1 client gets for these hints (one per message, a
    `link` field per value), byte for byte."""
    return [b"HTTP/1.1 103 Early Hints\r\n" + b"".join(b"link: " + v + b"\r\n" for v in links)
            + b"\r\n" for links in hints]


#: hyper's answer to `Expect: 100-continue`, once the app reads the body (the fuzz app reads
#: it before its first send(), so it precedes any 103).
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"


def run_h1(fz: Fuzzing, plan_id: str, wire: Wire, interim: list[bytes], method: str,
           te_trailers: bool, pipelined: bool, request_body: bytes,
           expect_continue: bool = False) -> None:
    with fz.connect() as sock:
        # The body goes with the head even when it asks for a 100 (RFC 9110 10.1.1 lets a
        # client not wait for it).
        request = h1_request(method, f"/run/{plan_id}", te_trailers, request_body,
                             expect_continue=expect_continue)
        if expect_continue:
            interim = [CONTINUE_100, *interim]
        sock.sendall(request + (OK_REQUEST if pipelined else b""))
        reader = H1Reader(sock)
        resp = reader.response(method)
        note(f"HTTP/1.1 response: {short(resp)} after 1xx {short(reader.interim)}")
        assert reader.interim == interim, \
            f"interim responses {short(reader.interim)} != {short(interim)}"
        fate = check_h1(resp, wire, method, te_trailers)
        if fate == "close":
            # Nothing further comes, pipelined request or not.
            assert reader.at_eof(), f"bytes after a response that ends the connection: " \
                                    f"{bytes(reader.buf)[:200]!r}"
            return
        if not pipelined:
            try:
                sock.sendall(OK_REQUEST)
            except (BrokenPipeError, ConnectionResetError):
                assert fate == "either", "the server closed a connection it should keep"
                return
        follow = reader.response("GET")
        assert not reader.interim, f"a 1xx after the response it came with: {reader.interim}"
        if follow is None and fate == "either":
            return
        assert follow is not None and (follow.status, bytes(follow.body)) == (200, b"ok"), \
            f"the connection fell out of step: {follow}"


def run_h10(fz: Fuzzing, plan_id: str, wire: Wire, method: str, request_body: bytes) -> None:
    """An HTTP/1.0 request (no keep-alive): no 1xx at all (RFC 9110 15.2), then the response
    as check_h1 holds it, framed by Content-Length or by the end of the connection (HTTP/1.0
    has no chunked coding, so no trailers either); then the connection ends."""
    with fz.connect() as sock:
        sock.sendall(h1_request(method, f"/run/{plan_id}", False, request_body, "HTTP/1.0"))
        reader = H1Reader(sock, version=b"HTTP/1.0")
        resp = reader.response(method)
        note(f"HTTP/1.0 response: {short(resp)} after 1xx {short(reader.interim)}")
        assert not reader.interim, f"interim responses to HTTP/1.0: {short(reader.interim)}"
        if resp is not None:
            assert resp.framing != "chunked", f"chunked to HTTP/1.0: {resp.raw_head!r}"
        if wire.end == "cut" and resp is not None and resp.framing == "close":
            # The end of the connection is the end of such a body: a cut looks complete.
            assert resp.status == wire.status
            assert bytes(wire.body).startswith(bytes(resp.body)), "bytes the app never sent"
        else:
            check_h1(resp, wire, method, te_trailers=False)
        assert reader.at_eof(), f"bytes after an HTTP/1.0 response: {bytes(reader.buf)[:200]!r}"


class H2Client:
    """One h2c connection spoken frame by frame (hpack for the header blocks): it keeps
    reading through a graceful GOAWAY, answers PING and SETTINGS, and opens its windows
    wide so flow control never stalls a response."""

    def __init__(self, fz: Fuzzing) -> None:
        self.sock = fz.connect()
        self.reader = FrameReader(self.sock)
        # No SETTINGS_MAX_HEADER_LIST_SIZE is sent, so any size is the server's to send (a
        # 103 with an 80 KiB Link field): hpack's own 64 KiB bound would refuse it.
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(max_header_list_size=2**24)
        self.sock.sendall(PREFACE + raw_frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 2**31 - 1))
                          + raw_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 2**16)))
        self.next_stream = 1
        self.streams: dict[int, dict[str, Any]] = {}
        self.goaway: tuple[int, int] | None = None
        self.closed = False
        self.block: tuple[int, bytearray, bool] | None = None  # a header block in parts
        self.answer_pings = True
        self.unanswered: list[bytes] = []

    def request(self, method: str, path: str) -> int:
        stream, self.next_stream = self.next_stream, self.next_stream + 2
        block = self.encoder.encode([(":method", method), (":path", path), (":scheme", "http"),
                                     (":authority", "t")])
        self.sock.sendall(raw_frame(HEADERS, END_STREAM | END_HEADERS, stream, block))
        self.streams[stream] = {"headers": None, "body": bytearray(), "trailers": None,
                                "end": None, "interim": []}
        return stream

    def _headers(self, stream: int, block: bytes, end_stream: bool) -> None:
        fields = self.decoder.decode(block, raw=True)
        state = self.streams.setdefault(stream, {"headers": None, "body": bytearray(),
                                                 "trailers": None, "end": None, "interim": []})
        status = dict(fields).get(b":status", b"")
        if state["headers"] is None and status.startswith(b"1"):
            state["interim"].append(fields)  # a 1xx: the final head follows (RFC 9113 8.1)
            return
        state["trailers" if state["headers"] is not None else "headers"] = fields
        if end_stream:
            state["end"] = "end"

    def _frame(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == SETTINGS and not flags & ACK:
            self.sock.sendall(raw_frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            if self.answer_pings:
                self.sock.sendall(raw_frame(PING, ACK, 0, payload))
            else:
                self.unanswered.append(payload)
        elif kind == GOAWAY:
            self.goaway = goaway_error(payload)
        elif kind in (HEADERS, CONTINUATION):
            if kind == HEADERS:
                if flags & 0x8:  # PADDED
                    payload = payload[1:len(payload) - payload[0]]
                if flags & 0x20:  # PRIORITY
                    payload = payload[5:]
                self.block = (stream, bytearray(payload), bool(flags & END_STREAM))
            else:
                assert self.block and self.block[0] == stream, "CONTINUATION out of place"
                self.block[1].extend(payload)
            if flags & END_HEADERS:
                self._headers(*self.block)
                self.block = None
        elif kind == DATA:
            if flags & 0x8:
                payload = payload[1:len(payload) - payload[0]]
            state = self.streams[stream]
            state["body"] += payload
            if flags & END_STREAM:
                state["end"] = "end"
        elif kind == RST_STREAM and stream in self.streams:
            self.streams[stream]["end"] = "reset"
            self.streams[stream]["reset_code"] = struct.unpack(">I", payload[:4])[0]

    def exchange(self, stream: int) -> dict:
        """Everything about `stream` until it ends, is reset, or the connection goes."""
        state = self.streams[stream]
        while state["end"] is None:
            if self.goaway and stream > self.goaway[0]:
                state["end"] = "refused"  # past the GOAWAY's last stream: never processed
                break
            try:
                frame = self.reader.next()
            except TimeoutError:
                raise AssertionError(f"HTTP/2 server hung; so far {short(state)}") from None
            if frame is None:
                self.closed = True
                state["end"] = "eof"
                break
            self._frame(*frame)
        return state

    def close(self) -> None:
        self.sock.close()


def check_h2_head(headers: list[tuple[bytes, bytes]]) -> None:
    """What RFC 9113 8.2 and 8.3 ask of a response's field block."""
    names = [n for n, _ in headers]
    assert names[0] == b":status" and names.count(b":status") == 1, headers
    assert not any(n.startswith(b":") for n in names[1:]), headers
    assert all(n == n.lower() for n in names), f"uppercase field name: {headers}"
    for name, value in headers:
        assert name not in H2_DROPPED, f"connection-specific {name!r} in an HTTP/2 response"
        assert value == value.strip(b" \t"), f"value with surrounding whitespace: {name!r}"
        assert not any(b in value for b in b"\r\n\x00"), (name, value)


def early_hints_h2(hints: list[list[bytes]]) -> list[list[tuple[bytes, bytes]]]:
    """The field blocks of the 103s an HTTP/2 client gets for these hints."""
    return [[(b":status", b"103")] + [(b"link", v) for v in links] for links in hints]


def run_h2(fz: Fuzzing, plan_id: str, wire: Wire, method: str) -> list:
    """Holds the response to the model; returns the interim (1xx) field blocks before it,
    for the caller to judge once it knows whether the scope offered early hints."""
    client = H2Client(fz)
    try:
        got = client.exchange(client.request(method, f"/run/{plan_id}"))
        note(f"HTTP/2 response: {short(got)}")
        headers = got["headers"]
        if headers:
            check_h2_head(headers)
        status = int(headers[0][1]) if headers else None
        if wire.kind in ("server-error", "file-error"):
            assert status == 500 and got["end"] == "end", got
            expected = b"Internal Server Error" + (b"\n" if wire.kind == "file-error" else b"")
            assert bytes(got["body"]) == (b"" if method == "HEAD" else expected), got["body"]
        elif wire.end == "cut":
            assert got["end"] != "end", f"a cut response ended cleanly: {short(got)}"
            assert bytes(wire.body).startswith(bytes(got["body"])), "bytes the app never sent"
            assert status in (None, wire.status)
        else:
            assert got["end"] == "end" and status == wire.status, short(got)
            check_headers(headers[1:], wire, http2=True)
            no_body = method == "HEAD" or wire.status in (204, 304)
            assert bytes(got["body"]) == (b"" if no_body else bytes(wire.body)), \
                f"body {bytes(got['body'])[:100]!r} != {bytes(wire.body)[:100]!r}"
            lengths = {v for n, v in headers if n == b"content-length"}
            if lengths and not no_body:  # the app's own may be "00": 1*DIGIT, its number
                assert all(v.isdigit() for v in lengths) \
                    and {int(v) for v in lengths} == {len(got["body"])}, \
                    (lengths, len(got["body"]))
            assert by_name(got["trailers"] or []) == by_name(wire.trailers or []), \
                (got["trailers"], wire.trailers)
            for name, _ in got["trailers"] or []:
                assert name == name.lower() and not name.startswith(b":"), got["trailers"]
        if not client.closed:
            follow = client.exchange(client.request("GET", "/ok"))
            # A server that is closing the connection (GOAWAY) may refuse a new stream.
            refused = follow["end"] == "refused" or (
                client.goaway and follow["end"] == "reset" and follow["reset_code"] == 7)
            if not refused:
                assert follow["end"] == "end" and bytes(follow["body"]) == b"ok", short(follow)
                assert not follow["interim"], f"a 1xx for a response without hints: {follow}"
        return got["interim"]
    finally:
        client.close()


# ----- the fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fz(module_server, tmp_path_factory) -> Fuzzing:
    folder = tmp_path_factory.mktemp("pathsend")
    files, contents = {}, {}
    for name, data in PATHSEND_FILES.items():
        path = folder / name
        path.write_bytes(data)
        files[name], contents[str(path)] = str(path), data
    files["missing"] = str(folder / "missing")
    files["folder"] = str(folder)
    srv = module_server.start(APP, "--no-access-log")
    return Fuzzing(srv, files, contents)


@pytest.fixture(autouse=True)
def _fresh_log(request):
    if "fz" in request.fixturenames:
        request.getfixturevalue("fz").skip_log()


# ----- the properties -----------------------------------------------------------------------------

def plan_strategy(skeleton, random_message) -> st.SearchStrategy:
    return st.fixed_dictionaries({
        "messages": mutated(skeleton, random_message).map(
            lambda ms: [encode_message(m) for m in ms]),
        "on_error": st.sampled_from(["raise", "raise", "return", "continue"]),
        "end": st.sampled_from(["return", "return", "return", "raise"]),
        "receive_first": st.booleans(),
    })


@st.composite
def http_case(draw, fz_files: dict[str, str]) -> dict:
    skeleton = draw(http_skeleton(fz_files))
    plan = draw(plan_strategy(skeleton, random_http_message(fz_files)))
    return plan


def expected_http(fz: Fuzzing, plan: dict, method: str, http2: bool):
    rules = Rules()
    model = HttpModel(rules, method, fz.contents)
    outcomes, failed = run_model(model, plan)
    if http2 and model.wire and model.wire.trailers:
        # Connection-specific fields are dropped from HTTP/2 trailers as from heads.
        model.wire.trailers = [(n, v) for n, v in model.wire.trailers if n not in H2_DROPPED]
    return model, outcomes, failed, rules.known


def check_http_example(fz: Fuzzing, plan: dict, method: str, protocol: str,
                       te_trailers: bool = False, pipelined: bool = False,
                       expect_continue: bool = False) -> None:
    """`protocol`: "h1" (HTTP/1.1), "h10" (HTTP/1.0) or "h2"."""
    http2 = protocol == "h2"
    model, outcomes, failed, known = expected_http(fz, plan, method, http2)
    # An HTTP/1.1 client gets the 103s, an HTTP/1.0 one none: it takes no 1xx (RFC 9110
    # 15.2). The scope offers the extension so.
    interim = early_hints_h1(model.early_hints) if protocol == "h1" else []
    note(f"plan: {short(plan, 4000)}")
    note(f"model: outcomes={outcomes} failed={failed} wire={model.wire} known={known} "
         f"early hints={short(model.early_hints)}")
    for name in known:
        event(f"skipped: known bug {name}")
    assume(not known)
    event(f"response: {model.wire.kind} {model.wire.end}")
    event(f"send() raised: {sum(kind != 'ok' for kind in outcomes)}")
    event(f"early hints due: {min(len(model.early_hints), 2)}")
    plan_id = fz.put_plan(plan)
    request_body = b"request body" if method == "POST" else b""
    if http2:
        h2_interim = run_h2(fz, plan_id, model.wire, method)
    elif protocol == "h10":
        run_h10(fz, plan_id, model.wire, method, request_body)
    else:
        run_h1(fz, plan_id, model.wire, interim, method, te_trailers, pipelined, request_body,
               expect_continue)
    run = fz.finished_run(plan_id)
    sent = run["sent"]
    assert [kind for _, kind, _ in sent] == outcomes, f"send() outcomes {sent}"
    offered = "http.response.early_hint" in run["extensions"]
    if http2:
        # Over HTTP/2 the engine sends 103s where it offers the extension, and none where it
        # does not (an app may send the message anyway: it is dropped).
        want = early_hints_h2(model.early_hints) if offered else []
        if model.wire.end == "cut":
            # A reset stream sends nothing more: 103s still queued behind it may be lost.
            want = want[:len(h2_interim)]
        assert h2_interim == want, f"HTTP/2 1xx {short(h2_interim)} != {short(want)} " \
                                   f"(extension offered: {offered})"
    else:
        assert offered == (protocol == "h1"), \
            f"extensions offered over {protocol}: {run['extensions']}"
    if model.wire.kind == "server-error":
        # The app failed before its response started: a 500, and an error line.
        fz.wait_log(f"fuzz plan {plan_id}" if failed else model.problem)
    elif model.wire.kind == "file-error":
        fz.wait_log("http.response.pathsend: cannot send")
    fz.assert_serving()
    fz.skip_log()


@fuzz_settings(400)
@given(data=st.data(), method=st.sampled_from(["GET", "GET", "POST", "HEAD"]),
       te_trailers=st.booleans(), pipelined=st.booleans(), expect_continue=st.booleans())
def test_http_messages_over_http11(fz, data, method, te_trailers, pipelined, expect_continue):
    plan = data.draw(http_case(fz.files), label="plan")
    check_http_example(fz, plan, method, "h1", te_trailers, pipelined,
                       expect_continue=expect_continue and method == "POST")


@fuzz_settings(250)
@given(data=st.data(), method=st.sampled_from(["GET", "GET", "GET", "HEAD"]))
def test_http_messages_over_http2(fz, data, method):
    plan = data.draw(http_case(fz.files), label="plan")
    check_http_example(fz, plan, method, "h2")


@fuzz_settings(150)
@given(data=st.data(), method=st.sampled_from(["GET", "GET", "POST", "HEAD"]))
def test_http_messages_over_http10(fz, data, method):
    plan = data.draw(http_case(fz.files), label="plan")
    check_http_example(fz, plan, method, "h10")


# ----- WebSocket -------------------------------------------------------------------------------

#: Fields of the 101 that the handshake owns: an app's own are not checked against it.
WS_OWN = {b"connection", b"upgrade", b"sec-websocket-accept", b"sec-websocket-protocol",
          b"sec-websocket-extensions", b"content-length", b"transfer-encoding", b"date",
          b"server"}
OFFERED = ["chat", "superchat"]


@st.composite
def ws_text(draw) -> str:
    if draw(st.integers(0, 20)) == 0:
        return "\u00e9\u2603" * draw(st.integers(10000, 40000))  # past 64 KiB of UTF-8
    return draw(st.text(max_size=20))


@st.composite
def ws_send(draw, clean: bool) -> dict:
    items = [("type", e_str("websocket.send"))]
    shape = draw(st.sampled_from(["text", "text", "bytes", "bytes"] + ([] if clean else [
        "both", "neither", "text-none-bytes", "bytes-none-text", "wrong-text", "wrong-bytes"])))
    if shape in ("text", "text-none-bytes"):
        items.append(("text", [draw(st.sampled_from(["str", "str", "strsub"])),
                               draw(ws_text())]))
        if shape == "text-none-bytes":
            items.append(("bytes", ["none"]))
    elif shape in ("bytes", "bytes-none-text"):
        items.append(("bytes", draw(body_data().flatmap(bytes_like))))
        if shape == "bytes-none-text":
            items.append(("text", ["none"]))
    elif shape == "both":
        items += [("text", e_str("t")), ("bytes", e_bytes(b"b"))]
    elif shape == "neither":
        items += draw(st.sampled_from([[], [("text", ["none"]), ("bytes", ["none"])]]))
    elif shape == "wrong-text":
        items.append(("text", draw(st.one_of(junk, st.just(e_bytes(b"not str"))))))
    else:
        items.append(("bytes", draw(st.one_of(junk, st.just(e_str("not bytes"))))))
    return msg(items)


@st.composite
def ws_close(draw, clean: bool) -> dict:
    items = [("type", e_str("websocket.close"))]
    code = draw(st.sampled_from(["missing", "none", "ok", "ok", "ok"] + ([] if clean else [
        "reserved", "junk"])))
    if code == "none":
        items.append(("code", ["none"]))
    elif code == "ok":
        items.append(("code", e_int(draw(st.sampled_from([1000, 1001, 1003, 1007, 1011, 1014,
                                                          3000, 4000, 4999])))))
    elif code == "reserved":
        items.append(("code", e_int(draw(st.sampled_from([0, 999, 1004, 1005, 1006, 1015,
                                                          2999, 5000, 65535, 70000, -1])))))
    elif code == "junk":
        items.append(("code", draw(st.one_of(junk, st.just(e_str("1000"))))))
    reason = draw(st.sampled_from(["missing", "none", "short", "long"] + ([] if clean else [
        "junk"])))
    if reason == "none":
        items.append(("reason", ["none"]))
    elif reason == "short":
        items.append(("reason", e_str(draw(st.text(max_size=10)))))
    elif reason == "long":  # past the 123 bytes a close frame holds
        items.append(("reason", e_str(draw(st.sampled_from(["x", "\u00e9", "\u2603"]))
                                      * draw(st.integers(40, 130)))))
    elif reason == "junk":
        items.append(("reason", draw(st.one_of(junk, st.just(e_bytes(b"bytes"))))))
    return msg(items)


@st.composite
def ws_skeleton(draw) -> list:
    clean = draw(st.integers(0, 2)) > 0
    flow = draw(st.sampled_from(["accept", "accept", "accept", "reject", "deny"]))
    if flow == "reject":
        items = [("type", e_str("websocket.close"))]
        if draw(st.booleans()):  # a code and reason before accepting go nowhere: unchecked
            items.append(("code", draw(st.one_of(junk, st.just(e_int(1000))))))
        return [msg(items)]
    if flow == "deny":
        body = draw(st.lists(body_data(), max_size=3))
        extra = []
        if draw(st.integers(0, 3)) == 0:
            extra.append(("content-length", str(sum(map(len, body)))))
        start = [("type", e_str("websocket.http.response.start")),
                 ("status", draw(status_field(not clean))),
                 ("headers", draw(headers_field(extra, allow_bad=not clean)))]
        messages = [msg(start)]
        for i, chunk in enumerate(body or [b""]):
            last = i == max(len(body), 1) - 1
            items = [("type", e_str("websocket.http.response.body")),
                     ("body", draw(bytes_like(chunk)))]
            if not last or draw(st.booleans()):
                items.append(("more_body", truthy(draw, not last)))
            messages.append(msg(items))
        return messages
    accept = [("type", e_str("websocket.accept"))]
    sub = draw(st.sampled_from(["missing", "none", "offered", "other"] + ([] if clean else [
        "junk", "bad-chars"])))
    if sub == "none":
        accept.append(("subprotocol", ["none"]))
    elif sub == "offered":
        accept.append(("subprotocol", e_str(draw(st.sampled_from(OFFERED)))))
    elif sub == "other":
        accept.append(("subprotocol", e_str("unoffered")))
    elif sub == "junk":
        accept.append(("subprotocol", draw(st.one_of(junk, st.just(e_bytes(b"chat"))))))
    elif sub == "bad-chars":
        accept.append(("subprotocol", e_str(draw(st.sampled_from(["a\r\nb", "\x00", "\x7f",
                                                                   "caf\u00e9"])))))
    if draw(st.booleans()):
        accept.append(("headers", draw(headers_field(allow_bad=not clean))))
    messages = [msg(accept)]
    messages += [draw(ws_send(clean)) for _ in range(draw(st.integers(0, 4)))]
    if draw(st.integers(0, 3)):
        messages.append(draw(ws_close(clean)))
    return messages


@st.composite
def random_ws_message(draw) -> dict | list:
    kind = draw(st.sampled_from(["websocket.accept", "websocket.send", "websocket.close",
                                 "websocket.http.response.start",
                                 "websocket.http.response.body", "http.response.start",
                                 "http.response.early_hint", "websocket.bogus", "not-a-dict",
                                 "no-type"]))
    if kind == "websocket.send":
        return draw(ws_send(clean=False))
    if kind == "websocket.close":
        return draw(ws_close(clean=False))
    if kind == "not-a-dict":
        return draw(junk)
    if kind == "no-type":
        return msg([("text", e_str("x"))])
    items: list[tuple[str, list]] = [("type", e_str(kind))]
    if kind in ("websocket.http.response.start", "http.response.start"):
        items.append(("status", draw(status_field())))
        items.append(("headers", draw(headers_field())))
    elif kind == "websocket.http.response.body":
        items.append(("body", draw(st.one_of(body_data().flatmap(bytes_like), junk))))
    elif kind == "websocket.accept" and draw(st.booleans()):
        items.append(("subprotocol", draw(junk)))
    elif kind == "http.response.early_hint":  # an HTTP extension's: unknown here
        items.append(("links", draw(links_field())))
    return msg(items)


@dataclass(repr=False)
class WsWire:
    """What the WebSocket client must see."""
    kind: str = "none"  # "accept", "reject" (403), "deny" (the app's response), "failed" (500)
    subprotocol: str | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    status: int = 0
    body: bytearray = field(default_factory=bytearray)
    frames: list[tuple[int, bytes]] = field(default_factory=list)  # (opcode, payload)
    close: tuple[int, bytes] | None = None  # the close frame's code and reason

    def __repr__(self) -> str:
        return (f"WsWire({self.kind}, sub={self.subprotocol!r}, headers={short(self.headers)}, "
                f"status={self.status}, body={short(bytes(self.body), 80)}, "
                f"frames={short(self.frames)}, close={self.close})")


def client_close_code(code: int) -> bool:
    """The close codes the server takes from a client (yawc's CloseCode::is_allowed): those
    of RFC 6455 7.4.1 and 1012-1013, not 1014, which an app may send."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1013 or 3000 <= code <= 4999


class WsModel:
    """websocket.rs as a spec: the handshake's order and the messages' forms."""

    def __init__(self, rules: Rules, receive_first: bool) -> None:
        self.r = rules
        self.state = "connected" if receive_first else "connecting"
        self.wire = WsWire()
        self.problem: str | None = None

    def expect_handshake(self) -> None:
        if self.state == "over":
            raise Refused("OSError")
        if self.state in ("accepted", "denying"):
            raise Refused()

    def send(self, message: Any) -> None:
        message, kind = self.r.message_and_type(message)
        handler = {"websocket.send": self.send_data, "websocket.accept": self.accept,
                   "websocket.close": self.close, "websocket.http.response.start": self.deny,
                   "websocket.http.response.body": self.deny_body}.get(kind)
        if handler is None:
            raise Refused()
        handler(message)

    def accept(self, message: dict) -> None:
        self.expect_handshake()
        sub = message.get("subprotocol")
        if sub is not None:
            if not isinstance(sub, str):
                raise Refused()
            try:
                sub.encode("utf-8")
            except UnicodeEncodeError:
                raise Refused() from None
        headers = self.r.headers(message)
        self.state = "accepted"
        self.wire.kind = "accept"
        self.wire.subprotocol = sub
        self.wire.headers = headers

    def send_data(self, message: dict) -> None:
        if self.state == "over":
            raise Refused("OSError")
        if self.state != "accepted":
            raise Refused()
        data, text = message.get("bytes"), message.get("text")
        if data is not None and text is None:
            payload = self.r.bytes_like(data)
            if payload is None:
                raise Refused()
            self.wire.frames.append((2, payload))
        elif text is not None and data is None:
            if not isinstance(text, str):
                raise Refused()
            self.wire.frames.append((1, self.r.utf8(text)))
        else:
            raise Refused()

    def close(self, message: dict) -> None:
        if self.state in ("connecting", "connected"):
            self.state = "over"
            self.wire.kind = "reject"
            return
        if self.state == "denying":
            raise Refused()
        if self.state == "over":
            raise Refused("OSError")
        code = message.get("code")
        code = 1000 if code is None else code
        if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 65535:
            raise Refused()
        reason = message.get("reason")
        reason = "" if reason is None else reason
        if not isinstance(reason, str):
            raise Refused()
        try:
            data = reason.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused() from None
        if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
            raise Refused()
        if len(data) > 123:
            data = data[:123]
            while True:  # cut at a character boundary
                try:
                    data.decode("utf-8")
                    break
                except UnicodeDecodeError:
                    data = data[:-1]
        self.state = "over"
        self.wire.close = (code, data)

    def deny(self, message: dict) -> None:
        self.expect_handshake()
        status = self.r.status(message)
        headers = self.r.headers(message)
        self.state = "denying"
        self.wire.status, self.wire.headers = status, headers

    def deny_body(self, message: dict) -> None:
        if self.state != "denying":
            raise Refused()
        self.wire.body += self.r.body(message)
        if not bool(message.get("more_body", False)):
            # The whole body is framed by its own length: the app's Content-Length and
            # Transfer-Encoding (whatever they say) never reach the wire.
            self.state = "over"
            self.wire.kind = "deny"

    def conclude(self, failed: bool) -> None:
        if self.state in ("connecting", "connected", "denying"):
            self.wire = WsWire("failed", status=500)
            if not failed:
                self.problem = "ASGI callable returned without completing the WebSocket " \
                               "handshake."
        elif self.state == "accepted":
            self.wire.close = (1011 if failed else 1000, b"")


def ws_request(path: str, subprotocols: bool) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    extra = f"Sec-WebSocket-Protocol: {', '.join(OFFERED)}\r\n" if subprotocols else ""
    return (f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def ws_frames(reader: H1Reader) -> tuple[list[tuple[int, bytes]], tuple[int, bytes] | None]:
    """The server's data messages (fragments joined) until its close frame, and the close's
    code and reason; control frames other than close are skipped."""
    messages: list[tuple[int, bytes]] = []
    partial: tuple[int, bytearray] | None = None
    while True:
        head = reader.exactly(2)
        assert len(head) == 2, f"connection closed without a close frame; got {short(messages)}"
        fin, opcode, n = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
        assert not head[1] & 0x80, "a server frame must not be masked"
        assert not head[0] & 0x70, "RSV bits set without an extension"
        if n == 126:
            n = struct.unpack(">H", reader.exactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", reader.exactly(8))[0]
        payload = reader.exactly(n)
        assert len(payload) == n, "connection closed inside a frame"
        if opcode == 8:
            assert n != 1, "a close payload of one byte"
            return messages, (struct.unpack(">H", payload[:2])[0], payload[2:]) if n else None
        if opcode in (9, 10):
            continue
        if opcode == 0:
            assert partial is not None, "a continuation frame with no message to continue"
            partial[1].extend(payload)
        else:
            assert partial is None, "a new message inside a fragmented one"
            partial = (opcode, bytearray(payload))
        if fin:
            messages.append((partial[0], bytes(partial[1])))
            partial = None


def check_ws(fz: Fuzzing, plan_id: str, wire: WsWire, subprotocols: bool) -> None:
    with fz.connect() as sock:
        sock.sendall(ws_request(f"/ws/{plan_id}", subprotocols))
        reader = H1Reader(sock)
        resp = reader.response("GET")
        note(f"WebSocket handshake response: {short(resp)}")
        assert resp is not None, "no answer to the WebSocket handshake"
        if wire.kind == "accept":
            assert resp.status == 101, resp.raw_head
            have = by_name(resp.headers)
            sub = wire.subprotocol
            valid = sub is not None and all(b >= 32 and b != 127 or b == 9 for b in sub.encode())
            assert have.get(b"sec-websocket-protocol") == ([sub.encode().strip(b" \t")]
                                                          if valid else None), resp.raw_head
            for name, values in by_name(wire.headers).items():
                if name not in WS_OWN:
                    assert have.get(name) == [v.strip(b" \t") for v in values], name
            messages, close = ws_frames(reader)
            assert messages == wire.frames, f"messages {short(messages)} != {short(wire.frames)}"
            assert close == wire.close, (close, wire.close)
            mask = os.urandom(4)
            payload = struct.pack(">H", close[0])
            sock.sendall(bytes([0x88, 0x80 | len(payload)]) + mask
                         + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
            # One close frame per endpoint (RFC 6455 5.5.1): nothing more, then the end.
            assert reader.at_eof(), f"the server did not close the connection after the " \
                                    f"close: {bytes(reader.buf)!r}"
            return
        expected = {"reject": (403, b"Forbidden\n"), "failed": (500, b"Internal Server Error\n"),
                    "deny": (wire.status, bytes(wire.body))}[wire.kind]
        assert resp.complete and resp.status == expected[0], resp
        assert bytes(resp.body) == (b"" if wire.status in (204, 304) else expected[1]), \
            f"body {short(bytes(resp.body))} != {short(expected[1])}"
        if wire.kind == "deny":
            check_headers(resp.headers, Wire("response", wire.status, wire.headers), False)
            # Framed by the body the app sent, whatever its own Content-Length said.
            assert by_name(resp.headers).get(b"content-length") == (
                None if wire.status in (204, 304) else [str(len(wire.body)).encode()]), \
                resp.raw_head
            assert b"transfer-encoding" not in by_name(resp.headers), resp.raw_head
        if connection_close(resp.headers):
            assert reader.at_eof()
            return
        sock.sendall(OK_REQUEST)  # the connection is still in step
        follow = reader.response("GET")
        assert follow is not None and (follow.status, bytes(follow.body)) == (200, b"ok"), \
            f"the connection fell out of step: {short(follow)}"


def run_ws_model(plan: dict) -> tuple[WsModel, list[str], bool, set[str]]:
    rules = Rules()
    model = WsModel(rules, plan["receive_first"])
    outcomes, failed = run_model(model, plan)
    return model, outcomes, failed, rules.known


@fuzz_settings(250)
@given(data=st.data(), subprotocols=st.booleans())
def test_websocket_messages(fz, data, subprotocols):
    skeleton = data.draw(ws_skeleton(), label="skeleton")
    plan = data.draw(plan_strategy(skeleton, random_ws_message()), label="plan")
    model, outcomes, failed, known = run_ws_model(plan)
    note(f"plan: {short(plan, 4000)}")
    note(f"model: outcomes={outcomes} failed={failed} wire={model.wire} known={known}")
    for name in known:
        event(f"skipped: known bug {name}")
    assume(not known)
    event(f"handshake: {model.wire.kind}")
    event(f"send() raised: {sum(kind != 'ok' for kind in outcomes)}")
    plan_id = fz.put_plan(plan)
    check_ws(fz, plan_id, model.wire, subprotocols)
    run = fz.finished_run(plan_id)
    sent = run["sent"]
    assert [kind for _, kind, _ in sent] == outcomes, f"send() outcomes {sent}"
    assert "http.response.early_hint" not in run["extensions"], run["extensions"]
    if model.wire.kind == "failed":
        fz.wait_log(f"fuzz plan {plan_id}" if failed else model.problem)
    fz.assert_serving()
    fz.skip_log()


# ----- the bugs this fuzzing found, one plain test each (they fail until fixed) ---------------

def plain_plan(*messages: dict, on_error: str = "raise") -> dict:
    """A plan from ordinary Python messages (bytes, str, ints, lists, tuples, dicts)."""
    def enc(value: Any) -> list:
        if value is None:
            return ["none"]
        if isinstance(value, bool):
            return e_bool(value)
        if isinstance(value, int):
            return e_int(value)
        if isinstance(value, str):
            return e_str(value)
        if isinstance(value, bytes):
            return e_bytes(value)
        if isinstance(value, (list, tuple)):
            return ["list" if isinstance(value, list) else "tuple", [enc(v) for v in value]]
        return e_dict([(k, enc(v)) for k, v in value.items()])
    return {"messages": [enc(m) for m in messages], "on_error": on_error, "end": "return",
            "receive_first": False}


def start(status: int = 200, headers=(), **extra) -> dict:
    return {"type": "http.response.start", "status": status, "headers": list(headers), **extra}


def body(data: bytes = b"", more: bool = False) -> dict:
    return {"type": "http.response.body", "body": data, "more_body": more}


def h1_exchange(fz: Fuzzing, plan: dict, method: str = "GET", te: bool = False,
                follow: bool = True) -> tuple[H1Response | None, H1Response | None, list]:
    """Runs a plan over HTTP/1.1 with a pipelined GET /ok behind it."""
    plan_id = fz.put_plan(plan)
    with fz.connect() as sock:
        sock.sendall(h1_request(method, f"/run/{plan_id}", te, b"")
                     + (OK_REQUEST if follow else b""))
        reader = H1Reader(sock)
        first = reader.response(method)
        second = reader.response("GET") if follow and first is not None else None
    return first, second, fz.result(plan_id)


def h2_exchange(fz: Fuzzing, plan: dict, method: str = "GET") -> dict:
    plan_id = fz.put_plan(plan)
    client = H2Client(fz)
    try:
        return client.exchange(client.request(method, f"/run/{plan_id}"))
    finally:
        client.close()


def test_bug_surrogate_in_a_header_str_raises_runtime_error(fz):
    """A str header name or value must be ASCII; one with a lone surrogate must be refused
    like any other non-ASCII str (RuntimeError naming the field), not with the
    UnicodeEncodeError of the UTF-8 conversion."""
    resp, _, sent = h1_exchange(fz, plain_plan(start(200, [("x-a", "\ud800")])), follow=False)
    assert resp.status == 500
    assert sent[0][1] == "RuntimeError", sent


def test_bug_surrogate_in_a_message_type_raises_runtime_error(fz):
    """Found when the fuzz model stopped skipping surrogates: the message type was still
    converted with the UnicodeEncodeError of UTF-8, not refused as the app's error."""
    resp, _, sent = h1_exchange(fz, plain_plan({"type": "http.response.\ud800"}),
                                follow=False)
    assert resp.status == 500
    assert sent[0][1] == "RuntimeError", sent


def test_bug_content_length_on_a_204_is_checked_or_dropped(fz):
    """RFC 9110 8.6: no Content-Length in a 204; an invalid one must never reach the wire
    (a strict client such as h11 refuses the whole response)."""
    resp, follow, _ = h1_exchange(fz, plain_plan(start(204, [(b"content-length", b"abc")]),
                                                 body(b"hello")))
    assert resp.status in (204, 500)
    assert b"content-length" not in dict(resp.headers), resp.raw_head


def test_bug_head_response_content_length_is_checked(fz):
    """RFC 9110 8.6: a Content-Length is a number of bytes. GET refused an invalid one
    (RuntimeError, 500); HEAD sent it as is, and one beside Transfer-Encoding made hyper
    refuse the head: the client got no response at all. A HEAD answer's Content-Length
    describes the GET response; it is checked as for GET now."""
    for headers in ([(b"content-length", b"abc")],
                    [(b"content-length", b"5"), (b"content-length", b"6")],
                    [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")]):
        plan = plain_plan(start(200, headers), body(b"hello"))
        resp, follow, sent = h1_exchange(fz, plan, method="HEAD")
        assert resp is not None, f"no response to HEAD with {headers}"
        assert resp.status == 500 and bytes(resp.body) == b"", resp.raw_head
        assert sent[0][1] == "RuntimeError", sent
        assert connection_close(resp.headers), resp.raw_head  # as for any failed app
        got = h2_exchange(fz, plan, method="HEAD")
        assert int(dict(got["headers"])[b":status"]) == 500, got
        assert bytes(got["body"]) == b"", got


def test_bug_engine_adds_no_content_length_to_a_204(fz):
    """RFC 9110 8.6: a 204 has no Content-Length. The app's was dropped, but the engine
    added its own: the body's length in answer to HEAD, the file's for pathsend."""
    cases = [(plain_plan(start(204), body(b"hello")), "HEAD"),
             (plain_plan(start(204), {"type": "http.response.pathsend",
                                      "path": fz.files["ten"]}), "GET"),
             (plain_plan(start(204), {"type": "http.response.pathsend",
                                      "path": fz.files["ten"]}), "HEAD")]
    for plan, method in cases:
        resp, follow, _ = h1_exchange(fz, plan, method=method)
        assert resp.status == 204 and bytes(resp.body) == b""
        assert b"content-length" not in by_name(resp.headers), (method, resp.raw_head)
        assert follow is not None and (follow.status, bytes(follow.body)) == (200, b"ok")
        got = h2_exchange(fz, plan, method=method)
        assert int(dict(got["headers"])[b":status"]) == 204, got
        assert b"content-length" not in by_name(got["headers"]), (method, got["headers"])


def test_bug_head_response_with_content_length_twice_gets_an_answer(fz):
    """Two equal Content-Length fields were accepted for GET; for HEAD hyper refused the
    head and the client got no response at all. Both now say it once."""
    headers = [(b"content-length", b"5"), (b"content-length", b"5")]
    for method in ("HEAD", "GET"):
        resp, follow, sent = h1_exchange(fz, plain_plan(start(200, headers), body(b"hello")),
                                         method=method)
        assert resp is not None, f"no response to {method}"
        assert resp.status == 200 and sent == [[0, "ok", ""], [1, "ok", ""]]
        assert by_name(resp.headers)[b"content-length"] == [b"5"], resp.raw_head
        assert bytes(resp.body) == (b"" if method == "HEAD" else b"hello")
        assert follow is not None and follow.status == 200


def test_bug_trailers_do_not_hide_a_body_short_of_its_content_length(fz):
    """With trailers announced, a body that ends short of its Content-Length must be caught
    as without trailers (RuntimeError, the client sees an incomplete response); today send()
    succeeds and an HTTP/1.1 client gets no response at all."""
    plan = plain_plan(start(200, [(b"content-length", b"5")], trailers=True), body(b"he"),
                      {"type": "http.response.trailers", "headers": []}, on_error="continue")
    resp, _, sent = h1_exchange(fz, plan, te=True, follow=False)
    assert "RuntimeError" in [kind for _, kind, _ in sent], sent
    assert resp is not None and resp.status == 200 and not resp.complete


def test_bug_pathsend_with_transfer_encoding_gets_an_answer(fz):
    """pathsend after a start with Transfer-Encoding: the engine adds Content-Length, hyper
    refuses a head with both, and the client gets an empty reply (logged as a 200)."""
    path = fz.files["ten"]
    plan = plain_plan(start(200, [(b"transfer-encoding", b"chunked")]),
                      {"type": "http.response.pathsend", "path": path})
    resp, follow, _ = h1_exchange(fz, plan)
    assert resp is not None, "empty reply"
    assert resp.status == 200 and bytes(resp.body) == b"0123456789"
    # The app's framing is kept: chunked, no Content-Length beside it.
    assert dict(resp.headers).get(b"transfer-encoding") == b"chunked", resp.raw_head
    assert b"content-length" not in dict(resp.headers), resp.raw_head
    assert follow is not None and follow.status == 200  # the connection goes on


def test_bug_streaming_past_64k_on_a_204_does_not_block_for_ever(fz):
    """A 204 (or 304) has no body, so the engine never drains one: an app that streams more
    than the 64 KiB buffer waits in send() for ever, even after the client left, and its
    task (and admission slot) is never freed."""
    plan = plain_plan(start(204), body(b"x" * 100_000, more=True), body(b""))
    plan_id = fz.put_plan(plan)
    with fz.connect() as sock:
        sock.sendall(h1_request("GET", f"/run/{plan_id}", False, b""))
        assert H1Reader(sock).response("GET").status == 204
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        status, raw = fz.http("GET", f"/result/{plan_id}")
        if json.loads(raw)["done"]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the app's send() still blocks 3 s after the 204 went out")


def test_bug_http2_204_carries_no_body(fz):
    """RFC 9110 15.3.5: a 204 ends with its header section; HTTP/1.1 drops the app's body,
    HTTP/2 sends it as DATA (with a Content-Length)."""
    got = h2_exchange(fz, plain_plan(start(204), body(b"hello")))
    assert got["end"] == "end"
    assert bytes(got["body"]) == b"", got
    assert b"content-length" not in dict(got["headers"]), got["headers"]


def test_bug_http2_204_by_pathsend_carries_no_body(fz):
    """RFC 9110 15.3.5, 15.4.5: a 204 or 304 has no content. Body messages were dropped over
    HTTP/2, but pathsend sent the file as DATA (HTTP/1.1 sent none)."""
    for status in (204, 304):
        got = h2_exchange(fz, plain_plan(start(status), {"type": "http.response.pathsend",
                                                         "path": fz.files["ten"]}))
        assert got["end"] == "end" and int(dict(got["headers"])[b":status"]) == status, got
        assert bytes(got["body"]) == b"", got


def test_bug_http2_head_gets_no_body_with_a_500(fz):
    """RFC 9110 9.3.2: a HEAD response has no content; the engine's own 500 over HTTP/2
    carries "Internal Server Error" as DATA."""
    got = h2_exchange(fz, plain_plan({"type": "http.response.bogus"}), method="HEAD")
    assert int(dict(got["headers"])[b":status"]) == 500
    assert bytes(got["body"]) == b"", got


def test_bug_http2_connection_specific_trailer_does_not_lose_the_response(fz):
    """Connection-specific fields are dropped from HTTP/2 heads (README); in a trailer the
    h2 crate refuses them and the stream is reset (INTERNAL_ERROR) with the body lost, while
    the app's send() succeeded."""
    plan = plain_plan(start(200, trailers=True), body(b"hi"),
                      {"type": "http.response.trailers",
                       "headers": [(b"connection", b"close"), (b"x-checksum", b"1"),
                                   (b"te", b"gzip"), (b"transfer-encoding", b"chunked")]})
    got = h2_exchange(fz, plan)
    assert got["end"] == "end" and bytes(got["body"]) == b"hi", got
    assert by_name(got["trailers"] or []) == {b"x-checksum": [b"1"]}, got


def test_bug_every_trailer_field_of_one_message_is_sent(fz):
    """Two fields of one name in one trailers message: only the first is sent (the loop over
    the HeaderMap keeps only entries that carry a name)."""
    plan = plain_plan(start(200, trailers=True), body(b"hi"),
                      {"type": "http.response.trailers",
                       "headers": [(b"x-t", b"1"), (b"x-u", b"2"), (b"x-t", b"3")]})
    got = h2_exchange(fz, plan)
    assert by_name(got["trailers"] or []) == {b"x-t": [b"1", b"3"], b"x-u": [b"2"]}, got


def test_bug_http2_header_value_with_surrounding_whitespace(fz):
    """RFC 9113 8.2.1: a field value must not start or end with whitespace; HTTP/1.1 clients
    trim it, HTTP/2 clients (h2, nghttp2) reject the response as malformed. The server sent
    the app's value as is; it now trims it (RFC 9110 5.5: the whitespace is not part of the
    value), over HTTP/2 and HTTP/1.1 alike."""
    headers = [(b"x-a", b" \tpadded "), (b"x-b", b"in side")]
    got = h2_exchange(fz, plain_plan(start(200, headers), body(b"hi")))
    check_h2_head(got["headers"])
    assert by_name(got["headers"])[b"x-a"] == [b"padded"]
    assert by_name(got["headers"])[b"x-b"] == [b"in side"]
    resp, _, _ = h1_exchange(fz, plain_plan(start(200, headers), body(b"hi")), follow=False)
    assert b"\r\nx-a: padded\r\n" in resp.raw_head, resp.raw_head


def test_bug_http2_response_over_its_length_ends_only_its_stream(fz):
    """A response over its Content-Length made the engine close the HTTP/2 connection, and a
    request sent after its first GOAWAY was reset with INTERNAL_ERROR, then counted as
    processed by the final GOAWAY: a client could not retry it safely. HTTP/2 frames each
    stream on its own, so now the stream ends at its declared bytes, the app's send() fails,
    and the connection serves on with no GOAWAY."""
    plan = plain_plan(start(200, [(b"content-length", b"10")]), body(b"x" * 5, more=True),
                      body(b"y" * 10))
    plan_id = fz.put_plan(plan)
    client = H2Client(fz)
    try:
        first = client.exchange(client.request("GET", f"/run/{plan_id}"))
        assert first["end"] == "end" and bytes(first["body"]) == b"xxxxxyyyyy", first
        follow = client.exchange(client.request("GET", "/ok"))
        assert follow["end"] == "end" and bytes(follow["body"]) == b"ok", follow
        assert client.goaway is None
    finally:
        client.close()
    assert [kind for _, kind, _ in fz.result(plan_id)] == ["ok", "ok", "RuntimeError"]


def test_bug_websocket_denial_is_held_to_its_content_length(fz):
    """A denial response (websocket.http.response.*) with a Content-Length shorter than its
    body: all the body goes out, past the declared length, and the next response on the
    connection is read from the middle of it (a response split by the app's bytes)."""
    plan = plain_plan({"type": "websocket.http.response.start", "status": 401,
                       "headers": [(b"content-length", b"3")]},
                      {"type": "websocket.http.response.body",
                       "body": b"abcHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"})
    plan_id = fz.put_plan(plan)
    with fz.connect() as sock:
        sock.sendall(ws_request(f"/ws/{plan_id}", False) + OK_REQUEST)
        reader = H1Reader(sock)
        first = reader.response("GET")
        assert first.status in (401, 500)
        second = reader.response("GET")
        assert second is None or (second.status, bytes(second.body)) == (200, b"ok"), \
            f"the next response is the app's bytes: {second}"


def assert_nothing_after_the_close_reply(fz: Fuzzing, close: dict, sent: tuple[int, bytes],
                                         reply: bytes) -> None:
    """The app accepts and closes with `close`; the client sees that close frame (`sent`,
    its code and reason), answers with a close frame of payload `reply`, and then the server
    must send nothing more (RFC 6455 1.4 and 5.5.1)."""
    plan_id = fz.put_plan(plain_plan({"type": "websocket.accept"}, close))
    with fz.connect() as sock:
        sock.sendall(ws_request(f"/ws/{plan_id}", False))
        reader = H1Reader(sock)
        assert reader.response("GET").status == 101
        assert ws_frames(reader) == ([], sent)
        mask = os.urandom(4)
        sock.sendall(bytes([0x88, 0x80 | len(reply)]) + mask
                     + bytes(b ^ mask[i % 4] for i, b in enumerate(reply)))
        assert reader.at_eof(), f"more after the close: {bytes(reader.buf)!r}"


@pytest.mark.parametrize("reply", [struct.pack(">H", 1014), struct.pack(">H", 999),
                                   struct.pack(">H", 1005), b"\x03", b"\x0f\xa1\xff\xfe"],
                         ids=["1014", "999", "1005", "one-byte", "reason-not-utf8"])
def test_bug_websocket_no_second_close_frame_for_a_refused_close_reply(fz, reply):
    """RFC 6455 1.4 and 5.5.1: after sending its close frame an endpoint sends nothing more.
    The app closes with 1014 (Bad Gateway, accepted by send()); a client reply the frame
    layer takes as invalid (an echoed 1014, a code no endpoint may send, a one-byte payload,
    a reason that is not UTF-8) got a second close frame (1002 or 1007) before the server
    closed the connection. Now the connection just ends."""
    assert_nothing_after_the_close_reply(fz, {"type": "websocket.close", "code": 1014},
                                         (1014, b""), reply)


def test_bug_websocket_server_sends_one_close_frame(fz):
    """RFC 6455 5.5.1: after its own close frame the server must not send another when the
    client answers it."""
    assert_nothing_after_the_close_reply(
        fz, {"type": "websocket.close", "code": 4001, "reason": "bye"}, (4001, b"bye"),
        struct.pack(">H", 4001))
