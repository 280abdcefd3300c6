"""Access control end to end: deny by default, basic credentials, IP allowlists and trusted
proxies, scopes, body size, and the audit records each refusal leaves behind.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import CLIENT_PASSWORD, CLIENT_USER, basic, client_ssl, policy, post, raw_exchange

CHALLENGE = 'Basic realm="smsgw", charset="UTF-8"'
FORM = {"To": "+37255512367", "From": "MyBank", "Body": "hello"}
ROUTE = "twilio-send"


# -- helpers ---------------------------------------------------------------------------------


async def response_error(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The error object, whose request id is the one in the X-Request-ID header."""
    payload = await response.json()
    error = payload["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["request_id"] == response.headers["X-Request-ID"]
    return error


def only_deny_record(gw, reason: str, status: int, **fields: Any) -> dict[str, Any]:
    """Exactly one audit record: the refusal, with the reason code and the fields given."""
    (record,) = gw.audit()
    assert record["decision"] == "deny"
    assert record["reason"] == reason
    assert record["status"] == status
    assert record["route"] == ROUTE
    for key, value in fields.items():
        assert record[key] == value, key
    return record


async def raw_https(
    gw, request_line_and_headers: str, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """Send a request byte for byte over a real TLS connection (no client-side URL normalization)."""
    request = request_line_and_headers.encode("latin-1") + b"\r\n" + body
    data = await raw_exchange(gw.running.public_port, request, client_ssl(gw.pki))
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, payload


async def chunks(total: int, size: int = 256) -> AsyncIterator[bytes]:
    prefix = b"To=%2B37255512367&From=MyBank&Body="
    yield prefix
    sent = len(prefix)
    while sent < total:
        piece = b"x" * min(size, total - sent)
        sent += len(piece)
        yield piece


# -- deny by default -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/messages",
        "/",
        f"/2010-04-01/Accounts/{CLIENT_USER}/Messages.json/",
        f"/2010-04-01/accounts/{CLIENT_USER}/Messages.json",
        f"/2010-04-01/Accounts/{CLIENT_USER}/Messages.xml",
        f"/2010-04-01/Accounts/{CLIENT_USER}/Messages.json.bak",
    ],
)
async def test_unknown_path_is_404_and_writes_no_audit_record(gateway, vendor, path):
    response = await gateway.send(path=path)
    assert response.status == 404
    error = await response_error(response)
    assert error["code"] == "route_not_found"
    assert vendor.received == []
    assert gateway.audit() == []
    (access,) = gateway.access()
    assert (access["status"], access["reason"], access["route"]) == (404, "route_not_found", None)
    assert access["request_id"] == error["request_id"]


async def test_known_path_with_other_method_is_405_with_allow(gateway, vendor):
    for method in ("GET", "PUT", "DELETE"):
        response = await gateway.send(method=method)
        assert response.status == 405, method
        assert response.headers["Allow"] == "POST"
        assert (await response_error(response))["code"] == "method_not_allowed"
    assert vendor.received == []
    assert gateway.audit() == []
    assert [r["reason"] for r in gateway.access()] == ["method_not_allowed"] * 3


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f"//2010-04-01/Accounts/{CLIENT_USER}/Messages.json", id="double-slash-lead"),
        pytest.param(f"/2010-04-01//Accounts/{CLIENT_USER}/Messages.json", id="double-slash-inside"),
        pytest.param(f"/2010-04-01/Accounts/x/../{CLIENT_USER}/Messages.json", id="dot-dot"),
        pytest.param(f"/2010-04-01/Accounts/{CLIENT_USER}/./Messages.json", id="dot"),
        pytest.param(f"/2010-04-01/Accounts/x/%2e%2e/{CLIENT_USER}/Messages.json", id="encoded-dot-dot"),
        pytest.param(
            f"/2010-04-01/Accounts/x/%2E%2E/{CLIENT_USER}/Messages.json", id="encoded-dot-dot-upper"
        ),
        pytest.param("/2010-04-01/Accounts/AC%2F..%2Fother/Messages.json", id="encoded-slash"),
        pytest.param("/2010-04-01/Accounts/AC%2fx/Messages.json", id="encoded-slash-lower"),
        pytest.param("/2010-04-01/Accounts/AC%5Cx/Messages.json", id="encoded-backslash"),
    ],
)
async def test_paths_not_in_normal_form_are_refused(gateway, vendor, path):
    body = b"To=%2B37255512367&From=MyBank&Body=hello"
    status, headers, payload = await raw_https(
        gateway,
        f"POST {path} HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: {basic(CLIENT_USER, CLIENT_PASSWORD)}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n",
        body,
    )
    assert status == 400
    assert b'"code": "bad_request"' in payload or b'"code":"bad_request"' in payload
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert vendor.received == []
    assert gateway.audit() == []


async def test_percent_encoded_path_parameter_matches_no_route(gateway, vendor):
    """``%41`` is "A" to the vendor, but a path parameter holds unreserved characters only."""
    status, _, payload = await raw_https(
        gateway,
        "POST /2010-04-01/Accounts/AC%41/Messages.json HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: {basic(CLIENT_USER, CLIENT_PASSWORD)}\r\n"
        "Content-Length: 0\r\n"
        "Connection: close\r\n",
    )
    assert status == 404
    assert b"route_not_found" in payload
    assert vendor.received == []


async def test_normal_path_via_raw_request_reaches_vendor(gateway, vendor):
    """Control for the raw requests above: the same bytes with a normal path are sent."""
    body = b"To=%2B37255512367&From=MyBank&Body=hello"
    status, _, _ = await raw_https(
        gateway,
        f"POST {gateway.send_path} HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: {basic(CLIENT_USER, CLIENT_PASSWORD)}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n",
        body,
    )
    assert status == 201
    assert len(vendor.received) == 1


# -- basic credentials -----------------------------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(basic(CLIENT_USER, CLIENT_PASSWORD), id="canonical"),
        pytest.param("basic " + b64(f"{CLIENT_USER}:{CLIENT_PASSWORD}"), id="lowercase-scheme"),
    ],
)
async def test_correct_basic_credential_is_accepted(gateway, vendor, authorization):
    response = await gateway.send(auth=authorization)
    assert response.status == 201
    assert "WWW-Authenticate" not in response.headers
    (allow, outcome) = gateway.audit()
    assert (allow["decision"], allow["client"], allow["route"]) == ("allow", "billing", ROUTE)
    assert outcome["status"] == 201
    assert len(vendor.received) == 1
    # The client's own credential never reaches the vendor.
    assert CLIENT_PASSWORD not in vendor.received[0].headers["Authorization"]


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(basic(CLIENT_USER, "wrong-password"), id="wrong-password"),
        pytest.param(basic(CLIENT_USER, CLIENT_PASSWORD + "x"), id="longer-password"),
        pytest.param(basic("AC" + "0" * 32, CLIENT_PASSWORD), id="unknown-user"),
        pytest.param(basic(CLIENT_USER, ""), id="empty-password"),
        pytest.param("", id="missing"),
        pytest.param("Basic !!!not-base64!!!", id="malformed-base64"),
        pytest.param("Basic " + b64(f"{CLIENT_USER}:{CLIENT_PASSWORD}")[:-2], id="truncated-base64"),
        pytest.param("Basic", id="scheme-only"),
        pytest.param("Bearer x", id="bearer"),
        pytest.param("Bearer " + b64(f"{CLIENT_USER}:{CLIENT_PASSWORD}"), id="bearer-with-basic-value"),
        pytest.param("Basic " + b64(CLIENT_USER + CLIENT_PASSWORD), id="no-colon"),
        pytest.param("Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), id="not-utf8"),
    ],
)
async def test_bad_basic_credentials_get_401_with_challenge(gateway, vendor, authorization):
    response = await gateway.send(auth=authorization)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    error = await response_error(response)
    assert error["code"] == "unauthenticated"
    assert CLIENT_PASSWORD not in error["message"]
    assert vendor.received == []
    record = only_deny_record(gateway, "unauthenticated", 401, client=None, ip="127.0.0.1")
    assert record["request_id"] == error["request_id"]


# -- IP allowlists ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "cidrs", "status"),
    [
        pytest.param("route", ["127.0.0.1/32"], 201, id="route-allow"),
        pytest.param("route", ["127.0.0.0/8", "10.0.0.0/8"], 201, id="route-allow-range"),
        pytest.param("route", ["10.0.0.0/8"], 403, id="route-deny"),
        pytest.param("route", ["::1/128"], 403, id="route-deny-other-family"),
        pytest.param("client", ["127.0.0.1/32"], 201, id="client-allow"),
        pytest.param("client", ["192.0.2.0/24"], 403, id="client-deny"),
    ],
)
async def test_ipv4_allowlists(make_gateway, vendor, where, cidrs, status):
    gw = await make_gateway(vendor.base_url, policies=policy(**{where: {"ip_allow": cidrs}}))
    response = await gw.send()
    assert response.status == status
    if status == 201:
        assert len(vendor.received) == 1
        assert gw.audit()[0]["ip"] == "127.0.0.1"
        return
    assert (await response_error(response))["code"] == "ip_not_allowed"
    assert vendor.received == []
    # Both refuse before the password is checked (a client's allowlist is looked up by the
    # claimed username), so the record names no authenticated client.
    only_deny_record(gw, "ip_not_allowed", 403, ip="127.0.0.1", client=None)


async def test_route_allowlist_refuses_before_credentials_are_checked(make_gateway, vendor):
    gw = await make_gateway(vendor.base_url, policies=policy(route={"ip_allow": ["10.0.0.0/8"]}))
    response = await gw.send(auth=basic(CLIENT_USER, "wrong"))
    assert response.status == 403
    assert "WWW-Authenticate" not in response.headers
    assert (await response_error(response))["code"] == "ip_not_allowed"
    only_deny_record(gw, "ip_not_allowed", 403, client=None)


@pytest.mark.parametrize(
    ("where", "cidrs", "status"),
    [
        pytest.param("route", ["::1/128"], 201, id="route-allow"),
        pytest.param("route", ["2001:db8::/32"], 403, id="route-deny"),
        pytest.param("route", ["127.0.0.1/32"], 403, id="route-deny-ipv4-only"),
        pytest.param("client", ["::1/128", "10.0.0.0/8"], 201, id="client-allow"),
        pytest.param("client", ["2001:db8::/32"], 403, id="client-deny"),
    ],
)
async def test_ipv6_allowlists(make_gateway, vendor, where, cidrs, status):
    gw = await make_gateway(
        vendor.base_url,
        settings={"server": {"listen": "[::1]:0"}},
        policies=policy(**{where: {"ip_allow": cidrs}}),
    )
    url = f"https://[::1]:{gw.running.public_port}{gw.send_path}"
    async with gw.session.post(
        url, data=FORM, headers={"Authorization": basic(CLIENT_USER, CLIENT_PASSWORD)}
    ) as response:
        assert response.status == status
        if status == 403:
            assert (await response_error(response))["code"] == "ip_not_allowed"
    assert gw.audit()[0]["ip"] == "::1"
    assert gw.access()[-1]["ip"] == "::1"
    assert len(vendor.received) == (1 if status == 201 else 0)
    if status == 403:
        only_deny_record(gw, "ip_not_allowed", 403, ip="::1")


async def test_spoofed_forwarded_for_from_untrusted_peer_changes_nothing(make_gateway, vendor):
    denied = await make_gateway(vendor.base_url, policies=policy(route={"ip_allow": ["10.1.1.1/32"]}))
    response = await denied.send(headers={"X-Forwarded-For": "10.1.1.1"})
    assert response.status == 403
    assert (await response_error(response))["code"] == "ip_not_allowed"
    only_deny_record(denied, "ip_not_allowed", 403, ip="127.0.0.1")

    allowed = await make_gateway(vendor.base_url, policies=policy(client={"ip_allow": ["127.0.0.1/32"]}))
    for forged in ("10.9.9.9", "10.9.9.9, 2001:db8::1", "not-an-address"):
        response = await allowed.send(headers={"X-Forwarded-For": forged})
        assert response.status == 201, forged
    assert {r["ip"] for r in allowed.audit()} == {"127.0.0.1"}
    assert len(vendor.received) == 3


@pytest.mark.parametrize(
    ("forwarded_for", "status", "client_ip"),
    [
        pytest.param(["10.9.9.9, 10.1.1.1"], 201, "10.1.1.1", id="rightmost-allowed"),
        pytest.param(["10.1.1.1, 10.9.9.9"], 403, "10.9.9.9", id="forged-leftmost-allowed"),
        pytest.param(["10.1.1.1", "10.9.9.9"], 403, "10.9.9.9", id="two-headers-last-wins"),
        pytest.param(["10.9.9.9", "10.1.1.1"], 201, "10.1.1.1", id="two-headers-allowed-last"),
        pytest.param(["10.1.1.1, 127.0.0.1"], 201, "10.1.1.1", id="skips-trusted-proxy-hop"),
        pytest.param([" 10.1.1.1 "], 201, "10.1.1.1", id="whitespace"),
        pytest.param(["10.1.1.1, 2001:db8::7"], 403, "2001:db8::7", id="ipv6-hop"),
        pytest.param(["[2001:db8::7]"], 403, "2001:db8::7", id="bracketed-ipv6-hop"),
        pytest.param(["::ffff:10.1.1.1"], 201, "10.1.1.1", id="ipv4-mapped-hop"),
        pytest.param([], 403, "127.0.0.1", id="no-xff-is-the-proxy"),
    ],
)
async def test_trusted_proxy_rightmost_untrusted_hop_decides(
    make_gateway, vendor, forwarded_for, status, client_ip
):
    gw = await make_gateway(
        vendor.base_url,
        settings={"server": {"trusted_proxies": ["127.0.0.1/32"]}},
        policies=policy(route={"ip_allow": ["10.1.1.1/32"]}),
    )
    url = gw.base + gw.send_path
    headers = [("Authorization", basic(CLIENT_USER, CLIENT_PASSWORD))]
    headers += [("X-Forwarded-For", value) for value in forwarded_for]
    async with gw.session.post(url, data=FORM, headers=headers) as response:
        assert response.status == status
        if status == 403:
            assert (await response_error(response))["code"] == "ip_not_allowed"
    assert gw.audit()[0]["ip"] == client_ip
    assert gw.access()[-1]["ip"] == client_ip
    assert len(vendor.received) == (1 if status == 201 else 0)


@pytest.mark.parametrize(
    "forwarded_for",
    ["not-an-ip", "10.1.1.1, ", "10.9.9.9,,", "10.1.1.1:8080", "10.1.1.1/32", "999.1.1.1"],
)
async def test_malformed_forwarded_for_from_trusted_proxy_is_400(make_gateway, vendor, forwarded_for):
    gw = await make_gateway(
        vendor.base_url,
        settings={"server": {"trusted_proxies": ["127.0.0.1/32"]}},
        policies=policy(route={"ip_allow": ["10.1.1.1/32"]}),
    )
    response = await gw.send(headers={"X-Forwarded-For": forwarded_for})
    assert response.status == 400
    assert (await response_error(response))["code"] == "bad_request"
    assert vendor.received == []
    assert [r["reason"] for r in gw.access()] == ["bad_request"]


# -- scopes ----------------------------------------------------------------------------------


async def test_client_lacking_route_scope_is_forbidden(make_gateway, vendor):
    gw = await make_gateway(vendor.base_url, policies=policy(route={"scopes": ["sms:send", "sms:bulk"]}))
    response = await gw.send()
    assert response.status == 403
    assert (await response_error(response))["code"] == "forbidden"
    assert vendor.received == []
    only_deny_record(gw, "forbidden", 403, client="billing", ip="127.0.0.1")


async def test_client_with_no_scopes_is_forbidden(make_gateway, vendor):
    gw = await make_gateway(vendor.base_url, policies=policy(client={"scopes": []}))
    response = await gw.send()
    assert response.status == 403
    assert (await response_error(response))["code"] == "forbidden"
    assert vendor.received == []


# -- body size -------------------------------------------------------------------------------

MAX_BODY = {"server": {"max_body_bytes": 1024}}


def form_of_length(total: int) -> bytes:
    prefix = b"To=%2B37255512367&From=MyBank&Body="
    return prefix + b"x" * (total - len(prefix))


async def test_body_at_the_limit_is_accepted(make_gateway, vendor):
    gw = await make_gateway(vendor.base_url, settings=MAX_BODY)
    response, _ = await post(gw, form_of_length(1024))
    assert response.status == 201
    assert len(vendor.received[0].body) == 1024


async def test_body_over_limit_with_content_length_is_413(make_gateway, vendor):
    gw = await make_gateway(vendor.base_url, settings=MAX_BODY)
    response, _ = await post(gw, form_of_length(1025))
    assert response.status == 413
    assert (await response_error(response))["code"] == "body_too_large"
    assert vendor.received == []
    assert [(r["status"], r["reason"]) for r in gw.access()] == [(413, "body_too_large")]


@pytest.mark.parametrize("total", [1025, 5000])
async def test_chunked_body_over_limit_is_413(make_gateway, vendor, total):
    gw = await make_gateway(vendor.base_url, settings=MAX_BODY)
    response, _ = await post(gw, chunks(total))
    assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert response.status == 413
    assert (await response_error(response))["code"] == "body_too_large"
    assert vendor.received == []
    only_deny_record(gw, "body_too_large", 413, client="billing")


@pytest.mark.parametrize("total", [600, 1024])
async def test_chunked_body_up_to_the_limit_is_sent(make_gateway, vendor, total):
    gw = await make_gateway(vendor.base_url, settings=MAX_BODY)
    response, _ = await post(gw, chunks(total))
    assert response.status == 201
    assert len(vendor.received[0].body) == total


# -- audit of refusals -----------------------------------------------------------------------


async def test_each_refusal_on_a_matched_route_is_audited_in_order(make_gateway, vendor):
    gw = await make_gateway(
        vendor.base_url,
        settings={"server": {"trusted_proxies": ["127.0.0.1/32"]}},
        policies=policy(route={"ip_allow": ["10.0.0.0/8"]}),
    )
    cases = [
        ({"X-Forwarded-For": "192.0.2.1"}, None, 403, "ip_not_allowed"),
        ({"X-Forwarded-For": "10.1.1.1"}, basic(CLIENT_USER, "nope"), 401, "unauthenticated"),
        ({"X-Forwarded-For": "10.1.1.1"}, None, 201, None),
        ({}, None, 404, "route_not_found"),  # path below: no route, no audit record
    ]
    for headers, auth, status, _ in cases:
        path = "/nowhere" if status == 404 else None
        response = await gw.send(headers=headers, auth=auth, path=path)
        assert response.status == status

    decisions = [(r["event"], r["decision"], r["reason"], r["ip"]) for r in gw.audit()]
    assert decisions == [
        ("request", "deny", "ip_not_allowed", "192.0.2.1"),
        ("request", "deny", "unauthenticated", "10.1.1.1"),
        ("request", "allow", None, "10.1.1.1"),
        ("outcome", "allow", None, "10.1.1.1"),
    ]
    assert [r["status"] for r in gw.access()] == [403, 401, 201, 404]
    # Refusals never carry the message or the credential into the logs.
    logs = gw.logs()
    assert CLIENT_PASSWORD not in logs and "nope" not in logs
    assert "hello" not in logs and "+37255512367" not in logs
    assert len(vendor.received) == 1


async def test_outside_the_clients_allowlist_a_right_and_a_wrong_password_get_the_same_answer(
    make_gateway, vendor
):
    """Nobody outside a client's allowlist can test its passwords, or learn which usernames exist."""
    gw = await make_gateway(vendor.base_url, policies=policy(client={"ip_allow": ["10.0.0.0/8"]}))
    answers = []
    for auth in (
        basic(CLIENT_USER, CLIENT_PASSWORD),
        basic(CLIENT_USER, "wrong"),
        basic("AC00000000000000000000000000nobody", "wrong"),  # an unknown username
    ):
        response = await gw.send(auth=auth)
        error = await response_error(response)
        answers.append(
            (response.status, error["code"], error["message"], "WWW-Authenticate" in response.headers)
        )
    assert answers == [(403, "ip_not_allowed", answers[0][2], False)] * 3
    assert vendor.received == []
    assert [r["client"] for r in gw.audit()] == [None, None, None]
