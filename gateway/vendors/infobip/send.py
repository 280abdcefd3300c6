"""Infobip SMS: ``POST /sms/3/messages`` and the older ``POST /sms/2/text/advanced``, JSON.

Every message of a request is checked: v3 ``messages[].destinations[].to``, ``messages[].sender``,
``messages[].content.text``; v2 ``messages[].destinations[].to``, ``messages[].from``,
``messages[].text``. Every other field of each version is declared in :data:`V3_FIELDS` /
:data:`V2_FIELDS` with its role: delivery and click callback URLs, scheduling, validity and link
rewriting need the route's ``allow_fields``. Numbers are international digits, ``+`` optional.
Clients send ``Authorization: App <gateway-issued password>`` (the SDK's API key) or Basic; an
``App`` key in the query string is a credential too, so it is never forwarded nor logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.messages.base import NumberRule, Provider, UpstreamTarget
from gateway.messages.fields import Field, FieldTable
from gateway.messages.slots import BASIC, TokenSlot
from gateway.vendors.generic.pointers import compile_spec_path, message_id_at
from gateway.vendors.generic.send import JsonFieldsReader

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.core.routing import PathTemplate

__all__ = ["PROVIDER", "V2_FIELDS", "V3_FIELDS", "InfobipAdapter"]

F = Field
_M = "/messages/*"


def _url_options(at: str) -> tuple[Field, ...]:
    """The link options both versions take (v3 ``options.tracking``, v2 ``urlOptions``)."""
    return (
        F(f"{at}/shortenUrl", "control", note="Infobip rewrites links in the text"),
        F(f"{at}/trackClicks", "control", note="Infobip counts clicks on the links"),
        F(f"{at}/trackingUrl", "callback_url", note="Infobip posts click events there"),
        F(f"{at}/removeProtocol", "control", note="changes the links in the text"),
        F(f"{at}/customDomain", "control", note="changes the links in the text"),
    )


#: ``/sms/3/messages`` (infobip-api-python-client ``SmsRequest``, ``SmsMessage`` and their parts).
V3_FIELDS: Final = FieldTable(
    (
        F(f"{_M}/destinations/*/to", "recipient"),
        F(f"{_M}/destinations/*/messageId", "harmless", note="the client's id for the message"),
        F(f"{_M}/destinations/*/networkId", "control", note="forces an operator network: route and price"),
        F(f"{_M}/sender", "sender"),
        F(f"{_M}/content/text", "content", text=True),
        F(f"{_M}/content/hex", "content", note="a binary message"),
        F(f"{_M}/content/dataCoding", "control", note="a binary message's coding"),
        F(f"{_M}/content/esmClass", "control", note="a binary message's class"),
        F(f"{_M}/content/transliteration", "harmless"),
        F(f"{_M}/content/language", "harmless", note="languageCode, singleShift, lockingShift"),
        F(f"{_M}/options/platform", "control", note="entityId, applicationId: Infobip's per-app settings"),
        F(f"{_M}/options/validityPeriod", "control", note="amount, timeUnit: how long Infobip keeps trying"),
        F(f"{_M}/options/deliveryTimeWindow", "control", note="days, from, to: when Infobip may send"),
        F(f"{_M}/options/campaignReferenceId", "harmless"),
        F(f"{_M}/options/regional/indiaDlt", "harmless", note="India DLT registration ids"),
        F(f"{_M}/options/regional/turkeyIys", "harmless", note="Turkey IYS brand code"),
        F(f"{_M}/options/regional/southKorea/title", "content", note="shown with the message"),
        F(f"{_M}/options/regional/southKorea/resellerCode", "harmless"),
        F(f"{_M}/options/flash", "control", safe=frozenset({"false"}), note="shown without being stored"),
        F(f"{_M}/webhooks/delivery/url", "callback_url", note="Infobip posts delivery reports there"),
        F(f"{_M}/webhooks/delivery/intermediateReport", "harmless"),
        F(f"{_M}/webhooks/delivery/notify", "harmless"),
        F(f"{_M}/webhooks/contentType", "harmless"),
        F(f"{_M}/webhooks/callbackData", "harmless", note="the client's data, echoed in reports"),
        F("/options/schedule/bulkId", "harmless"),
        F("/options/schedule/sendAt", "control", note="scheduling: sent later, after the gateway's checks"),
        F("/options/schedule/sendingSpeedLimit", "control", note="amount, timeUnit: spreads the send"),
        *_url_options("/options/tracking"),
        F("/options/includeSmsCountInResponse", "harmless"),
        F("/options/conversionTracking", "control", note="Infobip tracks conversions"),
    )
)
#: ``/sms/2/text/advanced`` (``SmsAdvancedTextualRequest``, ``SmsTextualMessage``).
V2_FIELDS: Final = FieldTable(
    (
        F(f"{_M}/destinations/*/to", "recipient"),
        F(f"{_M}/destinations/*/messageId", "harmless", note="the client's id for the message"),
        F(f"{_M}/from", "sender"),
        F(f"{_M}/text", "content", text=True),
        F(f"{_M}/callbackData", "harmless", note="the client's data, echoed in reports"),
        F(f"{_M}/deliveryTimeWindow", "control", note="days, from, to: when Infobip may send"),
        F(f"{_M}/flash", "control", safe=frozenset({"false"}), note="shown without being stored"),
        F(f"{_M}/intermediateReport", "harmless"),
        F(f"{_M}/language", "harmless", note="languageCode"),
        F(f"{_M}/notifyContentType", "harmless"),
        F(f"{_M}/notifyUrl", "callback_url", note="Infobip posts delivery reports there"),
        F(f"{_M}/regional/indiaDlt", "harmless", note="India DLT registration ids"),
        F(f"{_M}/regional/turkeyIys", "harmless", note="Turkey IYS brand code"),
        F(f"{_M}/regional/southKorea", "harmless", note="resellerCode"),
        F(f"{_M}/sendAt", "control", note="scheduling: sent later, after the gateway's checks"),
        F(f"{_M}/transliteration", "harmless"),
        F(f"{_M}/validityPeriod", "control", note="minutes Infobip keeps trying"),
        F(f"{_M}/entityId", "control", note="Infobip's per-entity settings"),
        F(f"{_M}/applicationId", "control", note="Infobip's per-application settings"),
        F("/bulkId", "harmless"),
        F("/sendingSpeedLimit", "control", note="amount, timeUnit: spreads the send"),
        *_url_options("/urlOptions"),
        F("/tracking", "control", note="baseUrl, processKey, track, type: conversion tracking"),
        F("/includeSmsCountInResponse", "harmless"),
    )
)

NUMBERS: Final = NumberRule(bare_digits=True)
V3_READER: Final = JsonFieldsReader(fields=V3_FIELDS, numbers=NUMBERS)
V2_READER: Final = JsonFieldsReader(fields=V2_FIELDS, numbers=NUMBERS)
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
