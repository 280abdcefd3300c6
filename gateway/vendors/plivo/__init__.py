"""Plivo: the Message API; V2 and V3 signed callbacks."""

from __future__ import annotations

from collections.abc import Callable

from gateway.callbacks.base import Verifier
from gateway.callbacks.events import EventFields
from gateway.callbacks.scheme import Scheme
from gateway.vendors.base import SandboxRoute, Vendor
from gateway.vendors.plivo import sandbox
from gateway.vendors.plivo.callback import V2_HEADERS, V3_HEADERS, PlivoV2Verifier, PlivoV3Verifier
from gateway.vendors.plivo.send import PROVIDER

__all__ = ["VENDOR"]

_FIELDS = EventFields(message_id=("MessageUUID",), status=("Status",), numbers=("To", "From"), text=("Text",))


def _scheme(name: str, verifier: Callable[[bytes], Verifier]) -> Scheme:
    """V2 and V3 differ only in what they sign: both sign the URL, with the account's Auth Token."""
    return Scheme(
        name,
        lambda secret, o: verifier(secret),
        _FIELDS,
        signs_url=True,
        credential_of="plivo",
        signed_with="the account's Auth Token",
    )


VENDOR = Vendor(
    "Plivo",
    (PROVIDER,),
    schemes=(_scheme("plivo", PlivoV2Verifier), _scheme("plivo-v3", PlivoV3Verifier)),
    default_schemes={"plivo": "plivo"},
    signature_headers=frozenset(h.lower() for h in ("X-Plivo-Signature", *V2_HEADERS, *V3_HEADERS)),
    sandbox=(SandboxRoute("POST", "/v1/Account/{auth_id}/Message/", sandbox.plivo_message),),
)
