"""Plivo: ``POST /v1/Account/{auth_id}/Message/``, JSON.

``dst`` holds one or more numbers joined by ``<``; the sender is ``src`` or a ``powerpack_uuid``
(both at once are refused, as the SDK does); ``text`` is the body, ``media_urls`` are logged like
it. ``{auth_id}`` in the path is the client's gateway-issued id: upstream the real one goes there,
and back in the answer the client's. Plivo reads numbers with or without ``+``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.errors import bad_request
from gateway.providers.base import AccountPath, NumberRule, Provider, UpstreamTarget
from gateway.providers.generic import JsonFieldsReader, compile_spec_path, message_id_at
from gateway.providers.slots import BASIC

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.routing import PathTemplate

__all__ = ["PROVIDER", "PlivoAdapter"]


def _one_sender(doc: dict[str, object]) -> None:
    if "src" in doc and "powerpack_uuid" in doc:
        raise bad_request("give src or powerpack_uuid, not both")


READER: Final = JsonFieldsReader(
    recipients=("/dst",),
    separator="<",
    senders=("/src", "/powerpack_uuid"),
    bodies=("/text",),
    secrets=("/media_urls",),
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
