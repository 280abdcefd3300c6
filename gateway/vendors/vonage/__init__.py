"""Vonage: the SMS API and the Messages API; signed SMS callbacks (``sig``) and Messages JWTs."""

from __future__ import annotations

from aiohttp import web

from gateway.callbacks.events import EventFields
from gateway.callbacks.scheme import Scheme, algorithm_check
from gateway.vendors.base import SandboxRoute, Vendor
from gateway.vendors.vonage import sandbox
from gateway.vendors.vonage.callback import ALGORITHMS, VonageSigVerifier
from gateway.vendors.vonage.callback_jwt import VonageJwtVerifier
from gateway.vendors.vonage.send import MESSAGES_PROVIDER, PROVIDER

__all__ = ["VENDOR"]


def _basic(request: web.Request) -> bool:
    """The Messages API shares ``/v1/messages`` with the generic API, which takes a bearer token."""
    return request.headers.get("Authorization", "").startswith("Basic ")


VENDOR = Vendor(
    "Vonage",
    (PROVIDER, MESSAGES_PROVIDER),
    schemes=(
        Scheme(
            "vonage",
            lambda secret, o: VonageSigVerifier(secret, o.algorithm or "md5-hash", o.tolerance_s),
            EventFields(("messageId",), ("status",), ("msisdn", "to"), ("text",)),
            options=frozenset({"algorithm", "tolerance_s"}),
            signed_with="the account's signature secret",
            check=algorithm_check(ALGORITHMS),
        ),
        Scheme(
            "vonage-jwt",
            lambda secret, o: VonageJwtVerifier(secret, o.tolerance_s),
            EventFields(("message_uuid",), ("status",), ("to", "from"), ("text",)),
            options=frozenset({"tolerance_s"}),
            signed_with="the account's signature secret",
        ),
    ),
    default_schemes={"vonage": "vonage", "vonage-messages": "vonage-jwt"},
    sandbox=(
        SandboxRoute("POST", "/sms/json", sandbox.vonage_sms),
        SandboxRoute("POST", "/v1/messages", sandbox.vonage_messages, accepts=_basic),
    ),
)
