"""AWS SNS ``Publish`` to a phone number, SigV4-signed as boto3 signs it. No callbacks."""

from __future__ import annotations

from gateway.vendors.aws_sns import sandbox
from gateway.vendors.aws_sns.send import PROVIDER
from gateway.vendors.base import SandboxRoute, Vendor

__all__ = ["VENDOR"]

VENDOR = Vendor(
    "AWS SNS",
    (PROVIDER,),
    sandbox=(SandboxRoute("POST", "/", sandbox.sns_publish),),
)
