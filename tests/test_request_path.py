from tests.conftest import VENDOR_SID, VENDOR_TOKEN, basic


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


async def test_other_query_parameters_pass_through(gateway, vendor):
    response = await gateway.send(path=gateway.send_path + "?trace=abc")
    assert response.status == 201
    assert vendor.received[0].query == "trace=abc"
