"""Every declared field of the Plivo, Sinch, Infobip, SMSAPI, MessageBird and AWS SNS readers,
under every spelling a vendor stack could bind to it (case, surrounding space, ``[]``, ``[0]``,
``.x``, a NUL): read as that field, or refused; never let through as something else.

Unit level (the reader the message stage calls) for the whole matrix, then a sample end to end.
"""

from __future__ import annotations

import pytest

from gateway.core.errors import GatewayError
from gateway.messages.base import Message
from tests.vendor_fields import (
    CASES,
    NAMES,
    NEVER,
    VendorCase,
    control_value,
    display,
    last_key,
    segments,
    spellings,
)

MATRIX = [(name, f.name) for name in NAMES for f in CASES[name].table.fields]


def read(case: VendorCase, request: object) -> Message | GatewayError:
    return read_raw(case, case.encode(request))


def read_raw(case: VendorCase, body: bytes) -> Message | GatewayError:
    try:
        return case.reader().parse(body, case.content_type)
    except GatewayError as exc:
        return exc


def value_for(case: VendorCase, name: str) -> object:
    f = next(f for f in case.table.fields if f.name == name)
    if f.role in ("control", "callback_url"):
        return control_value(case, f)
    if f.role == "recipient":
        return "37255512368" if case.name != "sinch" else ["37255512368"]
    return control_value(case, f) if f.name in ("encoding", "Version", "Action", "MessageStructure") else "x"


@pytest.mark.parametrize(("name", "field"), MATRIX, ids=[f"{n}:{f}" for n, f in MATRIX])
def test_every_spelling_of_a_declared_field_is_that_field_or_refused(name: str, field: str) -> None:
    case = CASES[name]
    f = next(x for x in case.table.fields if x.name == field)
    key = last_key(f)
    value = value_for(case, field)
    for spelling in spellings(key, case.kind):
        outcome = read(case, case.with_field(field, value, key=spelling))
        if isinstance(outcome, GatewayError):
            assert outcome.status in (400, 403), (spelling, outcome)
            assert outcome.code in ("bad_request", "unknown_field", "field_not_allowed"), (spelling, outcome)
            continue
        # Read: only a policed field may be, and then as itself, marked as misspelled (the
        # route's policy refuses it: 403 when not allowed, 400 when allowed).
        assert f.role in ("control", "callback_url"), (spelling, outcome)
        (control,) = [c for c in outcome.controls if c.name == display(f)]
        assert not control.exact, spelling


@pytest.mark.parametrize(("name", "field"), MATRIX, ids=[f"{n}:{f}" for n, f in MATRIX])
def test_a_declared_field_written_exactly_is_read_with_its_role(name: str, field: str) -> None:
    case = CASES[name]
    f = next(x for x in case.table.fields if x.name == field)
    if case.present(f):
        outcome = read(case, case.base)
    else:
        request = case.with_field(field, value_for(case, field))
        if (name, field) == ("plivo", "powerpack_uuid"):
            del request["src"]  # one or the other, as the SDK insists
        outcome = read(case, request)
    if (name, field) in NEVER:
        assert isinstance(outcome, GatewayError) and outcome.code == NEVER[name, field]
        return
    assert isinstance(outcome, Message), outcome
    names = [c.name for c in outcome.controls]
    if f.role in ("control", "callback_url"):
        assert names == [display(f)]
        assert all(c.exact for c in outcome.controls)
    else:
        assert names == []


@pytest.mark.parametrize("name", NAMES)
def test_a_nul_in_any_field_name_is_refused(name: str) -> None:
    """C-based stacks end a name at a NUL: ``send_at\\x00x`` is ``send_at`` there."""
    case = CASES[name]
    for f in case.table.fields:
        key = last_key(f)
        outcome = read(case, case.with_field(f.name, value_for(case, f.name), key=key + "\x00x"))
        assert isinstance(outcome, GatewayError) and outcome.status == 400, f.name


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("messagebird", b'{"recipients": "37255512367", "groupIds": ["g1"], "body": "x"}'),
        ("messagebird", b'{"recipients": "37255512367", " GroupIds": ["g1"], "body": "x"}'),
        ("smsapi", b"group=all&message=x"),
        ("smsapi", b"to=48500500500&Group%5B%5D=all&message=x"),
        ("aws-sns", b"Action=Publish&TopicArn=arn%3Aaws%3Asns%3Ax&Message=x"),
        ("aws-sns", b"Action=Publish&PhoneNumber=%2B37255512367&targetarn=arn%3Aaws%3Asns%3Ax&Message=x"),
    ],
)
def test_fan_out_fields_are_refused_as_not_allowed_with_or_without_numbers(name: str, body: bytes) -> None:
    """A contact group or topic: its members are not in the request, so nothing the gateway checks
    would apply to them. Refused (403) however written, before anything else is read."""
    outcome = read_raw(CASES[name], body)
    assert isinstance(outcome, GatewayError)
    assert (outcome.status, outcome.code) == (403, "field_not_allowed")
    assert outcome.detail is not None and outcome.detail.startswith("control:")


NESTED = [
    (name, f.name)
    for name in NAMES
    if CASES[name].kind == "json"
    for f in CASES[name].table.fields
    if len([s for s in segments(f.name) if s != "*"]) > 1
]


@pytest.mark.parametrize(("name", "field"), NESTED, ids=[f"{n}:{f}" for n, f in NESTED])
def test_a_parent_object_in_another_spelling_never_hides_a_field(name: str, field: str) -> None:
    """``Webhooks`` for ``webhooks`` on the way to a callback URL: a vendor that binds it reads the
    URL, so the gateway must still see it as the callback field (or refuse the request)."""
    case = CASES[name]
    f = next(x for x in case.table.fields if x.name == field)
    steps = segments(field)
    for depth, seg in enumerate(steps[:-1]):
        if seg == "*":
            continue
        for spelling in spellings(seg, "json"):
            request = case.with_field(field, value_for(case, field))
            node: object = request
            for step in steps[:depth]:
                node = node[0] if step == "*" else node[step]  # type: ignore[index]
            assert isinstance(node, dict)
            node[spelling] = node.pop(seg)
            outcome = read(case, request)
            if isinstance(outcome, GatewayError):
                assert outcome.status in (400, 403), (seg, spelling, outcome)
            elif f.role in ("control", "callback_url"):
                assert display(f) in [c.name for c in outcome.controls], (seg, spelling)
            else:
                # read: then never as a message field read from somewhere else
                assert f.role in ("content", "harmless"), (seg, spelling, outcome)
