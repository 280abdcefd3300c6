"""Plivo: the Message API; V2 and V3 signed callbacks."""

from __future__ import annotations

from gateway.callbacks.events import EventFields
from gateway.callbacks.scheme import Scheme
from gateway.vendors.base import SandboxRoute, Vendor
from gateway.vendors.plivo import sandbox
from gateway.vendors.plivo.callback import V2_HEADERS, V3_HEADERS, PlivoV2Verifier, PlivoV3Verifier
from gateway.vendors.plivo.send import PROVIDER

__all__ = ["VENDOR"]

_FIELDS = EventFields(message_id=("MessageUUID",), status=("Status",), numbers=("To", "From"), text=("Text",))

VENDOR = Vendor(
    "Plivo",
    (PROVIDER,),
    schemes=(
        Scheme(
            "plivo",
            lambda secret, o: PlivoV2Verifier(secret),
            _FIELDS,
            signs_url=True,
            credential_of="plivo",
            signed_with="the account's Auth Token",
        ),
        Scheme(
            "plivo-v3",
            lambda secret, o: PlivoV3Verifier(secret),
            _FIELDS,
            signs_url=True,
            credential_of="plivo",
            signed_with="the account's Auth Token",
        ),
    ),
    default_schemes={"plivo": "plivo"},
    signature_headers=frozenset(h.lower() for h in ("X-Plivo-Signature", *V2_HEADERS, *V3_HEADERS)),
    sandbox=(SandboxRoute("POST", "/v1/Account/{auth_id}/Message/", sandbox.plivo_message),),
)
