"""Infobip: SMS v3 and v2 advanced (``App`` token or Basic). No built-in callback signature."""

from __future__ import annotations

from gateway.vendors.base import SandboxRoute, Vendor
from gateway.vendors.infobip import sandbox
from gateway.vendors.infobip.send import PROVIDER

__all__ = ["VENDOR"]

VENDOR = Vendor(
    "Infobip",
    (PROVIDER,),
    sandbox=(
        SandboxRoute("POST", "/sms/3/messages", sandbox.infobip_sms),
        SandboxRoute("POST", "/sms/2/text/advanced", sandbox.infobip_sms),
    ),
)
