"""The stage that reads the message the vendor will send, and records its redacted form."""

from __future__ import annotations

from typing import Any

from gateway.errors import bad_request
from gateway.exchange import Exchange
from gateway.providers.base import MessageReader
from gateway.providers.forms import check_name, field_base, query_names
from gateway.redaction import Redactor

__all__ = ["ReadMessage"]


class ReadMessage:
    """Parse the body as the vendor will (400 ``bad_request`` when it could be read two ways).

    A message field in the query string is refused as well: some vendor stacks merge query and
    body parameters, and the gateway must check the value that is sent.
    """

    name = "message"
    __slots__ = ("_reader", "_redactor")

    def __init__(self, reader: MessageReader, redactor: Redactor) -> None:
        self._reader = reader
        self._redactor = redactor

    async def run(self, ex: Exchange) -> None:
        request = ex.request
        raw_query = request.raw_path.partition("?")[2]
        reader = self._reader
        assert ex.body is not None
        content_type = request.headers.get("Content-Type", "")
        parse_request = getattr(reader, "parse_request", None)
        if parse_request is not None:  # the vendor reads message fields from the query too
            message = parse_request(raw_query, ex.body, content_type)
        else:
            if raw_query:
                fields = reader.fields
                for name in query_names(raw_query):
                    if field_base(check_name(name)) in fields:
                        raise bad_request("message fields belong in the body, not the query string")
            message = reader.parse(ex.body, content_type)
        ex.message = message
        ex.recipient_count = len(message.recipients)
        redactor = self._redactor
        senders = list(dict.fromkeys(redactor.sender(s) for s in message.senders))
        ex.log_sender = senders[0] if len(senders) == 1 else (senders or None)
        bodies: list[Any] = [redactor.body(text) for text in message.bodies]
        ex.log_body = bodies[0] if len(bodies) == 1 else (bodies or None)
        if message.secrets:
            ex.log_secrets = [redactor.secret(text) for text in message.secrets]
