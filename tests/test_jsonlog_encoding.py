"""The access and audit lines are encoded by orjson where it writes exactly the reference
(standard library) bytes, and by the reference everywhere else: generated records must come out
byte for byte as the reference encoder writes them, so audit chains written before still verify."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import jsonlog
from gateway.core.errors import Reason
from gateway.core.events import AuditEvent, Detail
from gateway.core.jsonlog import encode_canonical, encode_line
from tests.fuzzing import examples

_REF_LINE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_REF_SORTED = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode


def reference_line(record: dict[str, Any]) -> bytes:
    return (_REF_LINE(record) + "\n").encode("utf-8", "backslashreplace")


def reference_canonical(record: dict[str, Any]) -> bytes:
    return _REF_SORTED(record).encode("utf-8", "backslashreplace")


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Tag(str):
    def __str__(self) -> str:
        return "tag:" + super().__str__()


@dataclasses.dataclass
class Point:
    x: int


text = st.text(st.characters(codec=None), max_size=12)  # lone surrogates and control characters too
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1e-4, 9.99e-5, 1e-5, 1e15, 1e16, 1e17, 1e20, 1e21, 1e22, 12.5, 5e-324, 1.7976931348623157e308]
)
ints = st.integers() | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1])
odd = st.sampled_from(
    [
        Colour.RED,
        Level.HIGH,
        Tag("x"),
        AuditEvent.OUTCOME,
        Reason.RATE_LIMITED,
        Detail.MALFORMED_BODY,
        Point(1),
        datetime.datetime(2026, 1, 2, 3, 4, 5),
        datetime.date(2026, 1, 2),
        uuid.UUID(int=7),
        b"raw",
        {1, 2},
    ]
)
scalars = st.none() | st.booleans() | ints | floats | text | odd
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(text | st.integers(-3, 3), inner, max_size=4)
    ),
    max_leaves=12,
)
records = st.dictionaries(text | st.sampled_from([1, True, None]), values, max_size=8)


@settings(max_examples=examples(400))
@given(records)
def test_every_record_is_encoded_as_the_reference_encodes_it(record: dict[Any, Any]) -> None:
    assert outcome(encode_line, record) == outcome(reference_line, record)
    assert outcome(encode_canonical, record) == outcome(reference_canonical, record)


def outcome(encode: Callable[[dict[Any, Any]], bytes], record: dict[Any, Any]) -> bytes | type[Exception]:
    """The bytes, or the kind of error (keys that cannot be sorted together fail both ways)."""
    try:
        return encode(record)
    except (TypeError, ValueError) as exc:
        return type(exc)


def test_a_plain_send_record_takes_the_fast_path_with_the_same_bytes() -> None:
    """The records the gateway writes on every send (strings, numbers, lists) are orjson's work."""
    record = {
        "request_id": "8f2c1f0e",
        "recipients": ["+37255*****12"],
        "recipient_count": 1,
        "countries": ["EE"],
        "status": 201,
        "reason": None,
        "upstream_ms": 1.234,
        "detail": "ünïcode ✓",
    }
    assert jsonlog._fast(record, jsonlog._CANONICAL) == reference_canonical(record)
    assert encode_line(record) == reference_line(record)


def test_an_audit_record_with_its_event_member_takes_the_fast_path_with_the_same_bytes() -> None:
    """Every audit record names its event by an enum member (a ``str`` subclass): still orjson's work."""
    record = {"event": AuditEvent.OUTCOME, "decision": "allow", "reason": Reason.RATE_LIMITED, "status": 201}
    assert jsonlog._fast(record, jsonlog._CANONICAL) == reference_canonical(record)
    wire = b'{"decision":"allow","event":"outcome","reason":"rate_limited","status":201}'
    assert encode_canonical(record) == wire
