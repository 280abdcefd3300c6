"""What a provider adapter does: read a vendor request the way that vendor reads it.

The gateway never rewrites the body on the wire (vendors sign bodies); adapters only extract the
parts that policies and logs need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Message:
    """The parts of a send request that policies act on; raw, as the client sent them."""

    recipients: tuple[str, ...]
    sender: str | None
    body: str | None


class ProviderAdapter(Protocol):
    name: str
    #: Lower-case names of the fields the adapter reads. The same name in the query string is
    #: refused: some vendor stacks merge query and body parameters, and the gateway must check the
    #: value that is sent.
    read_fields: frozenset[str]

    def parse(self, body: bytes, content_type: str) -> Message:
        """Extract the message or raise ``GatewayError`` 400 ``bad_request`` (never echoing input)."""
        ...

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        """The vendor's id for an accepted message, read from its answer; None when absent."""
        ...
