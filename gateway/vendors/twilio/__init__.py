"""Twilio: Programmable Messaging and Verify sends; ``X-Twilio-Signature`` callbacks."""

from __future__ import annotations

from gateway.callbacks.events import EventFields
from gateway.callbacks.scheme import Scheme
from gateway.vendors.base import SandboxRoute, Vendor
from gateway.vendors.twilio import sandbox
from gateway.vendors.twilio.callback import TwilioVerifier
from gateway.vendors.twilio.send import PROVIDER

__all__ = ["VENDOR"]

VENDOR = Vendor(
    "Twilio",
    (PROVIDER,),
    schemes=(
        Scheme(
            "twilio",
            lambda secret, o: TwilioVerifier(secret),
            EventFields(
                message_id=("MessageSid", "SmsSid", "SmsMessageSid"),
                status=("MessageStatus", "SmsStatus"),
                numbers=("To", "From"),
                text=("Body",),
            ),
            signs_url=True,
            credential_of="twilio",
            api_key_prefix="SK",
            signed_with="the account's Auth Token",
        ),
    ),
    default_schemes={"twilio": "twilio"},
    signature_headers=frozenset({"x-twilio-signature"}),
    sandbox=(
        SandboxRoute("POST", "/2010-04-01/Accounts/{account}/Messages.json", sandbox.twilio_messages),
        SandboxRoute("POST", "/v2/Services/{service}/Verifications", sandbox.twilio_verify),
        SandboxRoute("POST", "/v2/Services/{service}/VerificationCheck", sandbox.twilio_verify),
    ),
)
