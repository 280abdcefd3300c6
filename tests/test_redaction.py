"""Redaction: what reaches the logs for each mode, and what must never reach them."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from multidict import CIMultiDict

from gateway.redaction import Redactor, hmac_hex, key_id_for, mask_digits, mask_number

KEY = b"k" * 32
MARKER = "Zebra-Marker-7731 secret words"
NUMBER = "+37255512367"


def make(**kw: object) -> Redactor:
    args: dict = {"body_mode": "hash", "recipient_mode": "hash", "hash_key": KEY}
    args.update(kw)
    return Redactor(**args)


# --- primitives ---------------------------------------------------------------------------


def test_hmac_hex_matches_independent_computation() -> None:
    expected = hmac.new(b"0123456789abcdef0123456789abcdef", b"Your code is 123456", "sha256").hexdigest()
    assert hmac_hex(b"0123456789abcdef0123456789abcdef", "Your code is 123456") == expected


def test_hmac_hex_known_vector() -> None:
    # RFC 4231 test case 2 (HMAC-SHA-256).
    assert hmac_hex(b"Jefe", "what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_hmac_hex_uses_utf8() -> None:
    expected = hmac.new(KEY, "Tere, õun €".encode(), hashlib.sha256).hexdigest()
    assert hmac_hex(KEY, "Tere, õun €") == expected


def test_key_id_for() -> None:
    expected = "k" + hashlib.sha256(b"smsgw-key-id:" + KEY).hexdigest()[:8]
    assert key_id_for(KEY) == expected
    assert len(expected) == 9
    assert key_id_for(b"x" * 32) != expected


def test_mask_number() -> None:
    assert mask_number("+37255512367") == "+3725****67"
    assert mask_number("+4915123456789") == "+4915****89"
    assert mask_number("+12015550123") == "+1201****23"
    # length is not revealed
    assert len(mask_number("+37255512367")) == len(mask_number("+4915123456789"))
    assert mask_number("+1234567") == "****"
    assert mask_number("12345678") == "****"
    assert mask_number("123456789") == "12345****89"
    assert mask_number("") == "****"


def test_mask_digits() -> None:
    assert mask_digits("Your code is 123456") == "Your code is ******"
    assert mask_digits("no digits here") == "no digits here"
    # Arabic-Indic and full-width digits are digits too
    assert mask_digits("code \u0661\u0662\u0663 / \uff14\uff15\uff16.") == "code *** / ***."
    assert mask_digits("") == ""


# --- construction -------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, b"", b"x" * 31])
@pytest.mark.parametrize(("body", "recipient"), [("hash", "mask"), ("redact", "hash"), ("hash", "hash")])
def test_hash_mode_needs_32_byte_key(key: bytes | None, body: str, recipient: str) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Redactor(body_mode=body, recipient_mode=recipient, hash_key=key)


def test_no_key_needed_without_hash() -> None:
    r = Redactor(body_mode="mask", recipient_mode="mask", hash_key=None)
    assert r.body("code 12") == {"masked": "code **"}


@pytest.mark.parametrize("mode", ["seal", "clear", "", "HASH"])
def test_unknown_or_unsupported_body_mode(mode: str) -> None:
    with pytest.raises(ValueError):
        Redactor(body_mode=mode, recipient_mode="mask", hash_key=KEY)


@pytest.mark.parametrize("mode", ["redact", "seal", "", "Mask"])
def test_unknown_recipient_mode(mode: str) -> None:
    with pytest.raises(ValueError):
        Redactor(body_mode="drop", recipient_mode=mode, hash_key=KEY)


# --- body ---------------------------------------------------------------------------------


def test_body_hash() -> None:
    r = make(body_mode="hash")
    expected = hmac.new(KEY, MARKER.encode("utf-8"), hashlib.sha256).hexdigest()
    assert r.body(MARKER) == {"hmac_sha256": expected, "key_id": key_id_for(KEY), "length": len(MARKER)}


def test_body_hash_explicit_key_id() -> None:
    r = make(body_mode="hash", key_id="log-2026")
    out = r.body("hi")
    assert out is not None
    assert out["key_id"] == "log-2026"


def test_body_other_modes() -> None:
    assert make(body_mode="redact").body("Your code is 123456") == {"redacted": True, "length": 19}
    assert make(body_mode="mask").body("Your code is 123456") == {"masked": "Your code is ******"}
    assert make(body_mode="drop").body("Your code is 123456") is None


@pytest.mark.parametrize("mode", ["hash", "redact", "mask", "drop"])
def test_body_none_is_none(mode: str) -> None:
    assert make(body_mode=mode).body(None) is None


@pytest.mark.parametrize("mode", ["hash", "redact", "drop"])
def test_body_never_in_output(mode: str) -> None:
    out = make(body_mode=mode).body(MARKER + " 424242")
    assert MARKER not in repr(out)
    assert "424242" not in repr(out)


def test_body_mask_keeps_words_not_digits() -> None:
    out = make(body_mode="mask").body(MARKER + " 424242")
    assert out == {"masked": "Zebra-Marker-**** secret words ******"}


# --- recipients ---------------------------------------------------------------------------


def test_recipients_mask_prefers_e164() -> None:
    r = make(recipient_mode="mask")
    assert r.recipients([("whatsapp:+37255512367", NUMBER), ("+441234", None)]) == [
        "+3725****67",
        "****",
    ]


def test_recipients_hash_over_e164() -> None:
    r = make(recipient_mode="hash")
    expected = hmac.new(KEY, NUMBER.encode(), hashlib.sha256).hexdigest()
    assert r.recipients([("sms:+37255512367", NUMBER)]) == [expected]
    assert r.recipients([("garbage-raw", None)]) == [
        hmac.new(KEY, b"garbage-raw", hashlib.sha256).hexdigest()
    ]


def test_recipients_drop() -> None:
    assert make(recipient_mode="drop").recipients([(NUMBER, NUMBER)]) is None


def test_recipients_empty() -> None:
    assert make(recipient_mode="mask").recipients([]) == []


@pytest.mark.parametrize("mode", ["mask", "hash", "drop"])
def test_full_number_never_in_output(mode: str) -> None:
    out = make(recipient_mode=mode).recipients([(NUMBER, NUMBER), ("+4915123456789", "+4915123456789")])
    text = repr(out)
    assert NUMBER not in text
    assert "55512367" not in text
    assert "+4915123456789" not in text


# --- path ---------------------------------------------------------------------------------


def test_path_without_query_unchanged() -> None:
    r = make()
    assert r.path("/2010-04-01/Accounts/AC1/Messages.json") == "/2010-04-01/Accounts/AC1/Messages.json"
    assert r.path("/sms", "") == "/sms"


def test_path_builtin_query_names() -> None:
    r = make()
    out = r.path("/sms/json", "api_key=abc&api_secret=s3cr3t&to=%2B372&text=hi+there")
    assert out == "/sms/json?api_key=REDACTED&api_secret=REDACTED&to=%2B372&text=hi+there"


@pytest.mark.parametrize(
    "name",
    ["password", "PASSWORD", "Token", "sig", "Signature", "x-api-key", "X-Api-Key", "client_secret", "key"],
)
def test_path_query_name_case_insensitive(name: str) -> None:
    out = make().path("/x", f"a=1&{name}=Zebra77&b=2")
    assert out == f"/x?a=1&{name}=REDACTED&b=2"
    assert "Zebra77" not in out


def test_path_percent_encoded_name() -> None:
    out = make().path("/x", "pass%77ord=Zebra77")
    assert "Zebra77" not in out
    assert out == "/x?pass%77ord=REDACTED"


def test_path_custom_query_names() -> None:
    r = make(secret_query_names=frozenset({"AccessKey"}))
    assert r.path("/x", "accesskey=Zebra77&ACCESSKEY=Zebra78&other=1") == (
        "/x?accesskey=REDACTED&ACCESSKEY=REDACTED&other=1"
    )


def test_path_secret_values_in_query_and_path() -> None:
    r = make(secret_values=frozenset({"Zebra-Tok3n", "a b+c", ""}))
    assert r.path("/v1/Zebra-Tok3n/send", "q=Zebra-Tok3n&u=ok") == "/v1/REDACTED/send?q=REDACTED&u=ok"
    # encoded forms of a secret are found too
    assert r.path("/v1/a%20b%2Bc", "v=a+b%2Bc&w=Zebra%2DTok3n") == "/v1/REDACTED?v=REDACTED&w=REDACTED"
    # a bare token without "=" is a value too
    assert r.path("/x", "Zebra-Tok3n&z=1") == "/x?REDACTED&z=1"


def test_path_empty_secret_value_ignored() -> None:
    r = make(secret_values=frozenset({""}))
    assert r.path("/a//b", "x=&=&y=1") == "/a//b?x=&=&y=1"


def test_path_keeps_order_and_encoding() -> None:
    qs = "b=%7E%41&a=1&token=t&c=x%20y&d=%E2%82%AC&e"
    assert make().path("/p", qs) == "/p?b=%7E%41&a=1&token=REDACTED&c=x%20y&d=%E2%82%AC&e"


def test_path_query_in_path_argument() -> None:
    assert make().path("/x?token=Zebra77&a=1") == "/x?token=REDACTED&a=1"


@pytest.mark.parametrize(
    "qs",
    [
        "token=%ZZ%Zebra77",
        "&&token=Zebra77&&",
        "=x&token=Zebra77",
        "token",
        "token=Zebra77=Zebra77",
        "%=%&%%%&token=Zebra77",
        "%E2%82=1&secret=Zebra77",
        "password=%00Zebra77%ff",
        "?&=&==&;token=1&token=Zebra77",
        "\udcff=1&token=Zebra77",
    ],
)
def test_path_malformed_query_does_not_crash(qs: str) -> None:
    r = make(secret_values=frozenset({"Zebra77"}))
    out = r.path("/x%ZZ/%/Zebra77", qs)
    assert "Zebra77" not in out
    assert out.startswith("/x%ZZ/%/REDACTED")


def test_path_no_secrets_configured_is_identity_for_plain_params() -> None:
    r = Redactor(body_mode="drop", recipient_mode="drop", hash_key=None)
    assert r.path("/a/b", "x=1&y=2") == "/a/b?x=1&y=2"


# --- headers ------------------------------------------------------------------------------


def test_headers_credentials_redacted_casing_kept() -> None:
    r = make()
    src = {
        "Authorization": "Bearer Zebra77",
        "X-Twilio-Signature": "Zebra77sig",
        "cookie": "sid=Zebra77",
        "Signature-Input": "sig1=()",
        "Signature": "sig1=:Zebra77:",
        "X-Amz-Security-Token": "Zebra77",
        "X-Amz-Date": "20260101T000000Z",
        "Content-Type": "application/json",
        "X-Request-ID": "abc",
    }
    out = r.headers(src)
    assert out == {
        "Authorization": "REDACTED",
        "X-Twilio-Signature": "REDACTED",
        "cookie": "REDACTED",
        "Signature-Input": "REDACTED",
        "Signature": "REDACTED",
        "X-Amz-Security-Token": "REDACTED",
        "X-Amz-Date": "20260101T000000Z",
        "Content-Type": "application/json",
        "X-Request-ID": "abc",
    }
    assert "Zebra77" not in repr(out)
    assert src["Authorization"] == "Bearer Zebra77"  # input untouched


@pytest.mark.parametrize(
    "name",
    [
        "PROXY-AUTHORIZATION",
        "Set-Cookie",
        "x-api-key",
        "Api-Key",
        "apikey",
        "X-Auth-Token",
        "X-Plivo-Signature-V2",
        "X-Plivo-Signature-V3",
        "X-Messente-Signature",
        "X-Sinch-Webhook-Signature",
    ],
)
def test_headers_each_credential_name(name: str) -> None:
    assert make().headers({name: "Zebra77"}) == {name: "REDACTED"}


def test_headers_secret_values() -> None:
    r = make(secret_values=frozenset({"Zebra77"}))
    assert r.headers({"X-Custom": "Zebra77", "X-Other": "fine"}) == {
        "X-Custom": "REDACTED",
        "X-Other": "fine",
    }


def test_headers_multidict_repeats() -> None:
    h = CIMultiDict([("Cookie", "a=Zebra77"), ("cookie", "b=Zebra77"), ("Accept", "a"), ("accept", "b")])
    assert make().headers(h) == {"Cookie": "REDACTED", "Accept": "a, b"}
