"""MessageBird: ``POST /messages``, JSON, ``Authorization: AccessKey``.

``recipients`` is a comma-joined string or a list (of strings or integers), ``originator`` the
sender, ``body`` the text. ``groupIds`` sends to contact groups whose members are not in the
request, so it is refused. Numbers are international digits, ``+`` optional. Clients send their
gateway-issued password as the access key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.providers.base import NumberRule, Provider, UpstreamTarget
from gateway.providers.generic import JsonFieldsReader, compile_spec_path, message_id_at
from gateway.providers.slots import TokenSlot

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.routing import PathTemplate

__all__ = ["PROVIDER", "MessageBirdAdapter"]

READER: Final = JsonFieldsReader(
    recipients=("/recipients",),
    separator=",",
    numbers_as_ints=True,
    senders=("/originator",),
    bodies=("/body",),
    numbers=NumberRule(bare_digits=True),
    refused=(("/groupIds", "sending to contact groups is not supported: their members cannot be checked"),),
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
