from tests.conftest import VENDOR_SID, VENDOR_TOKEN, basic, client_ssl, raw_exchange


async def test_send_reaches_vendor_with_vendor_credential(gateway, vendor):
    response = await gateway.send()
    assert response.status == 201
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    (seen,) = vendor.received
    assert seen.headers["Authorization"] == basic(VENDOR_SID, VENDOR_TOKEN)
    assert seen.path == f"/2010-04-01/Accounts/{VENDOR_SID}/Messages.json"


async def test_message_field_in_query_string_is_refused(gateway, vendor):
    # A vendor stack that merges query and body parameters would send this To instead of the checked one.
    response = await gateway.send(path=gateway.send_path + "?To=%2B15005550006")
    assert response.status == 400
    body = await response.json()
    assert body["error"]["code"] == "bad_request"
    assert vendor.received == []


async def test_query_parameters_the_vendor_api_does_not_define_are_refused(gateway, vendor):
    """Messages.json create defines no query parameter: the vendor could read a client's own."""
    response = await gateway.send(path=gateway.send_path + "?trace=abc")
    assert response.status == 400
    assert vendor.received == []
    (record,) = [r for r in gateway.audit() if r["event"] == "request"]
    assert (record["reason"], record["detail"]) == ("unknown_field", "query:trace")


async def test_malformed_request_line_leaves_no_trace_of_its_bytes(gateway, vendor, capfd, caplog):
    """aiohttp answers a broken request itself; what it logs must not carry the request's bytes."""
    import logging

    caplog.set_level(logging.DEBUG)
    request = b"GET /lookup/+37255599911\x01 HTTP/1.1\r\nHost: a\r\n\r\n"
    answer = await raw_exchange(gateway.running.public_port, request, client_ssl(gateway.pki))
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0]
    out, err = capfd.readouterr()
    logged = out + err + caplog.text + gateway.logs()
    assert "refused a malformed request" in caplog.text
    assert "37255599911" not in logged
    assert vendor.received == []
