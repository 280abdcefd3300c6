"""Redaction: what reaches the logs for each mode, and what must never reach them."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest
from multidict import CIMultiDict

from gateway.core.headers import (
    CLIENT_NETWORK_HEADERS,
    CREDENTIAL_HEADERS,
    is_client_network_header,
    is_credential_header,
)
from gateway.core.redaction import Redactor, hmac_hex, key_id_for, mask_digits, mask_number

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
        "Api-Token",
        "X-Access-Token",
        "X-Csrf-Token",
        "X-Goog-Api-Key",
        "Client-Secret",
        "X-Original-Authorization",
        "X_Api_Key",
        "MessageBird-Signature-JWT",
        "X-Plivo-Signature-Ma-V3",
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


# --- query: separators and the names lenient parsers fold ------------------------------------

MESSAGE_FIELDS = frozenset({"to", "from", "body", "messagingservicesid"})


def message_redactor(**kw: object) -> Redactor:
    return make(secret_query_names=MESSAGE_FIELDS, **kw)


def test_path_semicolon_separates_parameters() -> None:
    out = message_redactor().path("/x", "x=1;Body=Zebra-text&token=t;a=2")
    assert out == "/x?x=1;Body=REDACTED&token=REDACTED;a=2"


@pytest.mark.parametrize(
    "name",
    [
        "to[]",
        "To[1]",
        "to%5B%5D",
        "To%5b0%5d",
        "from[]",
        "Body[]",
        "body[text]",
        "Body.x",
        "To%00",
        "T%00o",
        "%20To",
        "To%20",
        "+To+",
        "%09Body",
        "Bo%64y",
        "B%256fdy",  # encoded twice
        "BODY",
        "pa\u017f\u017fword",  # long s: case-folds to "s"
        "api.key",
        "x_api_key",
        "X-Api-Key[0]",
        "client_secret[]",
        "primary_key",
        "access-token",
    ],
)
def test_path_folded_names_are_redacted(name: str) -> None:
    r = message_redactor()
    for sep in ("&", ";"):
        out = r.path("/x", f"a=1{sep}{name}=Zebra77{sep}b=2")
        assert out == f"/x?a=1{sep}{name}=REDACTED{sep}b=2"


@pytest.mark.parametrize(
    "name", ["today", "tox", "bodyguard", "t", "idempotency-key", "Idempotency_Key", "monkey", "page[size]"]
)
def test_path_other_names_kept(name: str) -> None:
    assert message_redactor().path("/x", f"{name}=Zebra77") == f"/x?{name}=Zebra77"


def test_path_message_field_names_from_config_are_folded_too() -> None:
    r = make(secret_query_names=frozenset({"Message[Text]", "Sms.Recipient"}))
    assert r.path("/x", "message=a&MESSAGE%5Btext%5D=b&sms=c&other=d") == (
        "/x?message=REDACTED&MESSAGE%5Btext%5D=REDACTED&sms=REDACTED&other=d"
    )


def test_path_secret_inside_a_value_or_a_name() -> None:
    r = make(secret_values=frozenset({"Zebra-Tok3n"}))
    out = r.path("/x", "auth_header=Bearer%20Zebra-Tok3n&q=xZebra-Tok3ny;Zebra-Tok3n=1&ok=1")
    assert out == "/x?auth_header=REDACTED&q=REDACTED;REDACTED&ok=1"
    assert r.path("/v1/keyZebra-Tok3n.json") == "/v1/keyREDACTED.json"


def test_path_secret_with_a_slash() -> None:
    r = make(secret_values=frozenset({"ab/cd+ef=="}))
    assert r.path("/v1/ab/cd+ef==/send") == "/v1/REDACTED/send"
    assert r.path("/v1/ab%2Fcd%2Bef%3D%3D/send") == "/v1/REDACTED/send"


# --- numbers written with separators ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+37255512367", "+3725****67"),
        ("%2B37255512367", "%2B37****67"),
        ("+372-555-12367", "+372-****67"),
        ("+372%20555%2012367", "+372%****67"),
        ("+372%2D555%2d12367", "+372%****67"),
        ("+372+555+12367", "+372+****67"),
        ("+372.555.123.67", "+372.****67"),
        ("(555) 123-4567", "(555) ****67"),
        ("(555)%20123-4567", "(555)%****67"),
        ("555 12 36 7", "555 1**** 7"),
        ("%33%37%32%35%35%35%31%32%33%36%37", "%33%3****37"),
        ("1234567", "****"),
    ],
)
def test_numbers_with_separators_are_masked(raw: str, masked: str) -> None:
    r = make()
    assert r.path(f"/lookup/{raw}") == f"/lookup/{masked}"
    assert r.path("/lookup", f"n={raw}") == f"/lookup?n={masked}"


@pytest.mark.parametrize(
    "kept",
    [
        "/2010-04-01/Accounts",  # Twilio's API version is a date
        "/v1/123456",  # six digits: a code, not a number
        "/a/12-34-56",
        "/a/1---2---3---4---5---6---7",  # separators are single, or a pair like ") "
        "/a/123_4567",
        "/a/123/4567",
        "/a/1,234,567",
        "/a/20260101T000000Z",  # an ISO timestamp
    ],
)
def test_not_numbers_are_kept(kept: str) -> None:
    assert make().path(kept) == kept


def test_a_bare_eight_digit_date_is_still_masked() -> None:
    assert make().path("/a/20260101") == "/a/****"


@pytest.mark.parametrize(
    "unit",
    ["1-", "1-2-3-4-5-6 ", "1 (", "%201", "%2", "%3", "123456a", "9", "+", "1)%20", "12.34.56 ", "1--"],
)
def test_scrubbing_stays_linear_on_100kb(unit: str) -> None:
    text = unit * (100_000 // len(unit))
    r = message_redactor(secret_values=frozenset({"Zebra77"}))
    out = r.path("/" + text, "q=" + text + ";to=" + text)
    path, _, query = out.partition("?")
    assert len(path) <= 512 and len(query) <= 512


# --- bounded length --------------------------------------------------------------------------


def test_path_and_query_cut_at_512_characters() -> None:
    r = make()
    exact = "/" + "a" * 511
    assert r.path(exact) == exact
    out = r.path("/" + "a" * 600, "q=" + "b" * 600)
    path, _, query = out.partition("?")
    assert path == "/" + "a" * 510 + "…"
    assert query == "q=" + "b" * 509 + "…"


@pytest.mark.parametrize("offset", range(-12, 4))
def test_cut_never_shows_part_of_a_number(offset: int) -> None:
    number = "+372-555-12367"
    path = "/" + "a" * (511 + offset) + number + "/tail"
    out = make().path(path)
    assert len(out) <= 512
    assert not re.search(r"5.?5.?5.?1.?2.?3", out)
    assert "12367" not in out and "55512" not in out


# --- sender ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "logged"),
    [
        (None, None),
        ("MyBank", "MyBank"),
        ("", ""),
        ("+37255512367", "+3725****67"),
        ("+372 555 12367", "+372 ****67"),
        ("whatsapp:+37255512367", "whatsapp:+3725****67"),
        ("MG" + "a" * 32, "MG" + "a" * 29 + "…"),
        ("1" * 40, "11111****11"),
        ("x" * 30 + "+37255512367", "x" * 30 + "+…"),
        ("Pay\udcff", "Pay\\xff"),
    ],
)
def test_sender(sender: str | None, logged: str | None) -> None:
    out = make().sender(sender)
    assert out == logged
    if out is not None:
        assert len(out) <= 32
        out.encode("utf-8")


def test_sender_never_holds_a_secret() -> None:
    assert make(secret_values=frozenset({"Zebra77"})).sender("Zebra77") == "REDACTED"


# --- headers: values, bytes that were not UTF-8, length --------------------------------------


def test_headers_secret_inside_a_value() -> None:
    r = make(secret_values=frozenset({"Zebra77"}))
    out = r.headers({"X-Forward-Auth": "Bearer Zebra77", "X-Note": "xZebra77y", "X-Enc": "a%20Zebra77"})
    assert out == {"X-Forward-Auth": "REDACTED", "X-Note": "REDACTED", "X-Enc": "REDACTED"}


@pytest.mark.parametrize("value", ["+37255512367", "call +372 555 12367 now", "tel:(555)%20123-4567"])
def test_headers_number_like_values(value: str) -> None:
    assert make().headers({"X-Callback": value}) == {"X-Callback": "REDACTED"}


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1:8443",
        "twilio-python/9.4.1 (Linux x86_64) Python/3.11.9",
        "Mon, 23 Nov 2026 14:13:31 GMT",
        "20260101T000000Z",
        "application/x-www-form-urlencoded; charset=utf-8",
        "123456",
    ],
)
def test_headers_ordinary_values_kept(value: str) -> None:
    assert make().headers({"X-H": value}) == {"X-H": value}


def test_headers_not_utf8_are_escaped() -> None:
    # What aiohttp hands over for the bytes b"caf\xc3\xa9 \xff\xfe": surrogate escapes for the bad ones.
    out = make().headers({"X-Raw": "caf\xe9 \udcff\udcfe", "X-\udce9": "v", "X-Lone": "\ud800"})
    assert out == {"X-Raw": "caf\xe9 \\xff\\xfe", "X-\\xe9": "v", "X-Lone": "\\ud800"}
    json.dumps(out, ensure_ascii=False).encode("utf-8")


def test_headers_values_cut_at_512_characters() -> None:
    out = make().headers(CIMultiDict([("X-Long", "z" * 3000), ("X-Rep", "a" * 300), ("x-rep", "b" * 300)]))
    assert out["X-Long"] == "z" * 511 + "…"
    assert out["X-Rep"] == "a" * 300 + ", " + "b" * 209 + "…"


def test_headers_idempotency_key_is_logged() -> None:
    assert make().headers({"Idempotency-Key": "retry-1"}) == {"Idempotency-Key": "retry-1"}


def test_headers_repeats_with_one_redacted() -> None:
    h = CIMultiDict([("X-Note", "fine"), ("x-note", "+37255512367")])
    assert make().headers(h) == {"X-Note": "fine, REDACTED"}


# --- header names: one list for the proxy and the redactor ------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        *sorted(CREDENTIAL_HEADERS),
        "Authorization",
        "X_Api_Key",
        "x-csrf-token",
        "X-Goog-Api-Key",
        "client-secret",
        "x-db-password",
        "x-forward-auth",
        "x-original-authorization",
        "x-client-credential",
        "x-client-credentials",
        "x-session-cookie",
        "token",
        "secret",
        "webhook-signature",
        "x-custom-signature",
    ],
)
def test_credential_header_names(name: str) -> None:
    assert is_credential_header(name)
    assert is_credential_header(name.upper())


@pytest.mark.parametrize(
    "name",
    [
        "idempotency-key",
        "Idempotency-Key",
        "IDEMPOTENCY_KEY",
        "content-digest",
        "x-amz-date",
        "content-type",
        "x-request-id",
        "accept",
        "user-agent",
        "x-tokens-left",
        "x-signature-version",
        "keep-alive",
        "x-oauth-scopes",
        "monkey",
    ],
)
def test_not_credential_header_names(name: str) -> None:
    assert not is_credential_header(name)


def test_credential_list_is_lowercase() -> None:
    assert all(n == n.lower() and "_" not in n for n in CREDENTIAL_HEADERS | CLIENT_NETWORK_HEADERS)
    assert "x-amz-date" not in CREDENTIAL_HEADERS


@pytest.mark.parametrize(
    "name",
    [
        *sorted(CLIENT_NETWORK_HEADERS),
        "X-Forwarded-For",
        "x-forwarded-host",
        "X-Forwarded-Proto",
        "x-forwarded-anything-new",
        "X_Forwarded_For",
        "True-Client-IP",
        "X-HTTP-Method-Override",
    ],
)
def test_client_network_header_names(name: str) -> None:
    assert is_client_network_header(name)


@pytest.mark.parametrize("name", ["x-forwarded", "host", "content-type", "x-request-id", "authorization"])
def test_not_client_network_header_names(name: str) -> None:
    assert not is_client_network_header(name)


PATHS = [
    ("/2010-04-01/Accounts/AC0000000000000000000000000bench/Messages.json", ""),
    ("/v1/lookup/+37255512367", ""),
    ("/v1/lookup/%2B37255512367?to=+37255598765", ""),
    ("/sms/json", "api_key=k3y-secret-value&to=37255512367"),
    ("/sms?x", "y"),
    ("/sms", "x?y"),
]


def test_a_path_logged_again_is_scrubbed_the_same() -> None:
    """Scrubbed paths are remembered: the second answer is the first, for every redactor."""
    r = make(secret_values=frozenset({"k3y-secret-value"}))
    fresh = [make(secret_values=frozenset({"k3y-secret-value"})).path(p, q) for p, q in PATHS]
    assert [r.path(p, q) for p, q in PATHS] == fresh
    assert [r.path(p, q) for p, q in PATHS] == fresh
    long = "/v1/" + "a" * 600 + "/+37255512367"
    assert "37255512367" not in r.path(long)


def test_remembered_paths_hold_no_number_or_secret() -> None:
    r = make(secret_values=frozenset({"k3y-secret-value"}))
    for p, q in PATHS:
        r.path(p, q)
    held = repr(list(r._paths.items())).encode() + b"".join(r._paths)
    for clear in (b"37255512367", b"37255598765", b"k3y-secret-value"):
        assert clear not in held


def test_remembered_paths_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.core import redaction

    monkeypatch.setattr(redaction, "_PATHS_KEPT", 5)
    r = make()
    for n in range(20):
        r.path(f"/v1/messages/{n}")
    assert len(r._paths) == 5


@pytest.mark.parametrize(
    "query",
    [
        "username=alice%40example.com&password=hunter2&to=48500600700",
        "USERNAME=alice%40example.com",
        "login[]=alice%40example.com",
        "email=alice%40example.com",
        "user=alice%40example.com;password=hunter2",
    ],
)
def test_an_account_name_in_a_logged_query_is_redacted(query: str) -> None:
    """Legacy vendor APIs take the account's login in the query beside its password: half a
    credential, often an e-mail address. The logged path shows neither."""
    r = Redactor(body_mode="hash", recipient_mode="mask", hash_key=b"k" * 32, key_id="k")
    logged = r.path("/sms.do", query)
    assert "alice" not in logged and "example.com" not in logged and "hunter2" not in logged
    assert logged.startswith("/sms.do?")


def test_hashed_bodies_and_numbers_are_hmac_hex_of_the_hash_key_every_time() -> None:
    """Records hash with the log's hash_key, the same for every call (``smsgw review`` finds them)."""
    key = b"0123456789abcdef0123456789abcdef"
    r = Redactor(body_mode="hash", recipient_mode="hash", hash_key=key)
    for text in ("Your code is 123456", "Ünïcode", ""):
        assert r.body(text)["hmac_sha256"] == hmac_hex(key, text)  # type: ignore[index]
        assert r.body(text)["hmac_sha256"] == hmac_hex(key, text)  # type: ignore[index]
    assert r.recipients([("0044 7700", "+447700900123"), ("x", None)]) == [
        hmac_hex(key, "+447700900123"),
        hmac_hex(key, "x"),
    ]
