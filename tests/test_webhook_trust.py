"""Callbacks trust only what is signed, and only where the vendor put its own fields.

A client sets the callback URL of each message it sends (every vendor lets it), so it can make
the vendor call ``/callbacks/...?MessageSid=<another message>&MessageStatus=delivered``. Some
vendors sign that query (Twilio, Plivo V3, MessageBird sign the whole URL), others do not (Sinch,
Messente, Vonage's JWT, Plivo V2); either way it is the client's word, not the vendor's. These
tests deliver genuine, vendor-signed receipts with such a query to the real gateway and check the
audit record, the duplicate decision and what a stand-in internal service receives.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import replace
from urllib.parse import parse_qsl, urlencode

import jwt as pyjwt
import pytest

from gateway.callbacks.base import BODY, NOWHERE, QUERY, Verified
from gateway.callbacks.events import forwarded_query
from tests import test_webhooks
from tests.conftest import VENDOR_TOKEN, GatewayFactory, Vendor, error_of
from tests.test_webhooks import (
    PUBLIC,
    Callback,
    Internal,
    Markers,
    Signer,
    deliver,
    records,
    webhook_gateway,
)

#: The stand-in internal service and the vendors' signer, shared with the callback tests.
internal = test_webhooks.internal
signer = test_webhooks.signer

#: Each scheme's message id and status field names, as a client would spell them in its URL.
NAMES = {
    "twilio": ("MessageSid", "MessageStatus"),
    "plivo-v3": ("MessageUUID", "Status"),
    "plivo": ("MessageUUID", "Status"),
    "vonage-jwt": ("message_uuid", "status"),
    "sinch": ("batch_id", "status"),
    "messente": ("message_id", "status"),
}
#: Schemes whose signature covers the URL's query: the rest of it still reaches the service.
QUERY_SIGNED = {"twilio", "plivo-v3"}


def with_query(signer: Signer, scheme: str, m: Markers, status: str, query: str) -> Callback:
    """The vendor's genuine callback for ``m`` at a URL whose query the client chose, signed the
    way the vendor signs it (the URL with its query, where the vendor signs the URL)."""
    cb = signer.make(scheme, m, status=status)
    target = cb.target + ("&" if "?" in cb.target else "?") + query
    fields = dict(parse_qsl(cb.body.decode()))
    if scheme == "twilio":
        from twilio.request_validator import RequestValidator

        sig = RequestValidator(VENDOR_TOKEN).compute_signature(PUBLIC + target, fields)
        return replace(cb, target=target, headers={**cb.headers, "X-Twilio-Signature": sig})
    if scheme == "plivo-v3":
        from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

        nonce = str(secrets.randbits(64))
        base = construct_post_url(PUBLIC + target, fields).decode()
        sig = get_signature_v3(signer.secret["plivo-v3"], base, nonce).decode()
        headers = {**cb.headers, "X-Plivo-Signature-V3": sig, "X-Plivo-Signature-V3-Nonce": nonce}
        return replace(cb, target=target, headers=headers)
    return replace(cb, target=target)  # the query is not under these signatures


@pytest.mark.parametrize("scheme", list(NAMES))
async def test_a_client_chosen_query_cannot_name_the_message_or_its_status(
    make_gateway: GatewayFactory, vendor: Vendor, internal: Internal, signer: Signer, scheme: str
) -> None:
    gw = await webhook_gateway(make_gateway, vendor, internal.url)
    a, b = Markers(), Markers()
    id_name, status_name = NAMES[scheme]
    # the client's URL for message B claims message A was delivered (the status name spelled
    # with a percent-escape, as a framework would still read it)
    escaped_status = status_name[0] + "%" + format(ord(status_name[1]), "02X") + status_name[2:]
    query = f"tenant=t1&{id_name}={a.message_id}&{escaped_status}=delivered"
    cb = with_query(signer, scheme, b, "undelivered", query)
    status, payload, _ = await deliver(gw, cb)
    assert (status, payload) == (200, b"<Response/>")

    decision, outcome = records(gw, scheme)
    signed_where = NOWHERE if scheme == "plivo" else BODY
    for record in (decision, outcome):
        assert (record["vendor_message_id"], record["vendor_status"]) == (b.message_id, "undelivered")
        assert record["verified_fields"] == signed_where
    (seen,) = internal.seen
    assert seen.body == cb.body
    assert seen.headers["X-Smsgw-Verified-Fields"] == signed_where
    kept = "tenant=t1" if scheme in QUERY_SIGNED else ""
    if scheme == "plivo-v3":
        kept = "app=sms&" + kept  # the route's own signed query stays
    assert seen.raw_query == kept

    # the genuine receipt for A comes later: not a duplicate of anything, forwarded, audited as A
    status, payload, _ = await deliver(gw, signer.make(scheme, a, status="delivered"))
    assert (status, payload) == (200, b"<Response/>")
    assert len(internal.seen) == 2
    last = records(gw, scheme)[-1]
    assert (last["vendor_message_id"], last["vendor_status"], last["status"]) == (
        a.message_id,
        "delivered",
        200,
    )


async def test_plivo_v2_ids_are_not_signed_so_they_never_drop_a_callback(
    make_gateway: GatewayFactory, vendor: Vendor, internal: Internal, signer: Signer
) -> None:
    """Plivo V2 signs the URL without its query and a nonce: no field. Two deliveries of the
    same report (two nonces) both reach the service; each is marked unverified."""
    gw = await webhook_gateway(make_gateway, vendor, internal.url)
    m = Markers()
    for _ in range(2):
        status, payload, _ = await deliver(gw, signer.make("plivo", m))
        assert (status, payload) == (200, b"<Response/>")
    assert len(internal.seen) == 2
    assert {r["detail"] for r in records(gw, "plivo")} == {None}
    assert {r["verified_fields"] for r in records(gw, "plivo")} == {NOWHERE}
    # a scheme that signs its fields still drops the copy
    s = Markers()
    for _ in range(2):
        assert (await deliver(gw, signer.make("sinch", s)))[0] == 200
    assert len(internal.seen) == 3
    assert records(gw, "sinch")[-1]["detail"] == "duplicate"


def messagebird_get(signer: Signer, target: str) -> Callback:
    now = int(time.time())
    claims = {
        "iss": "MessageBird",
        "nbf": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
        "url_hash": hashlib.sha256((PUBLIC + target).encode()).hexdigest(),
    }
    token = pyjwt.encode(claims, signer.secret["messagebird"], algorithm="HS256")
    return Callback("GET", target, {"MessageBird-Signature-JWT": token})


async def test_a_get_callback_that_gives_a_vendor_field_twice_is_refused(
    make_gateway: GatewayFactory, vendor: Vendor, internal: Internal, signer: Signer
) -> None:
    """MessageBird appends its fields to the client's report URL and signs the whole: a client
    URL ``?id=A`` followed by the vendor's ``&id=B`` leaves a reader to pick one. Refused (400:
    the vendor retries and a human sees it), nothing forwarded."""
    gw = await webhook_gateway(make_gateway, vendor, internal.url)
    a, b = Markers(), Markers()
    vendor_part = urlencode({"id": b.message_id, "recipient": b.to[1:], "status": "delivery_failed"})
    client_part = urlencode({"id": a.message_id, "status": "delivered"})
    status, payload, _ = await deliver(
        gw, messagebird_get(signer, f"/callbacks/messagebird?{client_part}&{vendor_part}")
    )
    assert (status, error_of(payload)["code"]) == (400, "bad_request")
    assert records(gw, "messagebird")[-1]["detail"] == "ambiguous_field"
    # a number twice is as ambiguous: the service would read the client's first
    client_number = urlencode({"recipient": a.to[1:]})
    target = f"/callbacks/messagebird?{client_number}&{vendor_part}"
    assert (await deliver(gw, messagebird_get(signer, target)))[0] == 400
    assert records(gw, "messagebird")[-1]["detail"] == "ambiguous_field"
    assert internal.seen == []
    # a client's own parameter beside the vendor's fields is fine, and forwarded as signed
    target = f"/callbacks/messagebird?ref=order-7&{vendor_part}"
    status, _, _ = await deliver(gw, messagebird_get(signer, target))
    assert status == 200
    assert internal.seen[0].raw_query == target.partition("?")[2]
    assert records(gw, "messagebird")[-1]["vendor_message_id"] == b.message_id
    assert records(gw, "messagebird")[-1]["verified_fields"] == QUERY


@pytest.mark.parametrize(
    ("query", "verified", "forwarded"),
    [
        ("a=1&MessageSid=X", Verified(BODY, query_signed=True), "a=1"),
        ("Message%53id=X&a=%20", Verified(BODY, query_signed=True), "a=%20"),
        ("Message+Sid=X&MessageSid%zz=1", Verified(BODY, query_signed=True), "Message+Sid=X&MessageSid%zz=1"),
        ("a=1&MessageSid=X", Verified(BODY, query_signed=False), ""),
        ("a=1&MessageSid=X", Verified(NOWHERE, query_signed=False), ""),
        ("MessageSid=X&a=1", Verified(QUERY, query_signed=True), "MessageSid=X&a=1"),
        ("%ff=1&b=2", Verified(BODY, query_signed=True), "b=2"),
        ("messagesid=X&MESSAGESID=Y&a=1", Verified(BODY, query_signed=True), "a=1"),
    ],
)
def test_forwarded_query(query: str, verified: Verified, forwarded: str) -> None:
    assert forwarded_query(query, verified, frozenset({"MessageSid"})) == forwarded
