"""Sinch: SMS batches (bearer token); HMAC-signed callbacks."""

from __future__ import annotations

from gateway.callbacks.events import EventFields
from gateway.callbacks.scheme import Scheme
from gateway.vendors.base import SandboxRoute, Vendor
from gateway.vendors.sinch import sandbox
from gateway.vendors.sinch.callback import SIGNATURE, SinchVerifier
from gateway.vendors.sinch.send import PROVIDER

__all__ = ["VENDOR"]

VENDOR = Vendor(
    "Sinch",
    (PROVIDER,),
    schemes=(
        Scheme(
            "sinch",
            lambda secret, o: SinchVerifier(secret, o.tolerance_s),
            EventFields(("batch_id", "id"), ("status",), ("recipient", "from", "to"), ("body",)),
            options=frozenset({"tolerance_s"}),
            signed_with="the callback secret of the service plan",
        ),
    ),
    default_schemes={"sinch": "sinch"},
    signature_headers=frozenset({SIGNATURE}),
    sandbox=(SandboxRoute("POST", "/xms/v1/{plan}/batches", sandbox.sinch_batches),),
)
