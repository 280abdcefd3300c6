"""Sinch SMS: ``POST /xms/v1/{plan}/batches``, JSON, ``Authorization: Bearer``.

``to`` is a list of up to 1000 numbers (with or without ``+``), ``from`` the sender, ``body`` the
text; ``parameters`` substitutes per-recipient values into the body (often a code) and is logged
like it. ``{plan}`` is replaced upstream by ``upstream.account_id`` when that is set, so clients
can use a gateway-issued plan id. Clients send their gateway-issued password as the API token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.providers.base import AccountPath, NumberRule, Provider, UpstreamTarget
from gateway.providers.generic import JsonFieldsReader, compile_spec_path, message_id_at
from gateway.providers.slots import TokenSlot

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.routing import PathTemplate

__all__ = ["PROVIDER", "SinchAdapter"]

READER: Final = JsonFieldsReader(
    recipients=("/to/*",),
    senders=("/from",),
    bodies=("/body",),
    secrets=("/parameters",),
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
