"""Plivo: ``POST /v1/Account/{auth_id}/Message/``, JSON.

``dst`` holds one or more numbers joined by ``<``; the sender is ``src`` or a ``powerpack_uuid``
(both at once are refused, as the SDK does); ``text`` is the body, ``media_urls`` and the other
content fields are logged like it. Every field ``messages.create`` sends is declared in
:data:`SEND_FIELDS` with its role: ``url`` (the status callback) and ``message_expiry`` need the
route's ``allow_fields``, ``type`` other than ``sms`` its ``channels``. ``{auth_id}`` in the path is
the client's gateway-issued id: upstream the real one goes there, and back in the answer the
client's. Plivo reads numbers with or without ``+``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.core.errors import bad_request
from gateway.messages.base import AccountPath, NumberRule, Provider, UpstreamTarget
from gateway.messages.fields import Field, FieldTable
from gateway.messages.slots import BASIC
from gateway.vendors.generic.pointers import compile_spec_path, message_id_at
from gateway.vendors.generic.send import JsonFieldsReader

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.core.routing import PathTemplate

__all__ = ["PROVIDER", "SEND_FIELDS", "PlivoAdapter"]


F = Field

#: ``Message`` create: every parameter plivo-python's ``messages.create`` sends.
SEND_FIELDS: Final = FieldTable(
    (
        F("dst", "recipient", note="numbers joined by '<'; each is checked"),
        F("src", "sender"),
        F("powerpack_uuid", "sender", note="a number pool Plivo picks the sender from; instead of src"),
        F("text", "content", text=True),
        F("media_urls", "content", note="MMS: Plivo fetches each URL"),
        F("media_ids", "content", note="MMS: media uploaded to Plivo before"),
        F("template", "content", template=True, note="WhatsApp: a stored template and its values"),
        F("interactive", "content", note="WhatsApp: buttons and lists"),
        F("location", "content", note="WhatsApp: a place"),
        F(
            "type",
            "control",
            channel=True,
            safe=frozenset({"sms"}),
            note="channel: sms (the default), mms (priced per MMS), whatsapp",
        ),
        F("url", "callback_url", note="Plivo posts each status (numbers, units, price) there"),
        F("method", "harmless", note="the HTTP method for url"),
        F("message_expiry", "control", note="validity: how long Plivo keeps trying"),
        F("log", "harmless", note="'false': Plivo keeps no copy of the text"),
        F("trackable", "harmless"),
        F("dlt_entity_id", "harmless", note="India DLT registration"),
        F("dlt_template_id", "harmless", note="India DLT registration"),
        F("dlt_template_category", "harmless", note="India DLT registration"),
    )
)


def _one_sender(doc: dict[str, object]) -> None:
    if "src" in doc and "powerpack_uuid" in doc:
        raise bad_request("give src or powerpack_uuid, not both")


READER: Final = JsonFieldsReader(
    fields=SEND_FIELDS,
    separator="<",
    numbers=NumberRule(bare_digits=True),
    check=_one_sender,
)
_ID: Final = compile_spec_path("/message_uuid")


class PlivoAdapter:
    __slots__ = ("_accounts",)
    name: str = "plivo"
    slots = (BASIC,)

    def __init__(self, account_id: str = "") -> None:
        self._accounts = AccountPath(("auth_id", "account"), account_id)

    def reader(self, route: RouteConfig) -> JsonFieldsReader:
        return READER

    def target(self, template: PathTemplate, params: Mapping[str, str]) -> UpstreamTarget:
        return self._accounts.target(template, params)

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        return message_id_at(_ID, status, body)


PROVIDER: Final = Provider("plivo", lambda settings: PlivoAdapter(settings.account_id))
