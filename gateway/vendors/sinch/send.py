"""Sinch SMS: ``POST /xms/v1/{plan}/batches``, JSON, ``Authorization: Bearer``.

``to`` is a list of up to 1000 numbers (with or without ``+``), ``from`` the sender, ``body`` the
text; ``parameters`` substitutes per-recipient values into the body (often a code) and is logged
like it. Every field of a batch is declared in :data:`SEND_FIELDS` with its role: ``callback_url``,
``send_at`` and the other control fields need the route's ``allow_fields``; a group id in ``to``
(Sinch sends to the group's members) is not a number and is refused. ``{plan}`` is replaced upstream
by ``upstream.account_id`` when that is set, so clients can use a gateway-issued plan id. Clients
send their gateway-issued password as the API token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.messages.base import AccountPath, NumberRule, Provider, UpstreamTarget
from gateway.messages.fields import Field, FieldTable
from gateway.messages.slots import TokenSlot
from gateway.vendors.generic.pointers import compile_spec_path, message_id_at
from gateway.vendors.generic.send import JsonFieldsReader

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.core.routing import PathTemplate

__all__ = ["PROVIDER", "SEND_FIELDS", "SinchAdapter"]

F = Field

#: ``batches`` create (text, binary and media batches of sinch-sdk-python's ``SendSMSRequest``).
SEND_FIELDS: Final = FieldTable(
    (
        F("to", "recipient", note="numbers; a group id in place of a number is refused as not a number"),
        F("from", "sender"),
        F("from_ton", "control", note="how Sinch reads from (alphanumeric, national, international)"),
        F("from_npi", "control", note="how Sinch reads from"),
        F("body", "content", text=True, note="text; base64 for mt_binary"),
        F("parameters", "content", note="values substituted per recipient, often a code"),
        F("udh", "content", note="mt_binary: the message header"),
        F(
            "type",
            "control",
            safe=frozenset({"mt_text"}),
            note="mt_binary, or mt_media (MMS, priced per MMS)",
        ),
        F("send_at", "control", note="scheduling: sent later, after the gateway's checks"),
        F("expire_at", "control", note="validity: how long Sinch keeps trying"),
        F("callback_url", "callback_url", note="Sinch posts delivery reports (with numbers) there"),
        F("flash_message", "control", note="shown on screen without being stored"),
        F(
            "delivery_report",
            "harmless",
            note="which reports Sinch sends to the service plan's own callback URL",
        ),
        F("client_reference", "harmless", note="the client's reference, echoed in reports"),
        F("feedback_enabled", "harmless"),
        F("max_number_of_message_parts", "harmless", note="refuse a text longer than this"),
        F("truncate_concat", "harmless"),
        F("strict_validation", "harmless", note="mt_media: Sinch checks the media"),
    )
)

READER: Final = JsonFieldsReader(
    fields=SEND_FIELDS,
    recipients=("/to/*",),  # a list, each entry a number
    numbers=NumberRule(bare_digits=True),
)
_ID: Final = compile_spec_path("/id")


class SinchAdapter:
    __slots__ = ("_accounts",)
    name: str = "sinch"
    slots = (TokenSlot("Bearer"),)

    def __init__(self, account_id: str = "") -> None:
        self._accounts = AccountPath(("plan",), account_id)

    def reader(self, route: RouteConfig) -> JsonFieldsReader:
        return READER

    def target(self, template: PathTemplate, params: Mapping[str, str]) -> UpstreamTarget:
        return self._accounts.target(template, params)

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        return message_id_at(_ID, status, body)


PROVIDER: Final = Provider("sinch", lambda settings: SinchAdapter(settings.account_id))
