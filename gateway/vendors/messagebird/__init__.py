"""MessageBird: the Messages API (``AccessKey`` token); ``MessageBird-Signature-JWT`` callbacks."""

from __future__ import annotations

from gateway.callbacks.events import EventFields
from gateway.callbacks.scheme import Scheme
from gateway.vendors.base import SandboxRoute, Vendor
from gateway.vendors.messagebird import sandbox
from gateway.vendors.messagebird.callback import HEADER, MessageBirdVerifier
from gateway.vendors.messagebird.send import PROVIDER

__all__ = ["VENDOR"]

VENDOR = Vendor(
    "MessageBird",
    (PROVIDER,),
    schemes=(
        Scheme(
            "messagebird",
            lambda secret, o: MessageBirdVerifier(secret),
            EventFields(("id",), ("status",), ("recipient", "originator"), ("body",)),
            signs_url=True,
            signed_with="the signing key (not the access key)",
        ),
    ),
    default_schemes={"messagebird": "messagebird"},
    signature_headers=frozenset({"messagebird-signature", HEADER.lower()}),
    sandbox=(SandboxRoute("POST", "/messages", sandbox.messagebird_messages),),
)
