"""Any JSON or form API described in ``[upstream.generic]``; callbacks signed with an HMAC header."""

from __future__ import annotations

from gateway.callbacks.events import EventFields
from gateway.callbacks.scheme import Scheme, algorithm_check
from gateway.config.webhook_options import WebhookOptions
from gateway.vendors.base import SandboxRoute, Vendor
from gateway.vendors.generic import sandbox
from gateway.vendors.generic.callback import ALGORITHMS, HmacHeaderVerifier
from gateway.vendors.generic.send import PROVIDER

__all__ = ["VENDOR"]

_ALGORITHM = algorithm_check(ALGORITHMS)


def _check(options: WebhookOptions) -> list[tuple[str, str]]:
    found = _ALGORITHM(options)
    if not options.header:
        found.append(("header", "signature = 'hmac' needs header (the header that holds the signature)"))
    return found


def _fields(options: WebhookOptions) -> EventFields:
    """The callback's id and status are wherever the route's options say."""
    return EventFields(
        message_id=(options.message_id,) if options.message_id else (),
        status=(options.status,) if options.status else (),
    )


VENDOR = Vendor(
    "Any other vendor",
    (PROVIDER,),
    schemes=(
        Scheme(
            "hmac",
            lambda secret, o: HmacHeaderVerifier(
                secret, o.header, o.algorithm or "sha256", o.encoding, o.prefix
            ),
            EventFields(),
            options=frozenset({"algorithm", "header", "encoding", "prefix", "message_id", "status"}),
            signed_with="the shared HMAC secret",
            check=_check,
            fields_from=_fields,
        ),
    ),
    sandbox=(SandboxRoute("POST", "/v1/messages", sandbox.generic_messages),),
)
