"""Log scrubbing end to end: what a client puts in the URL or headers never reaches a log in clear.

The canary style of test_canary.py: each request carries fresh markers (a message text, a phone
number written the way people write them) where a lenient parser or a human reader would find
them: after a ``;`` in the query, under a name a vendor's parser folds (``to[]``, ``%20To``,
``Body%00``), in a path with spaces and dashes, in a debug-logged header. Then nothing the gateway
wrote (log folder, stdout, stderr, Python logging) may hold them, while the access record is there
with the status the client saw.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from yarl import URL

from tests.conftest import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    VENDOR_TOKEN,
    Gateway,
    GatewayFactory,
    Vendor,
    basic,
    client_ssl,
)
from tests.test_canary import fresh_number

#: The longest path, query or header value a log line may hold (docs/logs.md: a record's size is bounded).
MAX_LOGGED_CHARS = 512
WRONG_AUTH = basic(CLIENT_USER, "wrong-" + CLIENT_PASSWORD)
#: What may stand between the digits of a number as people and URLs write it: anything but a letter
#: or another digit (``-``, spaces, ``(``, ``.``, ``+``...), or a percent-escape (``%20``, ``%2D``).
_GAP = r"(?:[^0-9A-Za-z]|%[0-9A-Fa-f]{2})*"


def written_anyhow(number: str) -> re.Pattern[str]:
    """The subscriber part of ``number`` (its last 7 digits: what a masked number never shows),
    however it is written."""
    return re.compile(_GAP.join(number[-7:]))


def everything_logged(gws: list[Gateway], capfd: pytest.CaptureFixture[str], caplog: Any) -> str:
    files = [p for gw in gws for p in sorted((gw.folder / "logs").rglob("*")) if p.is_file()]
    assert files
    out, err = capfd.readouterr()
    records = "".join(repr(r.args) + repr(r.__dict__.get("exc_text")) for r in caplog.records)
    return "".join(p.read_text(encoding="utf-8") for p in files) + out + err + caplog.text + records


def assert_not_logged(logged: str, text_markers: list[str], numbers: list[str]) -> None:
    for marker in text_markers:
        assert marker not in logged
    for number in numbers:
        found = written_anyhow(number).search(logged)
        assert found is None, f"{number} reached a log as {found[0] if found else ''!r}"


def records_for(gw: Gateway, status: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    access = [r for r in gw.access() if r["status"] == status]
    audit = [r for r in gw.audit() if r["status"] == status]
    return access, audit


_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def text_marker() -> str:
    """Letters only: digit masking cannot hide part of it (and so hide that it leaked)."""
    return "canary-" + uuid.uuid4().hex.translate(_LETTERS)


# ----------------------------------------------------------------- query: ";" and folded names

#: ``{t}`` is a text marker (a message body), ``{n}`` a phone number marker.
QUERIES = {
    "semicolon body": "x=1;Body={t}",
    "semicolon to": "PageSize=50;To={n}",
    "semicolon credential": "a=1;api_key={t}",
    "brackets encoded": "to%5B%5D={n}&To%5B1%5D={t}",
    "brackets raw": "Body[]={t}&from[0]={n}",
    "leading space": "%20To={t}",
    "trailing space": "Body%20={t}",
    "nul": "Body%00={t}",
    "dot": "body.text={t}",
    "case and encoding": "bO%64Y={t}",
    "double encoding": "B%256fdy={t}",
    "underscore credential": "x_auth_token={t}",
}


@pytest.mark.parametrize("case", sorted(QUERIES))
async def test_message_fields_and_credentials_in_the_query_are_scrubbed(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = await make_gateway(vendor.base_url)
    text, number = text_marker(), fresh_number()
    query = QUERIES[case].format(t=text, n=quote(number, safe=""))
    auth = {"Authorization": WRONG_AUTH}
    # A route matched (audit and access records), and no route (access record only).
    for path, status in ((gw.send_path, 401), ("/2010-04-01/Accounts/x/Calls.json", 404)):
        url = URL(f"{gw.base}{path}?{query}", encoded=True)
        async with gw.session.post(url, headers=auth, data={"To": number, "Body": text}) as response:
            assert response.status == status
    await gw.running.stop()

    assert vendor.received == []
    assert_not_logged(everything_logged([gw], capfd, caplog), [text], [number])
    (denied,), (audited,) = records_for(gw, 401)
    assert denied["reason"] == audited["reason"] == "unauthenticated"
    assert denied["path"] == audited["path"]
    assert "=REDACTED" in denied["path"]
    (unrouted,), _ = records_for(gw, 404)
    assert unrouted["reason"] == "route_not_found"
    assert unrouted["path"].endswith(denied["path"].partition("?")[2])


async def test_an_ordinary_query_is_logged_as_sent(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    gw = await make_gateway(vendor.base_url)
    url = URL(f"{gw.base}{gw.send_path}?PageSize=50;Page=2&idempotency-key=k1", encoded=True)
    async with gw.session.post(url, headers={"Authorization": WRONG_AUTH}, data=b"") as response:
        assert response.status == 401
    (record,), _ = records_for(gw, 401)
    assert record["path"].endswith("/Messages.json?PageSize=50;Page=2&idempotency-key=k1")


# ----------------------------------------------------------------- numbers written with separators


def written(number: str, style: str) -> str:
    """``+37255512367`` as a person or a form would write it, URL-safe."""
    cc, a, b = number[:4], number[4:8], number[8:]
    return {
        "dashes": f"{cc}-{a}-{b}",
        "spaces": f"{cc}%20{a}%20{b}",
        "encoded dashes": f"%2B{cc[1:]}%2D{a}%2D{b}",
        "dots": f"{cc}.{a}.{b}",
        "plus as space": f"{cc}+{a}+{b}",
        "parentheses": f"({cc[1:]})%20{a}-{b}",
        "mixed": f"{cc}%20({a[:2]})%20{a[2:]}-{b[:2]}.{b[2:]}",
    }[style]


STYLES = ["dashes", "spaces", "encoded dashes", "dots", "plus as space", "parentheses", "mixed"]


@pytest.mark.parametrize("style", STYLES)
async def test_numbers_with_separators_are_masked_in_paths_and_queries(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    style: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = await make_gateway(vendor.base_url)
    in_path, in_query = fresh_number(), fresh_number()
    auth = {"Authorization": WRONG_AUTH}
    lookup = URL(f"{gw.base}/lookup/{written(in_path, style)}", encoded=True)
    async with gw.session.get(lookup, headers=auth) as response:
        assert response.status == 404
    send = URL(f"{gw.base}{gw.send_path}?ref={written(in_query, style)}", encoded=True)
    async with gw.session.post(send, headers=auth, data=b"") as response:
        assert response.status == 401
    await gw.running.stop()

    assert_not_logged(everything_logged([gw], capfd, caplog), [], [in_path, in_query])
    (unrouted,), _ = records_for(gw, 404)
    assert unrouted["path"].startswith("/lookup/") and "****" in unrouted["path"]
    (denied,), (audited,) = records_for(gw, 401)
    assert denied["path"] == audited["path"]
    assert "****" in audited["path"]


async def test_the_api_version_date_in_twilio_paths_is_kept(gateway: Gateway) -> None:
    assert (await gateway.send()).status == 201
    (record,) = [r for r in gateway.access() if r["status"] == 201]
    assert record["path"].startswith("/2010-04-01/Accounts/")  # a date, not a number


# ----------------------------------------------------------------- bounded log volume


async def test_long_paths_and_queries_are_cut_after_masking(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = await make_gateway(vendor.base_url)
    numbers = [fresh_number() for _ in range(4)]
    pad = "/lookup/" + "a" * (MAX_LOGGED_CHARS - 14)
    # A number straddling the cut, and another one far beyond it, in path and query alike.
    path = f"{pad}{written(numbers[0], 'dashes')}/{'b' * 3000}/{written(numbers[1], 'spaces')}"
    query = f"q={'c' * (MAX_LOGGED_CHARS - 12)}{written(numbers[2], 'dots')}&r={'d' * 2000}&to={numbers[3]}"
    auth = {"Authorization": WRONG_AUTH}
    async with gw.session.get(URL(f"{gw.base}{path}?{query}", encoded=True), headers=auth) as response:
        assert response.status == 404
    async with gw.session.post(
        URL(f"{gw.base}{gw.send_path}?{query}", encoded=True), headers=auth, data=b""
    ) as response:
        assert response.status == 401
    await gw.running.stop()

    logged = everything_logged([gw], capfd, caplog)
    assert_not_logged(logged, ["b" * 100, "d" * 100], numbers)
    (unrouted,), _ = records_for(gw, 404)
    (denied,), (audited,) = records_for(gw, 401)
    for record in (unrouted, denied, audited):
        logged_path, _, logged_query = record["path"].partition("?")
        assert len(logged_query) <= MAX_LOGGED_CHARS
        assert logged_query.endswith("…")
        assert logged_query.startswith("q=ccc")
    logged_path = unrouted["path"].partition("?")[0]
    assert len(logged_path) <= MAX_LOGGED_CHARS
    assert logged_path.startswith("/lookup/aaa") and logged_path.endswith("…")
    for line in (gw.folder / "logs" / "access.jsonl").read_text().splitlines():
        assert len(line) < 4 * MAX_LOGGED_CHARS


# ----------------------------------------------------------------- debug header logging


async def raw_https(gw: Gateway, head: bytes, body: bytes) -> tuple[int, bytes]:
    """One request byte for byte over real TLS (header bytes that are not UTF-8 included)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1", gw.running.public_port, ssl=client_ssl(gw.pki), server_hostname="127.0.0.1"
        ),
        timeout=5,
    )
    try:
        writer.write(head + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def send_request(gw: Gateway, body: bytes, extra_headers: str) -> bytes:
    return (
        f"POST {gw.send_path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{gw.running.public_port}\r\n"
        f"Authorization: {basic(CLIENT_USER, CLIENT_PASSWORD)}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        f"{extra_headers}"
    ).encode()


async def test_debug_headers_hide_secret_values_numbers_and_credential_names(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = await make_gateway(vendor.base_url, settings={"logging": {"level": "debug"}})
    text, number, in_header = text_marker(), fresh_number(), fresh_number()
    body = f"To={quote(number)}&From=MyBank&Body={text}".encode()
    head = send_request(
        gw,
        body,
        f"X-Callback-Number: {in_header[:4]} {in_header[4:8]} {in_header[8:]}\r\n"
        f"X-Upstream-Auth: Bearer {VENDOR_TOKEN}\r\n"
        f"X-Note: {VENDOR_TOKEN}-copy\r\n"
        f"Api-Token: {text}-token\r\n"
        f"X_Session_Secret: {text}-secret\r\n"
        "Idempotency-Key: retry-1\r\n"
        "\r\n",
    )
    status, _ = await raw_https(gw, head, body)
    await gw.running.stop()

    assert status == 201
    assert len(vendor.received) == 1
    assert_not_logged(everything_logged([gw], capfd, caplog), [text, VENDOR_TOKEN], [number, in_header])
    (record,) = gw.access()
    assert record["status"] == 201
    headers = record["headers"]
    for name in ("Authorization", "X-Callback-Number", "X-Upstream-Auth", "X-Note", "Api-Token"):
        assert headers[name] == "REDACTED", name
    assert headers["X_Session_Secret"] == "REDACTED"
    assert headers["Idempotency-Key"] == "retry-1"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"


async def test_debug_headers_that_are_not_utf8_are_escaped_and_the_answer_still_goes_back(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = await make_gateway(vendor.base_url, settings={"logging": {"level": "debug", "access_log": "-"}})
    text, number = text_marker(), fresh_number()
    body = f"To={quote(number)}&From=MyBank&Body={text}".encode()
    head = send_request(gw, body, "")
    head += b"X-Raw: caf\xc3\xa9 \xff\xfe end\r\nX-Long: " + b"z" * 3000 + b"\r\n\r\n"
    status, answer = await raw_https(gw, head, body)
    await gw.running.stop()

    assert status == 201  # the vendor accepted the SMS: the client must learn so, whatever the log
    assert json.loads(answer)["sid"].startswith("SM")
    assert len(vendor.received) == 1
    out, err = capfd.readouterr()
    (record,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert record["status"] == 201
    assert record["headers"]["X-Raw"] == "café \\xff\\xfe end"
    assert len(record["headers"]["X-Long"]) == MAX_LOGGED_CHARS
    assert record["headers"]["X-Long"].endswith("…")
    assert text not in out + err + caplog.text
