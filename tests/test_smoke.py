from tests.conftest import VENDOR_TOKEN, basic, VENDOR_SID


async def test_send_reaches_vendor_with_vendor_credential(gateway, vendor):
    response = await gateway.send()
    assert response.status == 201
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    (seen,) = vendor.received
    assert seen.headers["Authorization"] == basic(VENDOR_SID, VENDOR_TOKEN)
    assert seen.path == f"/2010-04-01/Accounts/{VENDOR_SID}/Messages.json"
