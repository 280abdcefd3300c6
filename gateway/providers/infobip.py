"""Infobip SMS: ``POST /sms/3/messages`` and the older ``POST /sms/2/text/advanced``, JSON.

Every message of a request is checked: v3 ``messages[].destinations[].to``,
``messages[].sender``, ``messages[].content.text``; v2 ``messages[].destinations[].to``,
``messages[].from``, ``messages[].text``. Numbers are international digits, ``+`` optional.
Clients send ``Authorization: App <gateway-issued password>`` (the SDK's API key) or Basic; an
``App`` key in the query string is a credential too, so it is never forwarded nor logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.providers.base import NumberRule, Provider, UpstreamTarget
from gateway.providers.generic import JsonFieldsReader, compile_spec_path, message_id_at
from gateway.providers.slots import BASIC, TokenSlot

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.routing import PathTemplate

__all__ = ["PROVIDER", "InfobipAdapter"]

NUMBERS: Final = NumberRule(bare_digits=True)
V3_READER: Final = JsonFieldsReader(
    recipients=("/messages/*/destinations/*/to",),
    senders=("/messages/*/sender",),
    bodies=("/messages/*/content/text",),
    numbers=NUMBERS,
)
V2_READER: Final = JsonFieldsReader(
    recipients=("/messages/*/destinations/*/to",),
    senders=("/messages/*/from",),
    bodies=("/messages/*/text",),
    numbers=NUMBERS,
)
_ID: Final = compile_spec_path("/messages/0/messageId")


class InfobipAdapter:
    __slots__ = ()
    name: str = "infobip"
    slots = (TokenSlot("App"), BASIC)
    #: Query parameters that carry a credential: dropped upstream, scrubbed in logs.
    secret_query_names: frozenset[str] = frozenset({"app", "apikey", "api_key"})

    def reader(self, route: RouteConfig) -> JsonFieldsReader:
        return V2_READER if route.path.rstrip("/").endswith("/sms/2/text/advanced") else V3_READER

    def target(self, template: PathTemplate, params: Mapping[str, str]) -> UpstreamTarget:
        return UpstreamTarget(template.render(params))

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        return message_id_at(_ID, status, body)


PROVIDER: Final = Provider("infobip", lambda settings: InfobipAdapter())
