"""Property tests end to end: random and mutated requests through a real gateway (sends with
basic, JWT and RFC 9421 credentials, Idempotency-Key, a signed Twilio callback route).

Properties: never a 500 (``internal_error``); every answer the gateway makes itself is the
documented JSON error with the security headers; every request that reached the vendor is one
the vendor's own reading (``parse_qsl`` over the bytes the vendor got) finds valid for the
client's policy; and no marker the requests carried shows up in any log (checked after each).
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.recipients.phone import parse_recipient
from tests.conftest import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    DEFAULT_POLICY,
    Gateway,
    GatewayFactory,
    Vendor,
    basic,
)
from tests.fuzzing import examples
from tests.test_fuzz_readers import mutated
from tests.tokens import HMAC_KEY_ID, HMAC_SECRET, JWT_SECRET, SUBJECT, claims, library_signed, token

EE = "+37255512367"
#: Never logged in clear, whatever the request looked like.
MARK_BODY = "fuzzbody" + secrets.token_hex(6)
MARK_DIGITS = "".join(secrets.choice("123456789") for _ in range(7))
PUBLIC = "https://sms-gw.example.com"
SIGNED = ("@method", "@target-uri", "content-digest")


@pytest.fixture
async def gateway_under_fuzz(
    make_gateway: GatewayFactory, vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> Gateway:
    monkeypatch.setenv("SMSGW_TEST_FUZZ_HMAC", HMAC_SECRET)
    monkeypatch.setenv("SMSGW_TEST_FUZZ_JWT", JWT_SECRET)
    doc: dict[str, Any] = json.loads(json.dumps(DEFAULT_POLICY))
    doc["client"][0].update(
        countries=["EE"],
        senders=["MyBank"],
        jwt_subject=SUBJECT,
        hmac_keys=[{"id": HMAC_KEY_ID, "secret": "env:SMSGW_TEST_FUZZ_HMAC"}],
    )
    doc["route"][0]["auth"] = ["jwt", "hmac", "basic"]
    doc["route"].append(
        {
            "name": "twilio-status",
            "methods": ["POST"],
            "path": "/callbacks/twilio/status",
            "kind": "webhook",
            "auth": [],
            "signature": "twilio",
            "forward_to": "http://127.0.0.1:9/status",  # nothing listens: a verified callback is 502
        }
    )
    issuer = {"issuer": "https://auth.example.test/", "audience": "smsgw", "leeway_s": 0}
    settings = {
        "server": {"public_url": PUBLIC},
        "auth": {
            "jwt": {"issuers": [{**issuer, "secret": "env:SMSGW_TEST_FUZZ_JWT", "algorithms": ["HS256"]}]}
        },
    }
    return await make_gateway(vendor.base_url, settings=settings, policies={"default": doc})


def valid_form(to: str = EE) -> bytes:
    return urlencode({"To": to, "From": "MyBank", "Body": f"{MARK_BODY} code {MARK_DIGITS}"}).encode()


FORM = "application/x-www-form-urlencoded"
PATHS = [
    f"/2010-04-01/Accounts/{CLIENT_USER}/Messages.json",
    f"/2010-04-01/Accounts/{CLIENT_USER}/Messages.json?x=1",
    f"/2010-04-01/Accounts/{CLIENT_USER}/Messages.json?Body={MARK_BODY}",
    "/2010-04-01/Accounts/%2e%2e/Messages.json",
    f"/2010-04-01/Accounts/{CLIENT_USER}/../Messages.json",
    "/callbacks/twilio/status",
    "/callbacks/twilio/status?To=%2B37255512367",
    "/",
    "/%00",
]


@st.composite
def hostile_request(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]], bytes]:
    method = draw(st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "OPTIONS"]))
    path = draw(st.sampled_from(PATHS))
    body = (
        draw(mutated(valid_form(draw(st.sampled_from([EE, "+12015550123", "+3725551"])))))
        if draw(st.booleans())
        else valid_form()
    )
    auth_kind = draw(st.sampled_from(["basic", "bad-basic", "jwt", "hmac", "none", "garbage", "twilio"]))
    content_type = draw(st.sampled_from([FORM, FORM + "; charset=utf-8", "application/json", "text/plain"]))
    headers: list[tuple[str, str]] = [("Content-Type", content_type)]
    url = PUBLIC + path
    if auth_kind == "basic":
        headers.append(("Authorization", basic(CLIENT_USER, CLIENT_PASSWORD)))
    elif auth_kind == "bad-basic":
        headers.append(("Authorization", basic(CLIENT_USER, CLIENT_PASSWORD + MARK_BODY)))
    elif auth_kind == "jwt":
        from joserfc.jwk import OctKey

        raw = token(OctKey.import_key(JWT_SECRET), "HS256", claims())
        headers.append(("Authorization", "Bearer " + draw(st.sampled_from([raw, raw[:-2], raw + "x"]))))
    elif auth_kind == "hmac":
        signed = library_signed("POST", url, body, components=SIGNED)
        headers += list(signed.items())
    elif auth_kind == "garbage":
        headers.append(
            ("Authorization", draw(st.text(max_size=30).map(lambda t: t.replace("\r", "").replace("\n", ""))))
        )
    elif auth_kind == "twilio":
        headers.append(("X-Twilio-Signature", draw(st.sampled_from(["", "abc=", "x" * 28]))))
    extra = [
        "Idempotency-Key",
        "Content-Encoding",
        "Expect",
        "Connection",
        "X-Forwarded-For",
        "Transfer-Encoding",
    ]
    for name in draw(st.lists(st.sampled_from(extra), max_size=2)):
        value = {
            "Idempotency-Key": draw(st.sampled_from(["k-1", "k-2", " ", "\u00e9"])),
            "Content-Encoding": "gzip",
            "Expect": "200-ok",
            "Connection": draw(st.sampled_from(["close", "Content-Type", "keep-alive"])),
            "X-Forwarded-For": "10.0.0.1",
            "Transfer-Encoding": "identity",
        }[name]
        headers.append((name, value))
    return method, path, headers, body


@settings(max_examples=examples(150))
@given(request=hostile_request())
async def test_hostile_requests_never_500_and_only_valid_sends_reach_the_vendor(
    gateway_under_fuzz: Gateway,
    vendor: Vendor,
    capfd: pytest.CaptureFixture[str],
    request: tuple[str, str, list[tuple[str, str]], bytes],
) -> None:
    gw = gateway_under_fuzz
    method, path, headers, body = request
    try:
        async with gw.session.request(
            method,
            gw.base + path,
            data=body,
            headers=headers,
            skip_auto_headers=["Content-Type"],
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response:
            payload = await response.read()
            status = response.status
            answer_headers = response.headers
    except (aiohttp.ClientError, ValueError):
        return  # the client library refused to send it, or the gateway closed the connection
    assert status != 500, payload
    assert "Strict-Transport-Security" in answer_headers and "X-Request-ID" in answer_headers
    if status >= 400 and answer_headers.get("Content-Type", "").startswith("application/json"):
        doc = json.loads(payload)
        if "error" in doc:
            assert set(doc["error"]) == {"code", "message", "request_id"}
            assert doc["error"]["code"] != "internal_error"
            assert MARK_BODY not in doc["error"]["message"]
    for seen in vendor.received:  # the vendor's own reading of what it got is a valid, allowed send
        fields = dict(parse_qsl(seen.body.decode("utf-8")))
        assert parse_recipient(fields["To"]).region == "EE"
        assert fields["From"] == "MyBank"
    written = gw.logs() + "".join(capfd.readouterr())  # the canary: nothing carried is in a log
    for marker in (MARK_BODY, MARK_DIGITS, CLIENT_PASSWORD, HMAC_SECRET, JWT_SECRET):
        assert marker not in written


async def test_the_unmutated_requests_pass(gateway_under_fuzz: Gateway, vendor: Vendor) -> None:
    """The starting points of the property above are accepted, so it is not a vacuous one."""
    gw = gateway_under_fuzz
    response = await gw.send({"To": EE, "From": "MyBank", "Body": "hi"})
    assert response.status == 201
    url = PUBLIC + PATHS[0]
    headers = {"Content-Type": FORM, **library_signed("POST", url, valid_form(), components=SIGNED)}
    async with gw.session.post(gw.base + PATHS[0], data=valid_form(), headers=headers) as answer:
        assert answer.status == 201, await answer.read()
    assert len(vendor.received) == 2
