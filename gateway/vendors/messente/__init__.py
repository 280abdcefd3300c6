"""Messente: the legacy ``send_sms`` API (credential in the query) and Omnimessage; signed callbacks."""

from __future__ import annotations

from gateway.callbacks.events import EventFields
from gateway.callbacks.scheme import Scheme
from gateway.vendors.base import SandboxRoute, Vendor
from gateway.vendors.messente import sandbox
from gateway.vendors.messente.callback import HEADER, MessenteVerifier
from gateway.vendors.messente.send import PROVIDER

__all__ = ["VENDOR"]

VENDOR = Vendor(
    "Messente",
    (PROVIDER,),
    schemes=(
        Scheme(
            "messente",
            lambda secret, o: MessenteVerifier(secret),
            EventFields(
                ("message_id", "sms_unique_id"), ("status", "stat"), ("to", "from", "sender"), ("text",)
            ),
            credential_of="messente",
            signed_with="the API password or the inbound Shared Secret",
        ),
    ),
    default_schemes={"messente": "messente"},
    signature_headers=frozenset({HEADER.lower()}),
    sandbox=(
        SandboxRoute("GET", "/send_sms/", sandbox.messente_send_sms),
        SandboxRoute("POST", "/send_sms/", sandbox.messente_send_sms),
        SandboxRoute("POST", "/v1/omnimessage", sandbox.messente_omnimessage),
    ),
)
