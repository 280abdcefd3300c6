"""Gateway-made errors: one exception type that carries the DESIGN.md reason code.

Decisions raise :class:`GatewayError`; the outermost middleware turns it into the JSON error
body. Messages are fixed strings chosen by the raiser and must never contain a body, a number or
a credential.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(eq=False)
class GatewayError(Exception):
    status: int
    code: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def bad_request(message: str) -> GatewayError:
    return GatewayError(400, "bad_request", message)


def invalid_recipient(message: str = "a recipient is not a valid E.164 phone number") -> GatewayError:
    return GatewayError(422, "invalid_recipient", message)
