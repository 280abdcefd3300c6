"""MessageBird: ``POST /messages``, JSON, ``Authorization: AccessKey``.

``recipients`` is a comma-joined string or a list (of strings or integers), ``originator`` the
sender, ``body`` the text. Every other field is declared in :data:`SEND_FIELDS` with its role
(``reportUrl``, ``scheduledDatetime``, ``gateway`` ... need the route's ``allow_fields``).
``groupIds`` sends to contact groups whose members are not in the request, so it is refused under
every spelling, whatever the route allows. Numbers are international digits, ``+`` optional. Clients
send their gateway-issued password as the access key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.messages.base import NumberRule, Provider, UpstreamTarget
from gateway.messages.fanout import FanOut
from gateway.messages.fields import Field, FieldTable
from gateway.messages.slots import TokenSlot
from gateway.vendors.generic.pointers import compile_spec_path, message_id_at
from gateway.vendors.generic.send import JsonFieldsReader

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.core.routing import PathTemplate

__all__ = ["FANOUT", "PROVIDER", "SEND_FIELDS", "MessageBirdAdapter"]

F = Field

#: ``messages`` create: every parameter of the MessageBird SMS API (python-rest-api ``message_create``
#: passes them through as given).
SEND_FIELDS: Final = FieldTable(
    (
        F("recipients", "recipient", note="numbers, comma-joined or a list; each is checked"),
        F("originator", "sender"),
        F("body", "content", text=True),
        F("typeDetails", "content", note="binary: the header (udh) and other parts"),
        F("type", "control", safe=frozenset({"sms"}), note="binary, or flash (shown without being stored)"),
        F("mclass", "control", safe=frozenset({"1"}), note="0: flash"),
        F("reportUrl", "callback_url", note="MessageBird posts status reports (with the number) there"),
        F("scheduledDatetime", "control", note="scheduling: sent later, after the gateway's checks"),
        F("validity", "control", note="how long MessageBird keeps trying"),
        F("gateway", "control", note="picks the route, and with it the price"),
        F("shortenUrls", "control", note="MessageBird rewrites links and tracks clicks"),
        F("datacoding", "harmless", note="plain, unicode or auto"),
        F("reference", "harmless", note="the client's reference, echoed in reports"),
    )
)
#: Fields that send to numbers not in the request: refused, however written.
FANOUT: Final = FanOut(
    {"groupIds": "sending to contact groups is not supported: their members cannot be checked"}
)

READER: Final = JsonFieldsReader(
    fields=SEND_FIELDS,
    separator=",",
    numbers_as_ints=True,
    numbers=NumberRule(bare_digits=True),
    check=FANOUT.check_json,
)
_ID: Final = compile_spec_path("/id")


class MessageBirdAdapter:
    __slots__ = ()
    name: str = "messagebird"
    slots = (TokenSlot("AccessKey"),)

    def reader(self, route: RouteConfig) -> JsonFieldsReader:
        return READER

    def target(self, template: PathTemplate, params: Mapping[str, str]) -> UpstreamTarget:
        return UpstreamTarget(template.render(params))

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        return message_id_at(_ID, status, body)


PROVIDER: Final = Provider("messagebird", lambda settings: MessageBirdAdapter())
