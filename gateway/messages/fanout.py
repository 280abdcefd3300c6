"""Fan-out fields: a contact group, a topic, a list, whose members are not in the request.

The gateway checks every number a vendor will send to (countries, number types, per-recipient
limits); a field that makes the vendor send to numbers kept elsewhere defeats all of that, so it
is a control field no route can allow. It is refused (403 ``field_not_allowed``) under every
spelling the vendor's stack could bind to it (``Group``, `` group``, ``group[]``, ``groupids``),
before the field table reads the request, so a misspelling never turns it into a 400 that a
client could mistake for a typo of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.core.errors import GatewayError, Reason, refuse
from gateway.core.events import Detail
from gateway.messages.forms import check_name, field_base, json_key_fold

__all__ = ["FanOut"]


class FanOut:
    """The fan-out fields of one vendor request, by name, with the reason given to the client."""

    __slots__ = ("_folded",)

    def __init__(self, fields: Mapping[str, str]) -> None:
        #: folded name -> (declared name, message)
        self._folded = {name.casefold(): (name, why) for name, why in fields.items()}

    def _refuse(self, folded: str) -> GatewayError:
        name, why = self._folded[folded]
        return refuse(Reason.FIELD_NOT_ALLOWED, why, detail=Detail.CONTROL.of(name))

    def check_form(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Forms: names cut at ``[``, ``]`` or ``.``, trimmed and case-folded, as PHP or ``qs`` do."""
        for name, _ in pairs:
            base = field_base(check_name(name))
            if base in self._folded:
                raise self._refuse(base)

    def check_json(self, doc: Mapping[str, object]) -> None:
        """A JSON object's keys, trimmed, case-folded and without control characters."""
        for key in doc:
            folded = json_key_fold(key)
            if folded in self._folded:
                raise self._refuse(folded)
