"""SMSAPI: ``sms.do`` (bearer token or Basic). No built-in callback signature."""

from __future__ import annotations

from gateway.vendors.base import SandboxRoute, Vendor
from gateway.vendors.smsapi import sandbox
from gateway.vendors.smsapi.send import PROVIDER

__all__ = ["VENDOR"]

VENDOR = Vendor(
    "SMSAPI",
    (PROVIDER,),
    sandbox=(SandboxRoute("POST", "/sms.do", sandbox.smsapi_send),),
)
