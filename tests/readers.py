"""Every adapter's reader with one valid request each: the table the parser-differential and fuzz
tests run over, so a new vendor (or a new kind of route) is one entry here and every such test
covers it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import gateway.server.config  # noqa: F401 - loads the vendors package in the order the gateway does
from gateway.config.schema import RouteConfig
from gateway.messages.base import Message, MessageReader
from gateway.vendors import REGISTRY, ProviderSettings
from gateway.vendors.generic.send import GenericOptions

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
EE = "+37255512367"
EE_BARE = EE[1:]

#: A location in a request: form field name, or the keys and indexes down a JSON document.
Location = tuple[str | int, ...]


@dataclass(frozen=True)
class ReaderCase:
    """One reader and a valid request for it: ``fields`` is the form's fields (in order) or the JSON
    document; ``singles`` the single-valued message fields (recipient first) the vendor reads."""

    name: str
    provider: str
    path: str
    kind: str  # "form" | "json"
    fields: dict[str, Any]
    singles: tuple[Location, ...]
    options: GenericOptions | None = None
    #: JSON: RFC 6901 pointers (``*`` = every element) to every recipient, and how a recipient
    #: string may hold several; the fuzz tests' reference reading.
    pointers: tuple[str, ...] = ()
    separator: str | None = None

    @property
    def content_type(self) -> str:
        return FORM if self.kind == "form" else JSON

    @property
    def recipient(self) -> Location:
        return self.singles[0]

    def reader(self) -> MessageReader:
        adapter = REGISTRY[self.provider].build(ProviderSettings(self.options, "ACreal"))
        return adapter.reader(RouteConfig(name="r", path=self.path, auth=("basic",)))

    def encode(self, doc: dict[str, Any] | None = None) -> bytes:
        doc = self.fields if doc is None else doc
        if self.kind == "form":
            return urlencode(list(doc.items())).encode()
        return json.dumps(doc, ensure_ascii=False).encode()

    def with_value(self, where: Location, value: Any) -> dict[str, Any]:
        """A deep copy of the fields with ``value`` put at ``where``."""
        doc = json.loads(json.dumps(self.fields))
        node: Any = doc
        for step in where[:-1]:
            node = node[step]
        node[where[-1]] = value
        return doc

    def value_at(self, where: Location) -> Any:
        node: Any = self.fields
        for step in where:
            node = node[step]
        return node

    def parse(self, body: bytes, content_type: str | None = None) -> Message:
        return self.reader().parse(body, self.content_type if content_type is None else content_type)


def _generic(fmt: str, recipient: str, sender: str, body: str) -> GenericOptions:
    return GenericOptions(
        format=fmt, recipient=recipient, sender=sender, body=body, fields={"meta": "harmless"}
    )


SNS_SENDER = {
    "MessageAttributes.entry.1.Name": "AWS.SNS.SMS.SenderID",
    "MessageAttributes.entry.1.Value.DataType": "String",
    "MessageAttributes.entry.1.Value.StringValue": "MyBank",
}

CASES: tuple[ReaderCase, ...] = (
    ReaderCase(
        "twilio",
        "twilio",
        "/2010-04-01/Accounts/{account}/Messages.json",
        "form",
        {"To": EE, "From": "MyBank", "Body": "hello"},
        (("To",), ("From",), ("Body",)),
    ),
    ReaderCase(
        "twilio-verify",
        "twilio",
        "/v2/Services/{service}/Verifications",
        "form",
        {"To": EE, "Channel": "sms", "CustomMessage": "hello", "CustomCode": "493817"},
        (("To",), ("CustomMessage",), ("CustomCode",)),
    ),
    ReaderCase(
        "twilio-check",
        "twilio",
        "/v2/Services/{service}/VerificationCheck",
        "form",
        {"To": EE, "Code": "493817"},
        (("To",), ("Code",)),
    ),
    ReaderCase(
        "vonage",
        "vonage",
        "/sms/json",
        "form",
        {"to": EE_BARE, "from": "MyBank", "text": "hello"},
        (("to",), ("from",), ("text",)),
    ),
    ReaderCase(
        "messente-legacy",
        "messente",
        "/send_sms/",
        "form",
        {"to": EE, "from": "MyBank", "text": "hello"},
        (("to",), ("from",), ("text",)),
    ),
    ReaderCase(
        "smsapi",
        "smsapi",
        "/sms.do",
        "form",
        {"to": EE_BARE, "from": "MyBank", "message": "hello", "param1": "493817"},
        (("to",), ("from",), ("message",), ("param1",)),
    ),
    ReaderCase(
        "aws-sns",
        "aws-sns",
        "/",
        "form",
        {"Action": "Publish", "PhoneNumber": EE, "Message": "hello", **SNS_SENDER},
        (("PhoneNumber",), ("Message",), ("MessageAttributes.entry.1.Value.StringValue",)),
    ),
    ReaderCase(
        "generic-form",
        "generic",
        "/send",
        "form",
        {"to": EE, "from": "MyBank", "text": "hello"},
        # the generic form reader takes a repeated recipient field as several recipients
        (("from",), ("text",)),
        options=_generic("form", "to", "from", "text"),
    ),
    ReaderCase(
        "vonage-messages",
        "vonage-messages",
        "/v1/messages",
        "json",
        {"message_type": "text", "channel": "sms", "to": EE_BARE, "from": "MyBank", "text": "hello"},
        (("to",), ("from",), ("text",)),
        pointers=("/to", "/failover/*/to"),
    ),
    ReaderCase(
        "messente",
        "messente",
        "/v1/omnimessage",
        "json",
        {"to": EE, "messages": [{"channel": "sms", "sender": "MyBank", "text": "hello"}]},
        (("to",), ("messages", 0, "sender"), ("messages", 0, "text")),
        pointers=("/to",),
    ),
    ReaderCase(
        "plivo",
        "plivo",
        "/v1/Account/{auth_id}/Message/",
        "json",
        {"src": "MyBank", "dst": EE_BARE, "text": "hello"},
        (("dst",), ("src",), ("text",)),
        pointers=("/dst",),
        separator="<",
    ),
    ReaderCase(
        "sinch",
        "sinch",
        "/xms/v1/{plan}/batches",
        "json",
        {"from": "MyBank", "to": [EE_BARE], "body": "hello"},
        (("to", 0), ("from",), ("body",)),
        pointers=("/to/*",),
    ),
    ReaderCase(
        "infobip",
        "infobip",
        "/sms/3/messages",
        "json",
        {"messages": [{"sender": "MyBank", "destinations": [{"to": EE_BARE}], "content": {"text": "hello"}}]},
        (
            ("messages", 0, "destinations", 0, "to"),
            ("messages", 0, "sender"),
            ("messages", 0, "content", "text"),
        ),
        pointers=("/messages/*/destinations/*/to",),
    ),
    ReaderCase(
        "infobip-v2",
        "infobip",
        "/sms/2/text/advanced",
        "json",
        {"messages": [{"from": "MyBank", "destinations": [{"to": EE_BARE}], "text": "hello"}]},
        (("messages", 0, "destinations", 0, "to"), ("messages", 0, "from"), ("messages", 0, "text")),
        pointers=("/messages/*/destinations/*/to",),
    ),
    ReaderCase(
        "messagebird",
        "messagebird",
        "/messages",
        "json",
        {"originator": "MyBank", "recipients": EE_BARE, "body": "hello"},
        (("recipients",), ("originator",), ("body",)),
        pointers=("/recipients",),
        separator=",",
    ),
    ReaderCase(
        "generic-json",
        "generic",
        "/send",
        "json",
        {"to": EE, "from": "MyBank", "text": "hello"},
        (("to",), ("from",), ("text",)),
        options=_generic("json", "/to", "/from", "/text"),
        pointers=("/to",),
    ),
)

BY_NAME = {case.name: case for case in CASES}
FORM_CASES = tuple(c for c in CASES if c.kind == "form")
JSON_CASES = tuple(c for c in CASES if c.kind == "json")


def json_with_extra(doc: Any, at: Location, key: str, value: Any) -> bytes:
    """``doc`` as JSON text with one more ``key: value`` member in the object at ``at``, even
    when the object already has that key (which ``json.dumps`` cannot write)."""

    def encode(node: Any, here: Location) -> str:
        if isinstance(node, dict):
            members = [f"{json.dumps(k)}:{encode(v, (*here, k))}" for k, v in node.items()]
            if here == at:
                members.append(f"{json.dumps(key)}:{json.dumps(value)}")
            return "{" + ",".join(members) + "}"
        if isinstance(node, list):
            return "[" + ",".join(encode(v, (*here, i)) for i, v in enumerate(node)) + "]"
        return json.dumps(node)

    return encode(doc, ()).encode()


def object_of(where: Location) -> tuple[Location, str]:
    """The object holding the last key on ``where`` and that key (a list index goes up one)."""
    steps = list(where)
    while isinstance(steps[-1], int):
        steps.pop()
    return tuple(steps[:-1]), str(steps[-1])
