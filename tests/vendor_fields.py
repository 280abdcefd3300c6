"""Field tables of the Plivo, Sinch, Infobip, SMSAPI, MessageBird and AWS SNS readers, and a valid
request for each, for the tests that put every declared field (and every spelling of it) through
the real gateway and a stand-in vendor that records what reaches it."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

from gateway.config.schema import RouteConfig
from gateway.messages.base import MessageReader
from gateway.messages.fields import Field, FieldTable
from gateway.vendors import REGISTRY, ProviderSettings
from tests.conftest import CLIENT_PASSWORD, CLIENT_USER, VENDOR_SID, basic

EE = "+37255512367"
EE_BARE = EE[1:]
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
PUBLIC_URL = "https://sms-gw.example.com"
#: A callback route of the gateway's own: the only place an allowed callback URL may name.
CALLBACK_PATH = "/callbacks/vendor"
OWN_CALLBACK = PUBLIC_URL + CALLBACK_PATH
ELSEWHERE = "https://collector.example.net/receipts"
APP_KEY_ENV = "SMSGW_TEST_VENDOR_APP_KEY"
ACCESS_KEY_ENV = "SMSGW_TEST_VENDOR_ACCESS_KEY"
BEARER = {"type": "bearer", "token": "file:secrets/vendor_token"}
BASIC = {"type": "basic", "username": VENDOR_SID, "password": "file:secrets/vendor_token"}
SIGV4 = {
    "type": "aws-sigv4",
    "username": VENDOR_SID,
    "password": "file:secrets/vendor_token",
    "region": "eu-west-1",
}
#: Where the SNS reader declares the SMS message attributes.
ATTRIBUTE = "/MessageAttributes/"
SNS_SENDER = {
    "MessageAttributes.entry.1.Name": "AWS.SNS.SMS.SenderID",
    "MessageAttributes.entry.1.Value.DataType": "String",
    "MessageAttributes.entry.1.Value.StringValue": "MyBank",
}


@dataclass(frozen=True)
class VendorCase:
    """One reader of one vendor: its route, credentials and a valid request (form pairs or JSON)."""

    name: str
    provider: str
    path: str  # the route's path template
    url_path: str  # a concrete path a client sends to
    kind: Literal["form", "json"]
    base: Any
    credentials: dict[str, Any]
    auth: str = "basic"  # basic | Bearer | App | AccessKey

    @property
    def content_type(self) -> str:
        return FORM if self.kind == "form" else JSON

    def headers(self) -> dict[str, str]:
        token = (
            basic(CLIENT_USER, CLIENT_PASSWORD) if self.auth == "basic" else f"{self.auth} {CLIENT_PASSWORD}"
        )
        return {"Authorization": token, "Content-Type": self.content_type}

    def reader(self) -> MessageReader:
        adapter = REGISTRY[self.provider].build(ProviderSettings(None, VENDOR_SID))
        return adapter.reader(RouteConfig(name="r", path=self.path, auth=("basic",)))

    @property
    def table(self) -> FieldTable:
        table = getattr(self.reader(), "table", None)
        assert isinstance(table, FieldTable), f"{self.name}: the reader declares no field table"
        return table

    def fields(self, *roles: str) -> list[Field]:
        return [f for f in self.table.fields if f.role in roles]

    def present(self, f: Field) -> bool:
        """True when the valid request already holds the field (it is then not added again)."""
        if self.kind == "form":
            if f.name.startswith(ATTRIBUTE):
                return f.name.removeprefix(ATTRIBUTE) in dict(self.base).values()
            return any(name == f.name for name, _ in self.base)
        node: Any = self.base
        for seg in segments(f.name):
            if seg == "*":
                if not isinstance(node, list) or not node:
                    return False
                node = node[0]
            elif isinstance(node, dict) and seg in node:
                node = node[seg]
            else:
                return False
        return True

    def with_field(self, name: str, value: Any, key: str | None = None) -> Any:
        """The valid request plus one field: a form name, an SNS message attribute
        (``/MessageAttributes/<name>``), or a JSON pointer (``*``: the first element). ``key``
        writes the field's last key otherwise (a spelling variant)."""
        if self.kind == "form":
            pairs = list(self.base)
            if name.startswith(ATTRIBUTE):
                n = 1 + sum(1 for k, _ in pairs if k.endswith(".Name"))
                pairs += [
                    (f"MessageAttributes.entry.{n}.Name", key or name.removeprefix(ATTRIBUTE)),
                    (f"MessageAttributes.entry.{n}.Value.DataType", "String"),
                    (f"MessageAttributes.entry.{n}.Value.StringValue", value),
                ]
            else:
                pairs.append((key or name, value))
            return pairs
        doc = copy.deepcopy(self.base)
        steps = segments(name if name.startswith("/") else "/" + name)
        node: Any = doc
        for i, seg in enumerate(steps[:-1]):
            nxt = steps[i + 1]
            if seg == "*":
                if not node:
                    node.append([] if nxt == "*" else {})
                node = node[0]
            else:
                node = node.setdefault(seg, [] if nxt == "*" else {})
        node[key or steps[-1]] = value
        return doc

    def encode(self, request: Any) -> bytes:
        if self.kind == "form":
            return urlencode(request, quote_via=quote).encode()
        return json.dumps(request, ensure_ascii=False).encode()


def segments(name: str) -> tuple[str, ...]:
    return tuple(name[1:].split("/")) if name.startswith("/") else (name,)


def display(f: Field) -> str:
    """The name a route's ``allow_fields`` uses."""
    return f.name[1:] if f.name.startswith("/") else f.name


def last_key(f: Field) -> str:
    return segments(f.name)[-1]


def spellings(name: str, kind: str) -> Iterator[str]:
    """Names a lenient vendor stack could bind to ``name`` (PHP, Express ``qs``, Jackson, ASP.NET)."""
    variants = {name.upper(), name.lower(), name.swapcase(), name[:1].swapcase() + name[1:]}
    variants |= {" " + name, name + " ", "\t" + name}
    if kind == "form":
        variants |= {name + "[]", name + "[0]", name + ".x", name + "[x]"}
    variants.discard(name)
    return iter(sorted(variants))


CASES: dict[str, VendorCase] = {
    c.name: c
    for c in (
        VendorCase(
            "plivo",
            "plivo",
            "/v1/Account/{auth_id}/Message/",
            f"/v1/Account/{CLIENT_USER}/Message/",
            "json",
            {"src": "MyBank", "dst": EE_BARE, "text": "hello"},
            BASIC,
        ),
        VendorCase(
            "sinch",
            "sinch",
            "/xms/v1/{plan}/batches",
            "/xms/v1/plan01/batches",
            "json",
            {"from": "MyBank", "to": [EE_BARE], "body": "hello"},
            BEARER,
            "Bearer",
        ),
        VendorCase(
            "infobip",
            "infobip",
            "/sms/3/messages",
            "/sms/3/messages",
            "json",
            {
                "messages": [
                    {"sender": "MyBank", "destinations": [{"to": EE_BARE}], "content": {"text": "hello"}}
                ]
            },
            {"type": "header", "name": "Authorization", "value": f"env:{APP_KEY_ENV}"},
            "App",
        ),
        VendorCase(
            "infobip-v2",
            "infobip",
            "/sms/2/text/advanced",
            "/sms/2/text/advanced",
            "json",
            {"messages": [{"from": "MyBank", "destinations": [{"to": EE_BARE}], "text": "hello"}]},
            {"type": "header", "name": "Authorization", "value": f"env:{APP_KEY_ENV}"},
            "App",
        ),
        VendorCase(
            "smsapi",
            "smsapi",
            "/sms.do",
            "/sms.do",
            "form",
            [("to", EE_BARE), ("from", "MyBank"), ("message", "hello"), ("format", "json")],
            BEARER,
            "Bearer",
        ),
        VendorCase(
            "messagebird",
            "messagebird",
            "/messages",
            "/messages",
            "json",
            {"originator": "MyBank", "recipients": EE_BARE, "body": "hello"},
            {"type": "header", "name": "Authorization", "value": f"env:{ACCESS_KEY_ENV}"},
            "AccessKey",
        ),
        VendorCase(
            "aws-sns",
            "aws-sns",
            "/",
            "/",
            "form",
            [
                ("Action", "Publish"),
                ("Version", "2010-03-31"),
                ("PhoneNumber", EE),
                ("Message", "hello"),
                *SNS_SENDER.items(),
            ],
            SIGV4,
        ),
    )
}
NAMES = sorted(CASES)

#: Declared fields the reader refuses whatever their value (a text per protocol), and the reason code.
NEVER: dict[tuple[str, str], str] = {
    ("aws-sns", "MessageStructure"): "bad_request",
}

#: Values for fields the reader checks, or that a vendor reads as a number or a flag.
VALUES: dict[str, Any] = {
    "encoding": "utf-8",
    "Version": "2010-03-31",
    "/MessageAttributes/AWS.SNS.SMS.MaxPrice": "0.50",
    "/MessageAttributes/AWS.SNS.SMS.SMSType": "Transactional",
    "type": "whatsapp",
    "MessageStructure": "json",
}


def control_value(case: VendorCase, f: Field) -> Any:
    """A value of a control field that is not the vendor's default (so it needs allowing)."""
    if f.role == "callback_url":
        return ELSEWHERE
    if f.name in VALUES:
        return VALUES[f.name]
    if case.name == "sinch" and f.name == "type":
        return "mt_binary"
    if case.name == "messagebird" and f.name == "type":
        return "flash"
    return "1" if case.kind == "form" else "x1"
