"""Property tests over the credential verifiers: JWT bearer tokens (gateway/identity/jwt.py) and
RFC 9421 signatures (gateway/identity/hmac.py).

Random and mutated credentials never raise anything but the documented refusal (401
``unauthenticated``; 503 ``limiter_unavailable`` is not reachable here: storage is up), and a
credential that passes also passes a strict check by an independent library: joserfc for tokens
(signature with the issuer's real key, ``exp``, ``aud``, ``iss``, a known subject), and
``http-message-signatures``' own verifier plus RFC 9530 digest and nonce rules for signatures.
End to end, credentials that are not UTF-8 get 401, never 500.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet, OctKey, RSAKey
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.core.errors import GatewayError
from gateway.identity.auth import Principal
from gateway.identity.hmac import HmacAuthenticator, HmacKey, TargetUri
from gateway.identity.jwt import JwtAuthenticator, JwtIssuer
from gateway.identity.keys import load_public_key
from gateway.storage.service import MemoryKeyValue, StorageService
from tests.conftest import GatewayFactory, Vendor, client_ssl, policy, raw_exchange
from tests.fuzzing import examples
from tests.tokens import (
    AUDIENCE,
    HMAC_KEY_ID,
    HMAC_SECRET,
    ISSUER,
    JWT_SECRET,
    SUBJECT,
    b64,
    claims,
    hs256_with,
    library_signed,
    token,
    unsigned,
)

RS_ISSUER = "https://rs.example.test/"
RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
OTHER_RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
HS = OctKey.import_key(JWT_SECRET)
RSA_PEM = RSA.as_pem(private=False)


def authenticator() -> JwtAuthenticator:
    issuers = [
        JwtIssuer(ISSUER, AUDIENCE, frozenset({"HS256"}), 0, secret=JWT_SECRET.encode()),
        JwtIssuer(
            RS_ISSUER, AUDIENCE, frozenset({"RS256"}), 0, public_key=load_public_key(RSA_PEM, ["RS256"])
        ),
    ]
    subjects = {(ISSUER, SUBJECT): "billing", (RS_ISSUER, SUBJECT): "billing"}
    return JwtAuthenticator(issuers, subjects, 8192)


def exchange(headers: CIMultiDict[str] | dict[str, str], body: bytes = b"", path: str = "/send") -> Any:
    """What an authenticator reads of an exchange: the request's method, raw path and headers (as
    aiohttp's parser hands them over: undecodable bytes as surrogates), the body, the detail."""
    request = SimpleNamespace(method="POST", raw_path=path, headers=CIMultiDictProxy(CIMultiDict(headers)))
    return SimpleNamespace(request=request, body=body, detail=None)


async def outcome(auth: Any, ex: Any) -> Principal | None:
    """The principal, or None for the documented refusal; anything else fails the test."""
    try:
        return await auth.authenticate(ex)
    except GatewayError as exc:
        assert (exc.status, exc.code) == (401, "unauthenticated"), exc
        assert exc.detail
        return None


# --------------------------------------------------------------------------- JWT


def strictly_valid(raw: str) -> bool:
    """joserfc's view: signed by the issuer's real key with an allowed algorithm, and the claims
    hold (``exp`` in the future, ``aud``, a configured ``iss`` for that key, the known subject)."""
    for key, alg, iss in ((HS, "HS256", ISSUER), (RSA, "RS256", RS_ISSUER)):
        try:
            decoded = jose_jwt.decode(raw, KeySet([key]), algorithms=[alg])
        except Exception:  # noqa: S112 - any failure of the independent library is "not valid"
            continue
        c = decoded.claims
        exp = c.get("exp")
        if (
            decoded.header.get("alg") == alg
            and c.get("iss") == iss
            and (c.get("aud") == AUDIENCE or (isinstance(c.get("aud"), list) and AUDIENCE in c["aud"]))
            and isinstance(exp, int | float)
            and exp > time.time()
            and next((c[k] for k in ("sub", "client_id", "azp") if k in c), None) == SUBJECT
        ):
            return True
    return False


def valid_tokens() -> list[str]:
    now = int(time.time())
    base = claims(iat=now, exp=now + 3600)
    return [
        token(HS, "HS256", base),
        token(RSA, "RS256", {**base, "iss": RS_ISSUER}, "rsa-1"),
        token(RSA, "RS256", {**base, "iss": RS_ISSUER, "scope": "sms:send"}),
    ]


def forged_tokens() -> list[str]:
    """The classic attacks, each a seed for mutation."""
    now = int(time.time())
    base = claims(iat=now, exp=now + 3600)
    return [
        unsigned(base),
        unsigned({**base, "iss": RS_ISSUER}, alg="None"),
        hs256_with(RSA_PEM, {**base, "iss": RS_ISSUER}),  # RS/HS confusion
        token(OTHER_RSA, "RS256", {**base, "iss": RS_ISSUER}, "rsa-1"),
        token(HS, "HS256", {**base, "exp": now - 10}),
        token(HS, "HS256", {**base, "aud": "other"}),
        token(HS, "HS256", {**base, "iss": RS_ISSUER}),
    ]


SEEDS = valid_tokens() + forged_tokens()
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@st.composite
def mutated_token(draw: st.DrawFn) -> str:
    raw = draw(st.sampled_from(SEEDS))
    parts = raw.split(".")
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["char", "segment", "header", "claims", "cut", "junk", "swap"]))
        if op == "char" and raw:
            at = draw(st.integers(0, len(raw) - 1))
            raw = raw[:at] + draw(st.sampled_from(B64URL + ".= ")) + raw[at + 1 :]
        elif op == "segment":
            i = draw(st.integers(0, len(parts) - 1))
            parts[i] = draw(st.sampled_from(["", "e30", "bnVsbA", "W10", *parts]))
            raw = ".".join(parts)
        elif op in ("header", "claims"):
            doc = draw(
                st.dictionaries(
                    st.sampled_from(
                        ["alg", "kid", "typ", "crit", "iss", "aud", "sub", "exp", "nbf", "scope"]
                    ),
                    st.one_of(
                        st.sampled_from(
                            ["none", "HS256", "RS256", "ES256", "EdDSA", ISSUER, RS_ISSUER, SUBJECT]
                        ),
                        st.integers(-(2**64), 2**64),
                        st.floats(allow_nan=True),
                        st.lists(st.text(max_size=5), max_size=2),
                        st.none(),
                    ),
                    max_size=5,
                )
            )
            encoded = b64(json.dumps(doc).encode())
            parts = [*raw.split("."), "", ""]
            parts[0 if op == "header" else 1] = encoded
            raw = ".".join(parts[:3])
        elif op == "cut":
            raw = raw[: draw(st.integers(0, len(raw)))]
        elif op == "junk":
            raw = raw + draw(st.text(max_size=8))
        else:
            raw = ".".join(reversed(raw.split(".")))
    return raw


def surrogates_of(raw: bytes) -> str:
    """A header value as aiohttp's parser hands it over: UTF-8, undecodable bytes as surrogates."""
    return raw.decode("utf-8", "surrogateescape")


@settings(max_examples=examples(600))
@given(
    raw=mutated_token()
    | st.text(max_size=120)
    | st.binary(max_size=80).map(surrogates_of)
    | st.sampled_from(SEEDS)
)
async def test_jwt_verifier_refuses_cleanly_and_never_passes_what_joserfc_refuses(raw: str) -> None:
    auth = authenticator()
    principal = await outcome(auth, exchange({"Authorization": f"Bearer {raw}"}))
    sent = raw.strip(" \t")  # what an HTTP parser hands over: no whitespace around a field value
    if principal is not None:
        assert principal.client_id == "billing"
        assert strictly_valid(sent), raw
    # a token joserfc finds valid is not refused either (the seeds prove it passes at all)
    elif strictly_valid(sent):
        pytest.fail(f"a valid token was refused: {raw}")


async def test_every_seed_token_is_judged_as_joserfc_judges_it() -> None:
    auth = authenticator()
    for raw in SEEDS:
        assert (
            await outcome(auth, exchange({"Authorization": f"Bearer {raw}"})) is not None
        ) == strictly_valid(raw)


# --------------------------------------------------------------------------- RFC 9421

PUBLIC = "https://gw.example"
PATH = "/send?x=1"
BODY = b"To=%2B37255512367&From=MyBank&Body=hello"


def hmac_authenticator() -> HmacAuthenticator:
    storage = StorageService(MemoryKeyValue(), prefix="t:", on_error="closed")
    keys = [HmacKey(HMAC_KEY_ID, HMAC_SECRET.encode(), "billing")]
    return HmacAuthenticator(keys, TargetUri(PUBLIC), storage)


def signed_headers(nonce: str) -> dict[str, str]:
    return library_signed(
        "POST", PUBLIC + PATH, BODY, nonce=nonce, components=("@method", "@target-uri", "content-digest")
    )


def library_accepts(headers: CIMultiDict[str], body: bytes, path: str) -> bool:
    """The strict reference: http-message-signatures' verifier with its own defaults over the
    request as received, the required components and parameters, a fresh ``created`` and a
    Content-Digest that holds the SHA-256 of the body (RFC 9530)."""
    from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver
    from http_message_signatures.algorithms import HMAC_SHA256

    class Resolver(HTTPSignatureKeyResolver):
        def resolve_public_key(self, key_id: str) -> bytes:
            if key_id != HMAC_KEY_ID:
                raise KeyError(key_id)
            return HMAC_SECRET.encode()

    message = SimpleNamespace(method="POST", url=PUBLIC + path, headers=headers)
    try:
        (result,) = HTTPMessageVerifier(signature_algorithm=HMAC_SHA256, key_resolver=Resolver()).verify(
            message
        )
    except Exception:
        return False
    params = result.parameters
    covered = set(result.covered_components)
    digest = result.covered_components.get('"content-digest"', "")
    expected = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    return (
        {'"@method"', '"@target-uri"', '"content-digest"'} <= covered
        and isinstance(params.get("nonce"), str)
        and params.get("keyid") == HMAC_KEY_ID
        and abs(time.time() - int(params.get("created", 0))) <= 300
        and expected in [d.strip() for d in digest.split(",")]
    )


HEADER_FRAGMENTS = [
    "", " ", ",", ";", "=", '"', ":", "(", ")", "sig1", "sig2", "nonce", "created", "keyid", "alg",
    '"hmac-sha256"', '"rsa-pss-sha512"', "0", "-1", "99999999999999999999", '"@method"', '"@path"',
    '"content-digest";sf', "sha-256=:", "sha-512=:", "\x7f", "\u00e9", "\udcff", '"billing-2026-11"',
]  # fmt: skip


@st.composite
def signed_request(draw: st.DrawFn) -> tuple[CIMultiDict[str], bytes, str]:
    nonce = draw(st.sampled_from(["n-1", "n-2"]))  # repeats: some examples are replays
    headers: CIMultiDict[str] = CIMultiDict(signed_headers(nonce))
    headers["Host"] = "gw.example"
    body, path = BODY, PATH
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["header", "body", "path", "twice", "drop"]))
        if op == "header":
            name = draw(st.sampled_from(["Signature-Input", "Signature", "Content-Digest"]))
            value = headers.get(name, "")
            at = draw(st.integers(0, len(value)))
            end = draw(st.integers(at, min(len(value), at + 6)))
            headers[name] = (
                value[:at] + draw(st.sampled_from(HEADER_FRAGMENTS) | st.text(max_size=4)) + value[end:]
            )
        elif op == "body":
            body = draw(st.sampled_from([b"", BODY + b"&x=1", BODY.replace(b"hello", b"hellp"), BODY]))
        elif op == "path":
            path = draw(st.sampled_from(["/send", "/send?x=2", "/SEND?x=1", PATH + "&", "/send?x=1#"]))
        elif op == "twice":
            name = draw(st.sampled_from(["Signature-Input", "Signature", "Content-Digest"]))
            headers.add(name, headers.get(name, "x"))
        else:
            headers.popall(draw(st.sampled_from(["Signature-Input", "Signature", "Content-Digest"])), None)
    return headers, body, path


@settings(max_examples=examples(400))
@given(requests=st.lists(signed_request(), min_size=1, max_size=3))
async def test_rfc9421_verifier_refuses_cleanly_and_never_passes_what_the_library_refuses(
    requests: list[tuple[CIMultiDict[str], bytes, str]],
) -> None:
    auth = hmac_authenticator()  # one storage per example: a nonce is spent at most once in it
    spent: set[str] = set()
    for headers, body, path in requests:
        ex = exchange(headers, body, path)
        principal = await outcome(auth, ex)
        if principal is not None:
            assert principal.client_id == "billing"
            assert library_accepts(headers, body, path), (headers, body, path)
            nonce = headers["Signature-Input"].split("nonce=", 1)[1].split(";", 1)[0]
            assert nonce not in spent  # a nonce passes once
            spent.add(nonce)


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer \xff\xfe.\xff.\xff",
        b"Bearer eyJhbGciOiJIUzI1NiJ9.\xc3\x28.x",
        b"Bearer " + "\u00e9".encode() * 10,
    ],
)
async def test_a_bearer_token_that_is_not_utf8_is_401_not_500(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    pki: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    authorization: bytes,
) -> None:
    """The hole: pyjwt encodes the token to UTF-8 itself, and the surrogates aiohttp makes of
    undecodable header bytes raised UnicodeEncodeError: a 500 ``internal_error`` for anyone."""
    hs = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "secret": "env:SMSGW_TEST_FUZZ_JWT",
        "algorithms": ["HS256"],
    }
    monkeypatch.setenv("SMSGW_TEST_FUZZ_JWT", JWT_SECRET)
    gw = await make_gateway(
        vendor.base_url,
        settings={"auth": {"jwt": {"issuers": [hs]}}},
        policies=policy(route={"auth": ["jwt"]}, client={"jwt_subject": SUBJECT}),
    )
    request = (
        f"POST {gw.send_path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + b"Authorization: " + authorization + b"\r\n"
        + b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )  # fmt: skip
    answer = await raw_exchange(gw.running.public_port, request, client_ssl(pki))
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    record = next(r for r in gw.audit() if r["event"] == "request")
    assert (record["reason"], record["detail"]) == ("unauthenticated", "malformed")
    assert vendor.received == []


async def test_only_the_compact_form_of_a_token_passes() -> None:
    """Found by the property above: pyjwt also took a padded signature (``...=``), which RFC 7515
    and joserfc refuse; one token then had many spellings, each remembered apart."""
    auth = authenticator()
    good = valid_tokens()[0]
    assert await outcome(auth, exchange({"Authorization": f"Bearer {good}"})) is not None
    for spelling in (good + "=", good + "==", good.replace(".", ". ", 1), good + "\t.x"):
        assert await outcome(auth, exchange({"Authorization": f"Bearer {spelling}"})) is None, spelling
