"""gateway/transport/proxy.py without a vendor: headers both ways, the upstream URL, the vendor's answer body.

The end-to-end forwarding tests are in tests/test_forwarding.py.
"""

from __future__ import annotations

import gzip
import ssl
import zlib

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config.schema import CredentialsConfig
from gateway.transport.credentials import VendorCredentials
from gateway.transport.proxy import Upstream, VendorAnswer, response_headers, upstream_headers

# ============================================================================================
# proxy: headers
# ============================================================================================


def _headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


HEADER_CREDS = VendorCredentials.from_config(
    CredentialsConfig(type="header", name="X-Vendor-Key", value="vendor-secret")
)
NO_CREDS = VendorCredentials.from_config(CredentialsConfig(type="none"))

CLIENT_SIDE = [
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
    "Authorization",
    "Cookie",
    "X-Api-Key",
    "Signature",
    "Signature-Input",
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Real-IP",
    "Idempotency-Key",
    "Host",
    "Content-Length",
    "Expect",
]


@pytest.mark.parametrize("name", CLIENT_SIDE + [n.lower() for n in CLIENT_SIDE[:3]] + ["AUTHORIZATION"])
def test_upstream_headers_drop(name: str) -> None:
    out = upstream_headers(_headers((name, "v"), ("Content-Type", "application/json")), NO_CREDS)
    assert name not in out
    assert out["Content-Type"] == "application/json"


@pytest.mark.parametrize("name", ["X-Forwarded-Server", "X-Forwarded-Prefix", "X-Forwarded-Client-Cert"])
def test_upstream_headers_drop_every_x_forwarded(name: str) -> None:
    out = upstream_headers(_headers((name, "internal-value")), NO_CREDS)
    assert name not in out


def test_upstream_headers_drop_names_listed_in_connection() -> None:
    incoming = _headers(
        ("Connection", "keep-alive, X-Internal-Trace"),
        ("Connection", "x-other"),
        ("X-Internal-Trace", "t"),
        ("X-Other", "o"),
        ("X-Kept", "k"),
    )
    assert list(upstream_headers(incoming, NO_CREDS).items()) == [("X-Kept", "k")]


def _outgoing(incoming: CIMultiDictProxy[str], creds: VendorCredentials) -> CIMultiDict[str]:
    """Headers as they leave: the client's, filtered, then signed with the vendor's credentials."""
    headers = upstream_headers(incoming, creds)
    creds.sign("POST", "https://vendor.test/x", headers, b"")
    return headers


def test_upstream_headers_replace_clients_copy_of_vendor_header() -> None:
    incoming = _headers(("x-vendor-key", "client-forged"), ("Accept", "*/*"))
    out = _outgoing(incoming, HEADER_CREDS)
    assert out.getall("X-Vendor-Key") == ["vendor-secret"]
    assert out["Accept"] == "*/*"


def test_upstream_headers_replace_clients_authorization_with_vendors() -> None:
    creds = VendorCredentials.from_config(CredentialsConfig(type="bearer", token="vendor-bt"))
    out = _outgoing(_headers(("Authorization", "Basic Y2xpZW50OnB3")), creds)
    assert out.getall("Authorization") == ["Bearer vendor-bt"]


def test_upstream_headers_extra_strip_names() -> None:
    incoming = _headers(("Content-Digest", "sha-256=:x:"), ("X-Gw-Token", "t"), ("Accept", "a"))
    out = upstream_headers(incoming, NO_CREDS, strip=["content-digest", "X-GW-TOKEN"])
    assert list(out.items()) == [("Accept", "a")]


def test_upstream_headers_keep_everything_else_with_repeats_in_order() -> None:
    incoming = _headers(
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Accept", "application/json"),
        ("Authorization", "Basic x"),
        ("Accept", "text/plain"),
        ("User-Agent", "twilio-python/9"),
        ("X-Twilio-Client", "py"),
        ("Content-Length", "12"),
    )
    out = _outgoing(incoming, HEADER_CREDS)
    assert list(out.items()) == [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Accept", "application/json"),
        ("Accept", "text/plain"),
        ("User-Agent", "twilio-python/9"),
        ("X-Twilio-Client", "py"),
        ("X-Vendor-Key", "vendor-secret"),
    ]


def test_upstream_headers_do_not_change_the_incoming_headers() -> None:
    incoming = _headers(("Authorization", "a"), ("Accept", "b"))
    upstream_headers(incoming, HEADER_CREDS)
    assert list(incoming.items()) == [("Authorization", "a"), ("Accept", "b")]


def test_response_headers() -> None:
    incoming = _headers(
        ("Content-Type", "application/json"),
        ("Content-Length", "99"),
        ("Strict-Transport-Security", "max-age=1"),
        ("Transfer-Encoding", "chunked"),
        ("Keep-Alive", "timeout=5"),
        ("Connection", "keep-alive, X-Vendor-Debug"),
        ("X-Vendor-Debug", "node-7"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("WWW-Authenticate", 'Basic realm="Twilio API"'),
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Credentials", "true"),
        ("Server", "nginx/1.2.3"),
        ("Content-Encoding", "gzip"),
        ("Twilio-Request-Id", "RQ1"),
    )
    # Cookies, auth challenges and CORS would act on the client in the vendor's name.
    assert list(response_headers(incoming).items()) == [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
        ("Twilio-Request-Id", "RQ1"),
    ]


# ============================================================================================
# proxy: upstream URL
# ============================================================================================


def _upstream(base: str, creds: VendorCredentials) -> Upstream:
    return Upstream(base, creds, ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), 1.0, 2.0)


@pytest.mark.parametrize(
    ("base", "path", "query", "url"),
    [
        ("https://api.vendor.test", "/v1/sms", "", "https://api.vendor.test/v1/sms"),
        ("https://api.vendor.test/", "/v1/sms", "", "https://api.vendor.test/v1/sms"),
        ("https://api.vendor.test/base/", "/v1/sms", "", "https://api.vendor.test/base/v1/sms"),
        ("https://api.vendor.test", "/v1/sms", "a=1&b=%20+x", "https://api.vendor.test/v1/sms?a=1&b=%20+x"),
        (
            "https://api.vendor.test",
            "/v1/sms",
            "api_key=client",
            "https://api.vendor.test/v1/sms?api_key=client",
        ),
    ],
)
def test_upstream_url_without_query_credential(base: str, path: str, query: str, url: str) -> None:
    assert _upstream(base, NO_CREDS).url(path, query) == url


QUERY_CREDS = VendorCredentials.from_config(
    CredentialsConfig(type="query", name="api_key", value="s e&c=r/t+%")
)
SUFFIX = "api_key=s%20e%26c%3Dr%2Ft%2B%25"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", SUFFIX),
        ("a=1", f"a=1&{SUFFIX}"),
        ("a=1&b=2", f"a=1&b=2&{SUFFIX}"),
        ("api_key=evil", SUFFIX),
        ("api_key=evil&a=1", f"a=1&{SUFFIX}"),
        ("a=1&API_KEY=evil", f"a=1&{SUFFIX}"),
        ("Api_Key=evil&a=1&api_key=evil2", f"a=1&{SUFFIX}"),
        ("%61pi_key=evil&a=1", f"a=1&{SUFFIX}"),
        ("api%5Fkey=evil&a=1", f"a=1&{SUFFIX}"),
        ("api_key&a=1", f"a=1&{SUFFIX}"),
        ("api_key=&a=1", f"a=1&{SUFFIX}"),
        ("api_keyx=1&xapi_key=2", f"api_keyx=1&xapi_key=2&{SUFFIX}"),
        ("a=api_key", f"a=api_key&{SUFFIX}"),
    ],
)
def test_upstream_url_with_query_credential(query: str, expected: str) -> None:
    url = _upstream("https://api.vendor.test/", QUERY_CREDS).url("/p", query)
    assert QUERY_CREDS.sign("POST", url, CIMultiDict(), b"") == f"https://api.vendor.test/p?{expected}"


@pytest.mark.parametrize(
    "query", ["api_key[]=evil&a=1", "a=1;api_key=evil", " api_key=evil&a=1", "API_KEY.x=evil&a=1"]
)
def test_upstream_url_drops_credential_names_lenient_parsers_fold(query: str) -> None:
    url = _upstream("https://api.vendor.test/", QUERY_CREDS).url("/p", query)
    assert "evil" not in url


@pytest.mark.parametrize("query", ["api+key=evil", "api%20key=evil", "API%20KEY=evil"])
def test_upstream_url_drops_encoded_credential_name(query: str) -> None:
    creds = VendorCredentials.from_config(CredentialsConfig(type="query", name="api key", value="v"))
    url = _upstream("https://v.test", creds).url("/p", query + "&z=1")
    assert creds.sign("GET", url, CIMultiDict(), b"") == "https://v.test/p?z=1&api%20key=v"


# ============================================================================================
# proxy: vendor answer body
# ============================================================================================

BODY = b'{"sid": "SM0123456789abcdef", "status": "queued"}' * 20


def _answer(body: bytes, coding: str | None) -> VendorAnswer:
    headers = CIMultiDict({"Content-Encoding": coding} if coding is not None else {})
    return VendorAnswer(201, headers, body, 1.0)


@pytest.mark.parametrize(
    ("body", "coding"),
    [
        (BODY, None),
        (BODY, "identity"),
        (BODY, "IDENTITY "),
        (BODY, ""),
        (gzip.compress(BODY, mtime=0), "gzip"),
        (gzip.compress(BODY, mtime=0), " GZip"),
        (gzip.compress(BODY, mtime=0), "x-gzip"),
        (zlib.compress(BODY), "deflate"),
    ],
)
def test_decoded_body(body: bytes, coding: str | None) -> None:
    assert _answer(body, coding).decoded_body() == BODY


@pytest.mark.parametrize(
    ("body", "coding"),
    [
        pytest.param(BODY, "br", id="unknown-coding"),
        pytest.param(BODY, "compress", id="compress"),
        pytest.param(gzip.compress(BODY, mtime=0), "gzip, identity", id="coding-list"),
        pytest.param(b"\x1f\x8b\x08garbage-not-gzip", "gzip", id="corrupt-gzip"),
        pytest.param(BODY, "gzip", id="plain-labelled-gzip"),
        pytest.param(BODY, "deflate", id="plain-labelled-deflate"),
    ],
)
def test_decoded_body_unavailable(body: bytes, coding: str) -> None:
    assert _answer(body, coding).decoded_body() is None


def test_decoded_body_limit() -> None:
    answer = _answer(gzip.compress(BODY), "gzip")
    assert answer.decoded_body(limit=len(BODY)) == BODY
    assert answer.decoded_body(limit=len(BODY) - 1) is None
    bomb = _answer(gzip.compress(b"0" * (4 * 1024 * 1024)), "gzip")
    assert bomb.decoded_body() is None


def test_decoded_body_truncated_gzip_is_unavailable() -> None:
    truncated = gzip.compress(BODY)[:-12]
    assert _answer(truncated, "gzip").decoded_body() is None
