"""AWS SNS ``Publish`` in the sandbox: SigV4-signed, XML answer."""

from __future__ import annotations

import uuid
from typing import Final

from aiohttp import web

from gateway.messages.slots import SigV4Slot
from gateway.vendors.standin import SANDBOX_KEY, form_of, record

__all__ = ["sns_publish"]


_SNS_SIGNATURE: Final = SigV4Slot("sns")


async def sns_publish(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await record(request)
    presented = _SNS_SIGNATURE.read(request, body) if _SNS_SIGNATURE.present(request) else None
    if (
        presented is None
        or presented.username != state.account_sid
        or presented.verify is None
        or not presented.verify(state.auth_token)
    ):
        error = "<Code>SignatureDoesNotMatch</Code><Message>The request signature does not match</Message>"
        return web.Response(
            text=f"<ErrorResponse><Error><Type>Sender</Type>{error}</Error></ErrorResponse>",
            status=403,
            content_type="text/xml",
        )
    form = form_of(body) or {}
    if form.get("Action") != "Publish":
        return web.Response(text="<ErrorResponse/>", status=400, content_type="text/xml")
    ident = str(uuid.uuid4())
    return web.Response(
        text=(
            '<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
            f"<PublishResult><MessageId>{ident}</MessageId></PublishResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</PublishResponse>"
        ),
        content_type="text/xml",
    )
