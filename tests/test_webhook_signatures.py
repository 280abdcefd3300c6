"""Callback signature verifiers, checked against the vendors' published test vectors and against
the official SDKs' own validators on fresh random inputs (both directions: what the gateway
accepts the SDK accepts, and what the SDK signs the gateway accepts). Pure functions: no I/O.

Vectors, from the vendors' SDK repositories (the schemes: docs/callbacks.md): Twilio
``tests/unit/test_request_validator.py``; Vonage ``http_client/tests/test_auth.py`` and
``jwt/tests/test_verify_jwt.py``; Plivo
``tests/resources/test_signature.py`` and the V3 vectors of plivo-go; Sinch's callbacks webhook
test; MessageBird ``tests/test_request_validator/webhook_signature_test_data.json`` (its 44 cases
are the 16 distinct token/URL/payload triples below, each repeated for several HTTP methods,
which the signature does not cover).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import string
import time
import uuid
from urllib.parse import parse_qsl, urlencode

import jwt as pyjwt
import pytest
from multidict import CIMultiDict, MultiDict

from gateway.callbacks import jws
from gateway.callbacks.base import SignatureError, SignedRequest, decode_digest
from gateway.vendors.generic.callback import HmacHeaderVerifier
from gateway.vendors.messagebird import callback as messagebird
from gateway.vendors.messente.callback import MessenteVerifier
from gateway.vendors.plivo import callback as plivo
from gateway.vendors.plivo.callback import PlivoV2Verifier, PlivoV3Verifier
from gateway.vendors.sinch import callback as sinch
from gateway.vendors.sinch.callback import SinchVerifier
from gateway.vendors.twilio import callback as twilio
from gateway.vendors.twilio.callback import TwilioVerifier
from gateway.vendors.vonage import callback as vonage
from gateway.vendors.vonage import callback_jwt as vonage_jwt
from gateway.vendors.vonage.callback import VonageSigVerifier
from gateway.vendors.vonage.callback_jwt import VonageJwtVerifier

FORM = "application/x-www-form-urlencoded"


def request(
    url: str,
    headers: dict[str, str] | list[tuple[str, str]],
    body: bytes = b"",
    method: str = "POST",
    ct: str = "",
) -> SignedRequest:
    return SignedRequest(method, url, CIMultiDict(headers), body, ct)


def detail_of(verify, req: SignedRequest, now: float) -> str | None:
    try:
        verify(req, now)
    except SignatureError as exc:
        return exc.detail
    return None


# --------------------------------------------------------------------------- Twilio

TW_TOKEN = b"12345"
TW_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TW_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
TW_JSON = b'{"property": "value", "boolean": true}'


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (TW_URL, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        ("https://mycompany.com:443/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),
        ("http://mycompany.com:80/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
    ],
)
def test_twilio_published_vectors(url: str, expected: str) -> None:
    assert twilio.signature(TW_TOKEN, url, TW_PARAMS.items()) == expected


def test_twilio_duplicate_keys_vector() -> None:
    pairs = parse_qsl("Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234")
    assert twilio.signature(TW_TOKEN, TW_URL, pairs) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_twilio_body_sha256_vector() -> None:
    digest = twilio.body_hash(TW_JSON)
    assert digest == "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    url = f"{TW_URL}&bodySHA256={digest}"
    assert twilio.signature(TW_TOKEN, url, []) == "a9nBmqA0ju/hNViExpshrM61xv4="
    verify = TwilioVerifier(TW_TOKEN)
    ok = request(url, {"X-Twilio-Signature": "a9nBmqA0ju/hNViExpshrM61xv4="}, TW_JSON, ct="application/json")
    assert detail_of(verify, ok, 0) is None
    tampered = request(url, {"X-Twilio-Signature": "a9nBmqA0ju/hNViExpshrM61xv4="}, TW_JSON + b" ")
    assert detail_of(verify, tampered, 0) == "body_mismatch"


@pytest.mark.parametrize(
    ("signed_over", "received_at"),
    [
        ("https://mycompany.com:443/myapp.php?foo=1&bar=2", TW_URL),  # signed with the port, called without
        (TW_URL, "https://mycompany.com:443/myapp.php?foo=1&bar=2"),  # and the other way round
        (
            "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
            "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
        ),
    ],
)
def test_twilio_port_rule(signed_over: str, received_at: str) -> None:
    body = urlencode(TW_PARAMS).encode()
    sig = twilio.signature(TW_TOKEN, signed_over, TW_PARAMS.items())
    req = request(received_at, {"X-Twilio-Signature": sig}, body, ct=FORM)
    assert detail_of(TwilioVerifier(TW_TOKEN), req, 0) is None


def test_twilio_refusals() -> None:
    verify = TwilioVerifier(TW_TOKEN)
    body = urlencode(TW_PARAMS).encode()
    sig = twilio.signature(TW_TOKEN, TW_URL, TW_PARAMS.items())
    good = {"X-Twilio-Signature": sig}
    assert detail_of(verify, request(TW_URL, good, body, ct=FORM), 0) is None
    assert detail_of(verify, request(TW_URL, {}, body, ct=FORM), 0) == "missing_signature"
    assert detail_of(verify, request(TW_URL, good, body + b"&x=1", ct=FORM), 0) == "bad_signature"
    assert detail_of(verify, request(TW_URL + "&x=1", good, body, ct=FORM), 0) == "bad_signature"
    assert detail_of(verify, request(TW_URL.replace("mycompany", "evil"), good, body, ct=FORM), 0) == (
        "bad_signature"
    )
    twice = [("X-Twilio-Signature", sig), ("X-Twilio-Signature", "x")]
    assert detail_of(verify, request(TW_URL, twice, body, ct=FORM), 0) == "ambiguous_signature"
    # a JSON body with no bodySHA256 in the URL is signed by nobody
    assert detail_of(verify, request(TW_URL, good, TW_JSON, ct="application/json"), 0) == "unsigned_body"
    assert detail_of(verify, request(TW_URL, good, b"%zz", ct=FORM), 0) == "malformed"
    settings = {**good, "X-Twilio-Webhooks-Signature-Settings": "key=k1,algorithm=HMAC_MD5"}
    assert detail_of(verify, request(TW_URL, settings, body, ct=FORM), 0) == "unsupported_algorithm"


@pytest.mark.parametrize(
    "settings",
    [
        "&algorithm=HMAC_SHA256",  # the SDK finds its text inside; a comma split reads no algorithm
        "algorithm=hmac_sha256",  # case folded by one reader, not by the SDK
        "algorithm= HMAC_SHA256",  # a space the SDK's text match does not allow
        "algorithm=HMAC_SHA1,algorithm=HMAC_SHA256",  # two answers
        "Algorithm=HMAC_SHA256",
        "key=algorithm=HMAC_SHA256",
    ],
)
def test_twilio_settings_read_two_ways_are_refused(settings: str) -> None:
    """A settings header the vendor's SDK and a comma-splitting reader could read as two
    different digests is refused, whichever digest the signature was made with."""
    verify = TwilioVerifier(TW_TOKEN)
    body = urlencode(TW_PARAMS).encode()
    for algorithm in ("HMAC_SHA1", "HMAC_SHA256"):
        sig = twilio.signature(TW_TOKEN, TW_URL, TW_PARAMS.items(), algorithm)
        headers = {"X-Twilio-Signature": sig, "X-Twilio-Webhooks-Signature-Settings": settings}
        assert detail_of(verify, request(TW_URL, headers, body, ct=FORM), 0) in {
            "malformed",
            "unsupported_algorithm",
        }


def test_twilio_settings_as_twilio_writes_them_are_read() -> None:
    verify = TwilioVerifier(TW_TOKEN)
    body = urlencode(TW_PARAMS).encode()
    sig = twilio.signature(TW_TOKEN, TW_URL, TW_PARAMS.items(), "HMAC_SHA256")
    for settings in ("algorithm=HMAC_SHA256", "key=k1, algorithm=HMAC_SHA256 ", "key=k1"):
        headers = {"X-Twilio-Signature": sig, "X-Twilio-Webhooks-Signature-Settings": settings}
        expected = None if "algorithm" in settings else "bad_signature"
        assert detail_of(verify, request(TW_URL, headers, body, ct=FORM), 0) == expected


def _text(
    rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits + " +-_.:/&=?é€"
) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))


def _twilio_case(rng: random.Random) -> tuple[str, MultiDict[str]]:
    host = rng.choice(["example.com", "sms-gw.example.org", "a.b.c.example.net"])
    port = rng.choice(["", ":443", ":8443"])
    path = "/" + "/".join(_text(rng, 8, string.ascii_letters) or "p" for _ in range(rng.randint(1, 3)))
    query = (
        urlencode({_text(rng, 5, string.ascii_letters) or "q": _text(rng, 6)}) if rng.random() < 0.5 else ""
    )
    url = f"https://{host}{port}{path}" + (f"?{query}" if query else "")
    params: MultiDict[str] = MultiDict()
    for _ in range(rng.randint(0, 8)):
        key = rng.choice(
            ["To", "From", "Body", "MessageSid", "MessageStatus", _text(rng, 6, string.ascii_letters)]
        )
        params.add(key or "K", _text(rng, 20))
    return url, params


@pytest.mark.parametrize("seed", range(25))
def test_twilio_against_the_sdk_validator(seed: int) -> None:
    from twilio.request_validator import RequestValidator

    rng = random.Random(seed)
    token = _text(rng, 32, string.ascii_letters + string.digits) + "t"
    url, params = _twilio_case(rng)
    sdk = RequestValidator(token)
    algorithm = rng.choice(["HMAC_SHA1", "HMAC_SHA256"])
    headers = (
        {} if algorithm == "HMAC_SHA1" else {"X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_SHA256"}
    )
    body = urlencode(list(params.items())).encode()
    # the SDK signs, the gateway verifies
    sdk_sig = sdk.compute_signature(url, params, algorithm)
    req = request(url, {**headers, "X-Twilio-Signature": sdk_sig}, body, ct=FORM)
    assert detail_of(TwilioVerifier(token.encode()), req, 0) is None
    # the gateway signs, the SDK validates (with and without the port)
    ours = twilio.signature(token.encode(), url, params.items(), algorithm)
    assert sdk.validate(url, params, ours, algorithm)
    # a changed value fails both
    if params:
        changed = MultiDict(params)
        key = next(iter(changed))
        changed[key] = changed[key] + "x"
        assert not sdk.validate(url, changed, ours, algorithm)
        tampered = request(
            url, {**headers, "X-Twilio-Signature": ours}, urlencode(list(changed.items())).encode(), ct=FORM
        )
        assert detail_of(TwilioVerifier(token.encode()), tampered, 0) == "bad_signature"


@pytest.mark.parametrize("seed", range(10))
def test_twilio_json_body_against_the_sdk_validator(seed: int) -> None:
    from twilio.request_validator import RequestValidator

    rng = random.Random(1000 + seed)
    token = "tok" + _text(rng, 20, string.ascii_letters)
    body = json.dumps({"event": _text(rng, 30), "n": rng.randint(0, 10**6)})
    url = (
        f"https://example.com/cb?x={rng.randint(0, 9)}&bodySHA256={hashlib.sha256(body.encode()).hexdigest()}"
    )
    sig = RequestValidator(token).compute_signature(url, {})
    assert RequestValidator(token).validate(url, body, sig)
    req = request(url, {"X-Twilio-Signature": sig}, body.encode(), ct="application/json")
    assert detail_of(TwilioVerifier(token.encode()), req, 0) is None


# --------------------------------------------------------------------------- Vonage signed SMS

VG_SECRET = b"signature_secret"
VG_PARAMS = {"param1": "value1", "param2": "value2", "timestamp": "1234567890"}


def test_vonage_published_vectors() -> None:
    assert (
        vonage.signature(VG_SECRET, VG_PARAMS, "hmac-sha256")
        == "280c4320703dbc98bfa22db676655ed2acfbfe8792b062ff7622e67f1183c287"
    )
    assert vonage.signature(VG_SECRET, VG_PARAMS, "hmac-md5") == "724c2bf6ca423c36e20631b11d1c5753"
    special = {"param1": "value&1", "param2": "value=2", "timestamp": "1234567890"}
    assert vonage.signature(VG_SECRET, special, "hmac-md5") == "2bbf0abafb2c55e5af6231513896a2ac"
    # the SDK's check vector: its default "md5" is HMAC-MD5
    query = "param=value&timestamp=1234567890&sig=655a4d0b7f064dff438defc52b012cf5"
    req = request("https://gw.example/cb?" + query, {}, method="GET")
    assert detail_of(VonageSigVerifier(VG_SECRET, "hmac-md5", 300), req, 1234567890) is None
    assert detail_of(VonageSigVerifier(VG_SECRET, "hmac-sha1", 300), req, 1234567890) == "bad_signature"


def test_vonage_md5_hash_is_md5_of_string_and_secret() -> None:
    """The dashboard's default "MD5 hash" (no SDK validator left for it): MD5 over the signed
    string followed by the secret, as Vonage's signing-messages page describes."""
    expected = hashlib.md5(b"&param1=value1&param2=value2&timestamp=1234567890" + VG_SECRET).hexdigest()  # noqa: S324
    assert vonage.signature(VG_SECRET, VG_PARAMS, "md5-hash") == expected


def test_vonage_refusals() -> None:
    verify = VonageSigVerifier(VG_SECRET, "hmac-sha256", 300)
    params = {
        "msisdn": "447700900001",
        "messageId": "0A00000012345678",
        "status": "delivered",
        "timestamp": "1000",
    }
    sig = vonage.signature(VG_SECRET, params, "hmac-sha256")
    url = "https://gw.example/cb?" + urlencode({**params, "sig": sig.upper()})
    assert detail_of(verify, request(url, {}, method="GET"), 1000) is None  # hex is case-insensitive
    assert detail_of(verify, request(url, {}, method="GET"), 1000 + 301) == "expired"
    assert (
        detail_of(verify, request(url.replace("delivered", "failed"), {}, method="GET"), 1000)
        == "bad_signature"
    )
    assert detail_of(verify, request(url + "&status=failed", {}, method="GET"), 1000) == "malformed"
    no_sig = "https://gw.example/cb?" + urlencode(params)
    assert detail_of(verify, request(no_sig, {}, method="GET"), 1000) == "missing_signature"
    untimed = {k: v for k, v in params.items() if k != "timestamp"}
    url = "https://gw.example/cb?" + urlencode(
        {**untimed, "sig": vonage.signature(VG_SECRET, untimed, "hmac-sha256")}
    )
    assert detail_of(verify, request(url, {}, method="GET"), 1000) == "missing_timestamp"
    # a form POST and a flat JSON POST carry the same parameters
    body = urlencode({**params, "sig": sig}).encode()
    assert detail_of(verify, request("https://gw.example/cb", {}, body, ct=FORM), 1000) is None
    doc = json.dumps({**params, "sig": sig}).encode()
    assert detail_of(verify, request("https://gw.example/cb", {}, doc, ct="application/json"), 1000) is None
    nested = json.dumps({**params, "sig": sig, "extra": {"a": 1}}).encode()
    assert (
        detail_of(verify, request("https://gw.example/cb", {}, nested, ct="application/json"), 1000)
        == "malformed"
    )


@pytest.mark.parametrize("seed", range(20))
def test_vonage_against_the_sdk(seed: int) -> None:
    from vonage_http_client.auth import Auth

    rng = random.Random(2000 + seed)
    secret = "sec" + _text(rng, 30, string.ascii_letters + string.digits)
    method = rng.choice(["md5", "sha1", "sha256", "sha512"])
    params = {_text(rng, 8, string.ascii_letters) or "k": _text(rng, 20) for _ in range(rng.randint(1, 6))}
    params["timestamp"] = str(1_700_000_000 + rng.randint(0, 10**6))
    auth = Auth(api_key="key", signature_secret=secret, signature_method=method)
    sdk_sig = auth.sign_params(dict(params))
    ours = vonage.signature(secret.encode(), params, f"hmac-{method}")
    assert ours == sdk_sig
    assert auth.check_signature({**params, "sig": ours})
    body = urlencode({**params, "sig": sdk_sig}).encode()
    req = request("https://gw.example/cb", {}, body, ct=FORM)
    verify = VonageSigVerifier(secret.encode(), f"hmac-{method}", 300)
    assert detail_of(verify, req, float(params["timestamp"])) is None


# --------------------------------------------------------------------------- Vonage signed webhooks (JWT)

VG_JWT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJPbmxpbmUgSldUIEJ1aWxkZXIiLCJpYXQiOjE2OTc2MzQ2ODAsImV4cCI6"
    "MzMyNTQ1NDA4MjgsImF1ZCI6IiIsInN1YiI6IiJ9.88vJc3I2HhuqEDixHXVhc9R30tA6U_HQHZTC29y6CGM"
)


def test_vonage_jwt_published_vector() -> None:
    assert vonage_jwt.verify_token(VG_JWT, b"qwertyuiopasdfghjklzxcvbnm123456")["iat"] == 1697634680
    with pytest.raises(SignatureError) as info:
        vonage_jwt.verify_token(VG_JWT, b"asdf")
    assert info.value.detail == "bad_signature"
    verify = VonageJwtVerifier(b"qwertyuiopasdfghjklzxcvbnm123456", 300)
    req = request("https://gw.example/cb", {"Authorization": f"Bearer {VG_JWT}"})
    assert detail_of(verify, req, 1697634680 + 10) is None
    assert detail_of(verify, req, 1697634680 + 301) == "expired"
    # a body under a token without payload_hash is not covered by the signature
    assert detail_of(
        verify, request("https://gw.example/cb", {"Authorization": f"Bearer {VG_JWT}"}, b"{}"), 1697634690
    ) == ("unsigned_body")


@pytest.mark.parametrize("seed", range(10))
def test_vonage_jwt_against_the_sdk(seed: int) -> None:
    from vonage_jwt.verify_jwt import verify_signature

    rng = random.Random(3000 + seed)
    secret = "s" * 32 + _text(rng, 40, string.ascii_letters + string.digits)
    body = json.dumps(
        {"message_uuid": str(uuid.UUID(int=rng.getrandbits(128))), "status": "delivered"}
    ).encode()
    now = 1_700_000_000 + rng.randint(0, 10**6)
    claims = {
        "iat": now,
        "jti": str(uuid.uuid4()),
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": "k",
    }
    ours = jws.sign(claims, secret.encode())
    assert verify_signature(ours, secret)
    theirs = pyjwt.encode(claims, secret, algorithm="HS256")
    verify = VonageJwtVerifier(secret.encode(), 300)
    req = request("https://gw.example/cb", {"Authorization": f"Bearer {theirs}"}, body, ct="application/json")
    assert detail_of(verify, req, now) is None
    assert detail_of(verify, request(req.url, {"Authorization": f"Bearer {theirs}"}, body + b" "), now) == (
        "body_mismatch"
    )
    assert not verify_signature(ours, secret + "x")


def test_jws_refuses_none_and_other_algorithms() -> None:
    claims = {"iat": 1}
    head = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for token in (f"{head}.{body}.", jws.sign(claims, b"k", "HS384")):
        with pytest.raises(SignatureError) as info:
            jws.verify(token, b"k", ("HS256",))
        assert info.value.detail == "unsupported_algorithm"
    for broken in ("a.b", "x" * 9000, "é.é.é", f"{head}.{body}.+/=="):
        with pytest.raises(SignatureError):
            jws.verify(broken, b"k", ("HS256",))


def _signed_by_hand(header: dict, claims: dict, secret: bytes) -> str:
    """A correctly HS256-signed token with exactly this header (no library would make some)."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head, body = b64(json.dumps(header).encode()), b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def test_jws_refuses_a_critical_header_extension_nobody_checks() -> None:
    """RFC 7515 4.1.11: a token that marks an extension critical must be refused by a verifier that
    does not understand it; a correct signature does not make it acceptable."""
    secret, claims = b"s" * 32, {"iat": 1}
    assert (
        jws.verify(_signed_by_hand({"alg": "HS256", "typ": "JWT"}, claims, secret), secret, ("HS256",))
        == claims
    )
    for header in (
        {"alg": "HS256", "crit": ["exp-window"], "exp-window": 5},
        {"alg": "HS256", "crit": []},
        {"alg": "HS256", "b64": False, "crit": ["b64"]},  # the payload segment is not base64 then
    ):
        with pytest.raises(SignatureError) as info:
            jws.verify(_signed_by_hand(header, claims, secret), secret, ("HS256",))
        assert info.value.detail == "malformed_token", header


def test_jws_checks_hmac_only_whatever_the_caller_lists() -> None:
    """An asymmetric ``alg`` is refused even when the caller's list names it, and a public key
    used as an HMAC secret (the classic algorithm confusion) verifies nothing."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    es256 = pyjwt.encode({"iat": 1}, private, algorithm="ES256")
    with pytest.raises(SignatureError) as info:
        jws.verify(es256, public_pem, ("ES256", "HS256"))
    assert info.value.detail == "unsupported_algorithm"
    confused = _signed_by_hand({"alg": "HS256"}, {"iat": 1}, public_pem)
    with pytest.raises(SignatureError) as info:
        jws.verify(confused, public_pem, ("HS256",))
    assert info.value.detail == "bad_signature"


def test_jws_takes_a_vendors_short_key_without_a_warning(recwarn: pytest.WarningsRecorder) -> None:
    """The vendor chooses the signing key; a key under the digest size is its choice, not a
    warning per callback in the gateway's log."""
    for algorithm in messagebird.ALGORITHMS:
        token = pyjwt.encode({"iat": 1}, "short", algorithm=algorithm)
        assert jws.verify(token, b"short", messagebird.ALGORITHMS) == {"iat": 1}
        assert jws.verify(jws.sign({"iat": 2}, b"short", algorithm), b"short", (algorithm,)) == {"iat": 2}
    recwarn.clear()
    jws.verify(jws.sign({"iat": 3}, b"k", "HS512"), b"k", ("HS512",))
    assert [str(w.message) for w in recwarn] == []


# --------------------------------------------------------------------------- Plivo

PV3_TOKEN = b"Y2Q2ZDgxZmY5YWRiOTI5YmQ1Njg0MTAxZWIyOTc4"
PV3_NONCE = "31627761595286130198"
PV3_PARAMS = {
    "Direction": "outbound",
    "From": "19792014278",
    "ALegUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "CallStatus": "in-progress",
    "BillRate": "0.002",
    "ParentAuthID": "MANWVLYTK4ZWU1YTY4QA",
    "To": "sip:PlivoSignature382029104058171078704104@phone-qa.voice.plivodev.com",
    "ALegRequestUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "CallUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "RequestUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "SIP-H-To": "<sip:PlivoSignature382029104058171078704104@52.9.11.55;transport=udp>;tag=1",
    "SessionStart": "2020-04-08 11:34:33.238707",
    "Event": "StartApp",
}
PV3_QUERY_URL = "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml/?a=b&c=d"
PV3_URL = "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml"


def test_plivo_v2_published_vector() -> None:
    expected = "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="
    assert plivo.v2_signature(b"my_auth_token", "https://answer.url", "12345") == expected
    verify = PlivoV2Verifier(b"my_auth_token")
    headers = {"X-Plivo-Signature-V2": expected, "X-Plivo-Signature-V2-Nonce": "12345"}
    verified = verify(request("https://answer.url?any=query", headers, b"anything=at-all", ct=FORM), 0)
    assert verified.replay_nonce == "12345"  # the body is not signed: the nonce gets bound to it
    ma = {"X-Plivo-Signature-Ma-V2": expected, "X-Plivo-Signature-V2-Nonce": "12345"}
    assert detail_of(verify, request("https://answer.url", ma), 0) is None
    assert detail_of(verify, request("https://answer.url/x", headers), 0) == "bad_signature"
    no_nonce = {"X-Plivo-Signature-V2": expected}
    assert detail_of(verify, request("https://answer.url", no_nonce), 0) == "missing_signature"


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("POST", PV3_QUERY_URL, "k7Pusd4OxCIjR5IfA9iedDNu/h/gbdYqdzG/MiYtd1c="),
        ("GET", PV3_QUERY_URL, "UBq8jAtd32wR8EK9VgxbBn4n5rpI/l1H9iN4WfSEHFQ="),
        ("POST", PV3_URL, "iAjE5QqI37mbkYe4w3jTMudqEzbDufdqi7sYwTu64e0="),
        ("GET", PV3_URL, "i/MQsaQSAd6fiKhOh2qeeeLHZ9faldADSb3/7+Akfbc="),
    ],
)
def test_plivo_v3_published_vectors(method: str, url: str, expected: str) -> None:
    params = {k: [v] for k, v in PV3_PARAMS.items()}
    assert plivo.v3_signature(PV3_TOKEN, method, url, params, PV3_NONCE) == expected


def test_plivo_v3_request() -> None:
    verify = PlivoV3Verifier(PV3_TOKEN)
    body = urlencode(PV3_PARAMS).encode()
    headers = {
        "X-Plivo-Signature-V3": "other=,k7Pusd4OxCIjR5IfA9iedDNu/h/gbdYqdzG/MiYtd1c=",
        "X-Plivo-Signature-V3-Nonce": PV3_NONCE,
    }
    assert detail_of(verify, request(PV3_QUERY_URL, headers, body, ct=FORM), 0) is None
    assert detail_of(
        verify, request(PV3_QUERY_URL, headers, body.replace(b"outbound", b"inbound"), ct=FORM), 0
    ) == ("bad_signature")
    assert (
        detail_of(verify, request(PV3_QUERY_URL, headers, b'{"a":1}', ct="application/json"), 0)
        == "unsigned_body"
    )


@pytest.mark.parametrize("seed", range(15))
def test_plivo_against_the_sdk(seed: int) -> None:
    from plivo.utils import validate_signature
    from plivo.utils.signature_v3 import validate_v3_signature

    rng = random.Random(4000 + seed)
    token = "T" + _text(rng, 30, string.ascii_letters + string.digits)
    nonce = str(rng.getrandbits(64))
    query = (
        urlencode({"a": _text(rng, 5, string.ascii_letters), "b": str(rng.randint(0, 99))})
        if rng.random() < 0.5
        else ""
    )
    url = f"https://example.com/{_text(rng, 10, string.ascii_letters) or 'cb'}/" + (
        f"?{query}" if query else ""
    )
    # V2
    v2 = plivo.v2_signature(token.encode(), url, nonce)
    assert validate_signature(url, nonce, v2, token)
    # V3, POST with form parameters
    params = {
        rng.choice(["To", "From", "Text", "MessageUUID", "Status"]) + str(i): _text(rng, 12)
        for i in range(rng.randint(0, 6))
    }
    v3 = plivo.v3_signature(token.encode(), "POST", url, {k: [v] for k, v in params.items()}, nonce)
    assert validate_v3_signature("POST", url, nonce, token, v3, dict(params))
    headers = {"X-Plivo-Signature-V3": v3, "X-Plivo-Signature-V3-Nonce": nonce}
    body = urlencode(params).encode()
    assert detail_of(PlivoV3Verifier(token.encode()), request(url, headers, body, ct=FORM), 0) is None
    assert not validate_v3_signature("POST", url, nonce, token + "x", v3, dict(params))


# --------------------------------------------------------------------------- Sinch

SINCH_BODY = (
    b'{"at":"2025-01-13T09:22:40.914Z","batch_id":"01JHFFHQ0P99JPPNQPJDV7JTBP","client_reference":"a client '
    b'reference","code":0,"operator_status_at":"2025-01-13T09:22:00Z","recipient":"33662162466","status":"Delivered",'
    b'"type":"recipient_delivery_report_sms"}'
)


def _sinch_headers(sig: str, nonce: str, ts: str) -> dict[str, str]:
    return {
        "x-sinch-webhook-signature": sig,
        "x-sinch-webhook-signature-algorithm": "HmacSHA256",
        "x-sinch-webhook-signature-nonce": nonce,
        "x-sinch-webhook-signature-timestamp": ts,
    }


def test_sinch_published_vector() -> None:
    nonce, ts = "01JHFFHWYY7HSS4FWTMDTQEK8V", "1736760161"
    expected = "ZoHei66PPN/kZjw7hFVfGhJOnml3iGNCMWoyQVcE5o0="
    assert sinch.signature(b"SMSWebhooksSecret", SINCH_BODY, nonce, ts) == expected
    verify = SinchVerifier(b"SMSWebhooksSecret", 300)
    req = request(
        "https://gw.example/cb", _sinch_headers(expected, nonce, ts), SINCH_BODY, ct="application/json"
    )
    assert detail_of(verify, req, 1736760161) is None
    assert detail_of(verify, req, 1736760161 + 301) == "expired"
    tampered = request(req.url, _sinch_headers(expected, nonce, "1736760162"), SINCH_BODY)
    assert detail_of(verify, tampered, 1736760161) == "bad_signature"
    other = {**_sinch_headers(expected, nonce, ts), "x-sinch-webhook-signature-algorithm": "HmacSHA1"}
    assert detail_of(verify, request(req.url, other, SINCH_BODY), 1736760161) == "unsupported_algorithm"


@pytest.mark.parametrize("seed", range(10))
def test_sinch_against_the_sdk(seed: int) -> None:
    from sinch.domains.sms.sinch_events.v1.sms_sinch_event import SmsSinchEvent

    rng = random.Random(5000 + seed)
    secret = "S" + _text(rng, 30, string.ascii_letters + string.digits)
    body = json.dumps(
        {"batch_id": _text(rng, 26, string.ascii_uppercase), "status": "Delivered", "x": _text(rng, 20)}
    )
    nonce, ts = _text(rng, 26, string.ascii_uppercase) or "N", str(int(time.time()))
    ours = sinch.signature(secret.encode(), body.encode(), nonce, ts)
    headers = _sinch_headers(ours, nonce, ts)
    assert SmsSinchEvent(secret).validate_authentication_header(
        {**headers, "content-type": "application/json"}, body
    )
    assert (
        detail_of(
            SinchVerifier(secret.encode(), 300),
            request("https://gw.example", headers, body.encode()),
            int(ts),
        )
        is None
    )


# --------------------------------------------------------------------------- MessageBird

MB_SECRET = b"36efdd1aace2e26cd490f0d951138253bef2f7c6d34d18981da781555cc4cebb"
MB_NOW = 1625479200  # the vectors' mocked time, 2021-07-05T12:00:00+02:00
_MB_HEAD = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
_MB_BASE = "eyJpc3MiOiJNZXNzYWdlQmlyZCIsIm5iZiI6MTYyNTQ3OTIwMCwiZXhwIjoxNjI1NDc5MjYwLCJqdGkiOi"
_URL_HASH_ROOT = (
    "iLCJ1cmxfaGFzaCI6IjBmMTE1ZGIwNjJiN2MwZGQwMzBiMTY4NzhjOTlkZWE1YzM1NGI0OWRjMzdiMzhlYjg4NDYxNzljNzc4M2U5ZDc"
)
_JTI_59 = "I1OWEyNDRkYy1lOWFkLTRlMjMtOTc3OC0zNzFmYWEyMzhmNzI"
MB_T1 = f"{_MB_HEAD}.{_MB_BASE}{_JTI_59}{_URL_HASH_ROOT}ifQ.6Fp0rVOsRr1fj9S2GidXAfkmPVofKr8_RTffC6G6r2E"
MB_CASES = [
    ("no query, no payload", "https://example.com/", "", MB_T1, None),
    (
        "query, no payload",
        "https://example.com/path?bar=1&foo=2",
        "",
        f"{_MB_HEAD}.{_MB_BASE}JjOTQ2YWY3Ny1lMTgyLTRlYWEtYjJmZi0xYTU0NWI1ZTk5MWEiLCJ1cmxfaGFzaCI6IjQxZjA1ZjBkZGQwYTIy"
        "YWIyMDlhYzQ2ZjQ3YzQ1NzJkOWNlZmEyNTdlZDc0YjI0MDA0YmFlNzUzZWNlNmMyNjAifQ.huo2ou6JDoDc7sV25d75UMWeYhBeavQlLsqIibSZuac",
        None,
    ),
    (
        "query and payload",
        "https://example.com/path?bar=1&foo=2",
        "Hello, World!",
        f"{_MB_HEAD}.{_MB_BASE}I5M2U1NTAwNi1hMGU4LTQ1MjYtYTE5MC1mYTVmZjAwZWExMTYiLCJ1cmxfaGFzaCI6IjQxZjA1ZjBkZGQwYTIy"
        "YWIyMDlhYzQ2ZjQ3YzQ1NzJkOWNlZmEyNTdlZDc0YjI0MDA0YmFlNzUzZWNlNmMyNjAiLCJwYXlsb2FkX2hhc2giOiJkZmZkNjAyMWJiMmJk"
        "NWIwYWY2NzYyOTA4MDllYzNhNTMxOTFkZDgxYzdmNzBhNGIyODY4OGEzNjIxODI5ODZmIn0._H--TOuYFLpeEH39-rg5E3IHVkjHozBcaKVWPRC5m9I",
        None,
    ),
    (
        "received before it was issued",
        "https://example.com/",
        "",
        f"{_MB_HEAD}.eyJpc3MiOiJNZXNzYWdlQmlyZCIsIm5iZiI6MTYyNTQ4MjgwMCwiZXhwIjoxNjI1NDgyODYwLCJqdGkiOiJmOWY4YzM4Mi0yND"
        "Q5LTQzMTEtYjcyYi0xZGY3MTY4NzkzMWUiLCJ1cmxfaGFzaCI6IjBmMTE1ZGIwNjJiN2MwZGQwMzBiMTY4NzhjOTlkZWE1YzM1NGI0OWRjMzdi"
        "MzhlYjg4NDYxNzljNzc4M2U5ZDcifQ.ZELgDFNGhjZH9CffQKcq3sytBe2I0KciLxpBhcfstHQ",
        "expired",
    ),
    (
        "received after it expired",
        "https://example.com/",
        "",
        f"{_MB_HEAD}.eyJpc3MiOiJNZXNzYWdlQmlyZCIsIm5iZiI6MTYyNTQ3NTYwMCwiZXhwIjoxNjI1NDc1NjYwLCJqdGkiOiI1ZjAyZjUyMi02MD"
        "MwLTQ2YzgtYjVhMy0wMTI0NjQ3OGQ4YmMiLCJ1cmxfaGFzaCI6IjBmMTE1ZGIwNjJiN2MwZGQwMzBiMTY4NzhjOTlkZWE1YzM1NGI0OWRjMzdi"
        "MzhlYjg4NDYxNzljNzc4M2U5ZDcifQ.45MSST3B_2PsjNUeiuW54_vUQgVw4rBXrdWrOUEz3lM",
        "expired",
    ),
    (
        "different URL (parameters sorted out of order)",
        "https://example.com/path?foo=1&bar=2",
        "",
        f"{_MB_HEAD}.{_MB_BASE}JhNzVjOTA5Ni1lODIzLTQ0MmItODVmMi03ZDNjOWQ5YjcyNmIiLCJ1cmxfaGFzaCI6IjZhMDIyZDgzNGMxODMzMGJh"
        "YWQ4YTJiZDYxMzUxNzNlZDIxNjEwYTQ1NDUxNmJlMGRmM2YxY2MwMTUxNjEwZWEifQ.z6Sw1XQIM0wuEQGBhXBdawDIIrtMg2XnmA_bpDq53pE",
        "url_mismatch",
    ),
    (
        "payload does not match",
        "https://example.com/",
        "Hello, World!",
        f"{_MB_HEAD}.{_MB_BASE}IxNDUwMTUzMi05NmYyLTQ2ODQtOTgzMi02OGYwOTUxYWUzNDI{_URL_HASH_ROOT}iLCJwYXlsb2FkX2hhc2giOiJmYjYy"
        "ZjAyYWNkYTdkNzQxNzdhNzAxYTFjZTAwNmU2YmFjZDkwYzdkNGQ3YWI0ODE2OTJjMWRhNDdjODEwNzZiIn0.m79RCwO6dGa9pvzsQypkVuXQ6eM0CkRl6_U7MfWg6TM",
        "body_mismatch",
    ),
    (
        "different secret",
        "https://example.com/",
        "",
        f"{_MB_HEAD}.{_MB_BASE}IyNDNjMjdhZS0yZjAyLTQ2YTAtODg1Mi1jNjZmMzdlYTlmNDY{_URL_HASH_ROOT}ifQ.JgSeYyOtlEKAXk8bz30iJI4tXgf4lxknoiezawuVhb4",
        "bad_signature",
    ),
    (
        "payload removed in transit",
        "https://example.com/",
        "",
        f"{_MB_HEAD}.{_MB_BASE}IxNDUwMTUzMi05NmYyLTQ2ODQtOTgzMi02OGYwOTUxYWUzNDI{_URL_HASH_ROOT}iLCJwYXlsb2FkX2hhc2giOiJkZmZk"
        "NjAyMWJiMmJkNWIwYWY2NzYyOTA4MDllYzNhNTMxOTFkZDgxYzdmNzBhNGIyODY4OGEzNjIxODI5ODZmIn0.bHfsjj3tljfzTufoG3EU3p_yFrQh9CufyzRSaRMd4ss",
        "body_mismatch",
    ),
    ("payload added in transit", "https://example.com/", "Hello, World!", MB_T1, "body_mismatch"),
    (
        "port number in URL",
        "https://example.com:8080/",
        "",
        f"{_MB_HEAD}.{_MB_BASE}{_JTI_59}iLCJ1cmxfaGFzaCI6IjA3Zjc4NjFhNjliMTNjMjI5YzZhZTU5NmQxOThiMjc2M2IwNTRjZjVlMDAwZDcz"
        "NmQxYzQ4MTAyZDc3MGNmZmMifQ.vcpa0IicGAbpo064dOjiA2VbVOR2S5uZBEaBOP16sS8",
        None,
    ),
    (
        "special characters in URL",
        "https://example.com/?obj%5Bfield1%5D=val1&obj%5Bfield2%5D=val2&param=value+with+spaces",
        "",
        f"{_MB_HEAD}.{_MB_BASE}{_JTI_59}iLCJ1cmxfaGFzaCI6IjhhZmYzNzQ4ZDc4OWM0MzMzNTczZTFjMzFmZTViMDA0OTQwY2I1ZmM0NzQ2MGVk"
        "M2QwZTY1NGY3ZmM0ZTVmYWUifQ.mJBCMfEjKmN3IMuzqPXPHktWETrcu0iNdF3agE8PDyI",
        None,
    ),
    (
        "special characters in the payload",
        "https://example.com/",
        "Some text containg & < >, & and \\u0026",
        f"{_MB_HEAD}.{_MB_BASE}{_JTI_59}{_URL_HASH_ROOT}iLCJwYXlsb2FkX2hhc2giOiIyNDMxYmQ5Y2NiNDhlZDAxNmZhZDU2N2IwNzcxMjAz"
        "OGI1Y2RkOTQ5YWM5ZDQxZmU0NjkzZDVhMzg0NWNmN2U4In0.IQiKzeEPaO3A48lhKmBDSmxZyCESPCGxdSKFdi0dEJs",
        None,
    ),
    (
        "HS384",
        "https://example.com/",
        "",
        f"eyJhbGciOiJIUzM4NCIsInR5cCI6IkpXVCJ9.{_MB_BASE}{_JTI_59}{_URL_HASH_ROOT}ifQ."
        "KNMW-29X77lZeuPmThmHWc_RUAvTkaDkpxIZK6mqE08v8mWKiU9Edh4QXwAJO2nv",
        None,
    ),
    (
        "HS512",
        "https://example.com/",
        "",
        f"eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.{_MB_BASE}{_JTI_59}{_URL_HASH_ROOT}ifQ."
        "rd6r0iMyNGnVPCwurETphE3Y8rpAyvvnUK0S8WvGUkt2E1QSRAZ7NZJZBHw1Y_Wb5W-sK9HJr_PRL2vz4jRT3Q",
        None,
    ),
    (
        "none alg",
        "https://example.com/",
        "",
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJNZXNzYWdlQmlyZCIsImlhdCI6MTYyNTQ3OTIwMCwiZXhwIjoxNjI1NDc5MjYwLCJq"
        f"dGkiOiI1OWEyNDRkYy1lOWFkLTRlMjMtOTc3OC0zNzFmYWEyMzhmNzI{_URL_HASH_ROOT}ifQ.",
        "unsupported_algorithm",
    ),
]


@pytest.mark.parametrize(
    ("name", "url", "payload", "token", "detail"), MB_CASES, ids=[c[0] for c in MB_CASES]
)
def test_messagebird_published_vectors(
    name: str, url: str, payload: str, token: str, detail: str | None
) -> None:
    verify = messagebird.MessageBirdVerifier(MB_SECRET)
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        req = request(url, {"MessageBird-Signature-JWT": token}, payload.encode(), method=method)
        assert detail_of(verify, req, MB_NOW) == detail


@pytest.mark.parametrize("seed", range(10))
def test_messagebird_against_the_sdk(seed: int) -> None:
    from messagebird.request_validator import RequestValidator

    rng = random.Random(6000 + seed)
    secret = "k" * 64 + _text(rng, 40, string.ascii_letters + string.digits)
    path = _text(rng, 8, string.ascii_letters)
    url = f"https://example.com/{path}?id={rng.randint(0, 10**9)}&status=delivered"
    body = (json.dumps({"x": _text(rng, 30)}).encode()) if rng.random() < 0.7 else b""
    now = int(time.time())
    claims = {
        "iss": "MessageBird",
        "nbf": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
        "url_hash": hashlib.sha256(url.encode()).hexdigest(),
    }
    if body:
        claims["payload_hash"] = hashlib.sha256(body).hexdigest()
    algorithm = rng.choice(messagebird.ALGORITHMS)
    token = jws.sign(claims, secret.encode(), algorithm)
    assert RequestValidator(secret).validate_signature(token, url, body)["jti"] == claims["jti"]
    theirs = pyjwt.encode(claims, secret, algorithm=algorithm)
    verify = messagebird.MessageBirdVerifier(secret.encode())
    assert detail_of(verify, request(url, {"MessageBird-Signature-JWT": theirs}, body), now) is None
    assert (
        detail_of(verify, request(url + "&x=1", {"MessageBird-Signature-JWT": theirs}, body), now)
        == "url_mismatch"
    )


# --------------------------------------------------------------------------- Messente, generic HMAC header


def test_messente_accepts_hex_or_base64_of_the_body_hmac() -> None:
    secret, body = b"api-password", b'{"status":"DELIVRD","message_id":"m-1"}'
    digest = hmac.new(secret, body, hashlib.sha256).digest()
    verify = MessenteVerifier(secret)
    for value in (digest.hex(), digest.hex().upper(), base64.b64encode(digest).decode()):
        assert (
            detail_of(verify, request("https://gw.example", {"X-Messente-Signature": value}, body), 0) is None
        )
    for value in (digest.hex()[:-2], base64.b64encode(digest[:-1]).decode(), "not a signature"):
        assert (
            detail_of(verify, request("https://gw.example", {"X-Messente-Signature": value}, body), 0)
            == "bad_signature"
        )
    assert detail_of(
        verify, request("https://gw.example", {"X-Messente-Signature": digest.hex()}, body + b" "), 0
    ) == ("bad_signature")


@pytest.mark.parametrize(
    ("algorithm", "encoding", "prefix"),
    [("sha256", "hex", "sha256="), ("sha1", "base64", ""), ("sha512", "base64url", "v1,")],
)
def test_generic_hmac_header(algorithm: str, encoding: str, prefix: str) -> None:
    secret, body = b"relay-secret", b'{"event":{"id":"e1","state":"ok"}}'
    digest = hmac.new(secret, body, algorithm).digest()
    text = {
        "hex": digest.hex(),
        "base64": base64.b64encode(digest).decode(),
        "base64url": base64.urlsafe_b64encode(digest).decode().rstrip("="),
    }[encoding]
    verify = HmacHeaderVerifier(secret, "X-Relay-Signature", algorithm, encoding, prefix)
    assert detail_of(verify, request("https://gw", {"X-Relay-Signature": prefix + text}, body), 0) is None
    assert (
        detail_of(verify, request("https://gw", {"X-Relay-Signature": prefix + text}, body + b"x"), 0)
        == "bad_signature"
    )
    assert (
        detail_of(verify, request("https://gw", {"X-Relay-Signature": "z" + text}, body), 0)
        == "bad_signature"
    )
    assert detail_of(verify, request("https://gw", {}, body), 0) == "missing_signature"


def test_decode_digest_does_not_guess_between_encodings() -> None:
    assert decode_digest("00ff", ("hex",)) == b"\x00\xff"
    assert decode_digest("AP8=", ("hex",)) is None
    assert decode_digest("_-8", ("base64url",)) == b"\xff\xef"
    assert decode_digest("/+8=", ("base64url",)) is None
