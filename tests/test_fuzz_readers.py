"""Property tests over every adapter's reader (tests/readers.py): random bytes and mutations of a
valid request, under valid and hostile content types.

Properties: a reader either reads a message or refuses with 400 ``bad_request`` (never another
exception, never a message quoting input); and whatever it reads, a strict reference reading of
the same bytes agrees. For forms the reference is ``parse_qsl`` plus what lenient parsers (PHP,
Express ``qs``, case-insensitive binders) would fold into a message field: each such field is
there at most once, and holds exactly what the gateway read. For JSON the reference is a second
parse that refuses duplicate keys, non-standard constants, NULs and nesting past 32, and walks the
vendor's recipient pointers itself. Bounded by tests/fuzzing.py (``SMSGW_FUZZ=deep`` for more).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.errors import GatewayError
from gateway.messages.base import Message
from gateway.messages.forms import MAX_JSON_DEPTH
from tests.fuzzing import examples
from tests.readers import CASES, FORM, JSON, ReaderCase

CONTENT_TYPES = [
    FORM,
    JSON,
    f"{FORM}; charset=utf-8",
    f"{JSON}; charset=UTF-8",
    f"{FORM}; charset=latin1",
    f"{JSON}; charset*=utf-8''latin1",
    "application/vnd.x+json",
    "multipart/form-data; boundary=b",
    "text/plain",
    "",
    f"{FORM}, {JSON}",
    "application/json; charset=utf-8; charset=utf-8",
    "\x00/\x00",
    "application/x-www-form-urlencoded;;;=;charset",
]

#: Fragments that matter to some parser: separators, escapes, brackets, encodings, field names.
FRAGMENTS = [
    b"&", b"=", b";", b"%", b"%00", b"%2B", b"+", b"%2C", b",", b"<", b"[", b"]", b"[]", b".",
    b" ", b"%20", b'"', b"\\", b"{", b"}", b":", b"\\u0000", b"\\ud800", b"\\u0074o", b"\x00",
    b"\xff", b"\xc0\xaf", b"\xef\xbb\xbf", "\uff11".encode(), "\u0661".encode(), "\u200b".encode(),
    b"NaN", b"1e999", b"-0", b"00", b"+372", b"37255512367", b"12015550123", b"To", b"TO", b"to",
    b"to[]", b"To%00", b"from", b"From", b"Body", b"text", b"message", b"dst", b"recipients",
    b"destinations", b"messages", b"sender", b"Action=Publish", b"PhoneNumber", b"group", b"groupIds",
    b"message_type", b"custom", b"failover", b'"to":"12015550123",', b',"to":"1"', b"[[[[", b"]]]]",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` with one to four edits: a fragment put in, a slice cut or doubled, a byte changed."""
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "replace", "cut", "double", "flip"]))
        if op == "insert":
            data[at:at] = draw(st.sampled_from(FRAGMENTS) | st.binary(min_size=1, max_size=4))
        elif op == "replace":
            end = draw(st.integers(at, min(len(data), at + 8)))
            data[at:end] = draw(st.sampled_from(FRAGMENTS))
        elif op == "cut":
            del data[at : draw(st.integers(at, min(len(data), at + 12)))]
        elif op == "double":
            end = draw(st.integers(at, min(len(data), at + 24)))
            data[end:end] = data[at:end]
        elif data:
            i = min(at, len(data) - 1)
            data[i] = draw(st.integers(0, 255))
    return bytes(data)


def read(case: ReaderCase, body: bytes, content_type: str) -> Message | None:
    """The reader's message, or None when it refused (which must be a clean 400)."""
    try:
        return case.parse(body, content_type)
    except GatewayError as exc:
        # unknown_field: a name the reader's field table does not declare (closed by default)
        assert (exc.status, exc.code) in ((400, "bad_request"), (400, "unknown_field")), exc
        for value in ("5551236", "2015550", "hello", "MyBank", "493817"):  # never quoted back
            assert value not in exc.message, exc.message
        return None


# --------------------------------------------------------------------------- the reference readings


def lenient_names(name: str) -> set[str]:
    """What lenient parsers may take a form field name for: PHP ends it at a NUL and drops leading
    spaces, qs cuts it at ``[`` (and ``.`` with allowDots), binders ignore case."""
    out = {name.casefold()}
    cut = name.split("\x00", 1)[0].lstrip()
    for sep in ("[", "."):
        cut = cut.split(sep, 1)[0]
    out.add(cut.strip().casefold())
    return out


def check_form(case: ReaderCase, body: bytes, message: Message) -> None:
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    assert not any("\x00" in n or "\x00" in v for n, v in pairs)
    seen_values: list[str] = []
    for (name,) in (where for where in case.singles if len(where) == 1):
        name = str(name)
        if "." in name:  # an AWS attribute: read exactly, and its role depends on its Name
            assert len([v for n, v in pairs if n == name]) <= 1
            continue
        else:
            values = [v for n, v in pairs if name.casefold() in lenient_names(n)]
            assert all(n == name for n, v in pairs if name.casefold() in lenient_names(n))
        assert len(values) <= 1, (name, values)  # a single-valued field the vendor reads once
        seen_values += values
    recipient = str(case.recipient[0]) if case.name != "generic-form" else "to"
    sent = [v for n, v in pairs if n == recipient]
    split = [p.strip() for v in sent for p in v.split(",")] if case.name == "smsapi" else sent
    assert list(message.recipients) == split
    read_texts = {*message.recipients, *message.senders, *message.bodies, *message.secrets}
    for value in seen_values:
        if value and case.name != "smsapi":
            assert value in read_texts, value


class _Strict(Exception):
    pass


def _strict_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    folded = [k.replace("\x00", "").strip().casefold() for k, _ in pairs]
    if len(set(folded)) != len(folded):
        raise _Strict("duplicate key")
    return dict(pairs)


def _constant(_: str) -> Any:
    raise _Strict("constant")


def _depth(node: Any) -> int:
    if isinstance(node, dict):
        return 1 + max((_depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((_depth(v) for v in node), default=0)
    return 0


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [*node, *(s for v in node.values() for s in _strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def _walk(node: Any, steps: list[str]) -> list[Any]:
    if not steps:
        return [node]
    step, rest = steps[0], steps[1:]
    if step == "*":
        return [v for item in node for v in _walk(item, rest)] if isinstance(node, list) else []
    if isinstance(node, dict) and step in node:
        return _walk(node[step], rest)
    if isinstance(node, list) and step.isdigit() and int(step) < len(node):
        return _walk(node[int(step)], rest)
    return []


def check_json(case: ReaderCase, body: bytes, message: Message) -> None:
    doc = json.loads(body.decode("utf-8"), object_pairs_hook=_strict_pairs, parse_constant=_constant)
    assert _depth(doc) <= MAX_JSON_DEPTH
    for text in _strings(doc):
        assert "\x00" not in text
    recipients: list[str] = []
    for pointer in case.pointers:
        for value in _walk(doc, pointer.split("/")[1:]):
            for item in value if isinstance(value, list) else [value]:
                text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
                assert isinstance(text, str), item
                parts = text.split(case.separator) if case.separator else [text]
                recipients += [p.strip() if case.separator else p for p in parts]
    assert list(message.recipients) == recipients


# --------------------------------------------------------------------------- the properties


CASE = st.sampled_from(CASES)


@settings(max_examples=examples(400))
@given(case=CASE, body=st.binary(max_size=300), content_type=st.sampled_from(CONTENT_TYPES))
def test_random_bytes_are_read_or_refused_cleanly(case: ReaderCase, body: bytes, content_type: str) -> None:
    message = read(case, body, content_type)
    if message is not None:
        (check_form if case.kind == "form" else check_json)(case, body, message)


@settings(max_examples=examples(1500))
@given(case=CASE, data=st.data())
def test_mutated_requests_are_read_as_the_reference_reads_them(case: ReaderCase, data: st.DataObject) -> None:
    body = data.draw(mutated(case.encode()), label="body")
    content_type = data.draw(
        st.sampled_from([case.content_type, case.content_type + "; charset=utf-8", *CONTENT_TYPES[:4]]),
        label="content_type",
    )
    message = read(case, body, content_type)
    if message is not None:
        (check_form if case.kind == "form" else check_json)(case, body, message)


@settings(max_examples=examples(300))
@given(
    case=CASE,
    texts=st.lists(st.text(max_size=40), min_size=1, max_size=3),
)
def test_any_text_in_a_message_field_is_read_as_sent_or_refused(case: ReaderCase, texts: list[str]) -> None:
    """Arbitrary Unicode (surrogates, controls, look-alike digits) written into the message fields
    by a correct encoder: the reader gets exactly those values back, or refuses."""
    doc: dict[str, Any] = json.loads(json.dumps(case.fields))
    for where, text in zip(case.singles[1:], texts, strict=False):
        doc = case.with_value(where, text) if doc == case.fields else _put(doc, where, text)
    try:
        body = case.encode(doc)
    except UnicodeEncodeError:
        return  # a lone surrogate cannot be sent as UTF-8 at all
    message = read(case, body, case.content_type)
    if message is not None:
        (check_form if case.kind == "form" else check_json)(case, body, message)
        for where, text in zip(case.singles[1:], texts, strict=False):
            if text and case.name != "smsapi":
                assert text in {*message.senders, *message.bodies, *message.secrets}, (where, text)


def _put(doc: dict[str, Any], where: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    node: Any = doc
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    return doc
