"""Closed by default: every field a vendor request may carry is declared, with its role.

A vendor's API is much larger than the gateway's model of a message (recipients, sender, text):
callback URLs, scheduling, channels, price caps, contact groups. A field nobody declared could make
the vendor send data elsewhere or spend money, so each reader declares a :class:`FieldTable` of
every field it lets through, and anything else is refused (400 ``unknown_field``, the field's name
in the audit detail, never its value). Roles:

- ``recipient``, ``sender``: read and checked by the reader;
- ``content``: the text, template ids and variables, media: redacted like bodies, seen by OTP
  ``detect``; ``text=True`` marks the message text itself, ``template=True`` a stored template
  whose text the gateway cannot see;
- ``callback_url``: where the vendor posts receipts; refused unless the route allows it, and then
  only the gateway's own callback route (``server.public_url`` + a webhook route's path);
- ``control``: channel, schedule, validity, price caps, sender pools, risk checks, groups:
  refused unless the route's ``allow_fields`` names it; a ``channel=True`` field passes when its
  value is in the route's ``channels``; ``safe`` values are the vendor's default and need nothing;
- ``harmless``: formatting and the client's own references; let through.

Names are matched the way vendor stacks bind them: case-folded, trimmed, cut at ``[``, ``]`` or
``.`` (forms), so ``groupids``, `` GroupIds`` or ``GroupIds[]`` are all ``GroupIds``. A message
field (recipient, sender, content) or a harmless one must be written exactly as declared; a control
or callback field written otherwise is refused as not allowed, or, when the route allows it, as
ambiguous (400). JSON tables declare RFC 6901 pointers (``*`` = every array element); keys are
matched at every level the vendor reads, and a leaf's value is not looked into.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as _default
from typing import Final, Literal
from urllib.parse import urlsplit

from gateway.core.errors import GatewayError, Reason, bad_request, refuse
from gateway.core.events import Detail
from gateway.core.values import Control
from gateway.messages.forms import check_name, check_text, field_base, json_key_fold, query_names

__all__ = [
    "CHANNEL",
    "ROLES",
    "Control",
    "Field",
    "FieldPolicy",
    "FieldRole",
    "FieldTable",
    "FormRead",
    "JsonRead",
    "shown_name",
    "unknown_field",
]

FieldRole = Literal["recipient", "sender", "content", "callback_url", "control", "harmless"]
ROLES: Final[tuple[str, ...]] = ("recipient", "sender", "content", "callback_url", "control", "harmless")
#: Roles a route's policy decides on; the others are let through (after the reader's checks).
POLICED: Final = frozenset({"control", "callback_url"})
#: Kind of a :class:`Control` that names a channel (its value is checked against ``channels``).
CHANNEL: Final = "channel"
_MESSAGE_ROLES: Final = frozenset({"recipient", "sender", "content"})
#: Longest field name quoted in an audit detail; longer ones are cut.
_DETAIL_MAX: Final = 64
_UNPRINTABLE: Final = re.compile(r"[^\x21-\x7e]")
_INDEX: Final = re.compile(r"0|[1-9][0-9]*")
_DIGIT: Final = re.compile(r"[0-9]")
#: A name with this many digits or more may be a phone number: its digits are not shown.
_NUMBER_DIGITS: Final = 5


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a vendor request. ``name`` is the form field (or top-level JSON key), or an
    RFC 6901 pointer starting with ``/`` for nested JSON fields."""

    name: str
    role: FieldRole
    #: May be given more than once (a form field repeated, e.g. Twilio ``MediaUrl``).
    repeat: bool = False
    #: content: the message text (logged under ``logging.body``, the one ``detect`` was written for).
    text: bool = False
    #: content: names stored content (a template, a content SID) the gateway cannot read.
    template: bool = False
    #: control: the value names a channel; allowed when it is in the route's ``channels``.
    channel: bool = False
    #: control: values (case-folded) that are the vendor's default and need no allowance.
    safe: frozenset[str] = frozenset()
    #: What the field costs or where it makes the vendor send data (for the tables of docs/vendors.md).
    note: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"field {self.name!r}: unknown role {self.role!r}")


def shown_name(name: str) -> str:
    """A field name as the audit detail may show it: printable ASCII, cut, and with its digits
    hidden when it holds enough of them to be a phone number (a client may put anything there)."""
    shown = _UNPRINTABLE.sub("?", name)[:_DETAIL_MAX]
    if sum(ch.isdigit() for ch in shown) >= _NUMBER_DIGITS:
        shown = _DIGIT.sub("#", shown)
    return shown


def unknown_field(name: str, where: str = "body") -> GatewayError:
    """400 ``unknown_field``: the (sanitised, cut) name goes to the audit detail, never a value."""
    shown = shown_name(name)
    return refuse(
        Reason.UNKNOWN_FIELD,
        f"the request holds a field this route's vendor API does not declare (in the {where})",
        detail=f"{where}:{shown}",
    )


def _segments(pointer: str) -> tuple[str, ...]:
    if not pointer.startswith("/"):
        return (pointer,)
    return tuple(s.replace("~1", "/").replace("~0", "~") for s in pointer[1:].split("/"))


def _display(name: str) -> str:
    return name[1:] if name.startswith("/") else name


@dataclass(slots=True)
class _Node:
    leaf: Field | None = None
    #: folded key -> (exact key, child)
    keys: dict[str, tuple[str, _Node]] = _default(default_factory=dict)
    items: _Node | None = None


@dataclass(frozen=True, slots=True)
class FormRead:
    """A form body read against its table: values of every declared field by declared name."""

    values: dict[str, list[str]]
    controls: tuple[Control, ...]
    #: Content that is not the message text, in order (template ids, variables, media).
    secrets: tuple[str, ...]
    templated: bool


@dataclass(frozen=True, slots=True)
class JsonRead:
    controls: tuple[Control, ...]
    #: Content that is not the message text, in document order (objects as canonical JSON).
    secrets: tuple[str, ...]
    templated: bool


class FieldTable:
    """Every field one reader lets through, compiled once when the provider module loads."""

    __slots__ = (
        "_by_base",
        "_exact",
        "_query",
        "_root",
        "control_names",
        "fields",
        "message_names",
        "query_fields",
    )

    def __init__(self, fields: Iterable[Field], *, query: Iterable[Field] = ()) -> None:
        self.fields: tuple[Field, ...] = tuple(fields)
        self.query_fields: tuple[Field, ...] = tuple(query)
        self._exact: dict[str, Field] = {}
        self._by_base: dict[str, list[Field]] = {}
        self._root = _Node()
        for f in self.fields:
            if f.name in self._exact:
                raise ValueError(f"field {f.name!r} is declared twice")
            segments = _segments(f.name)
            if len(segments) == 1:
                self._exact[segments[0]] = f
                self._by_base.setdefault(field_base(segments[0]), []).append(f)
            node = self._root
            for seg in segments:
                if seg == "*" or (_INDEX.fullmatch(seg) and len(segments) > 1):  # ``/a/0/b`` is an element
                    node.items = node.items or _Node()
                    node = node.items
                else:
                    folded = json_key_fold(seg)
                    if folded not in node.keys:
                        node.keys[folded] = (seg, _Node())
                    node = node.keys[folded][1]
            node.leaf = f
        self._query = {f.name: f for f in self.query_fields}
        #: Names a route's ``allow_fields`` may hold (as written in the tables of docs/vendors.md).
        self.control_names: frozenset[str] = frozenset(
            _display(f.name) for f in (*self.fields, *self.query_fields) if f.role in POLICED
        )
        #: Case-folded top-level names of message fields: refused in a query, scrubbed from logged URLs.
        self.message_names: frozenset[str] = frozenset(
            json_key_fold(_segments(f.name)[0]) for f in self.fields if f.role in _MESSAGE_ROLES
        )

    def pointers(self, role: str, *, text: bool | None = None) -> tuple[str, ...]:
        """Pointers of the fields with a role (JSON readers take their paths from here)."""
        return tuple(
            f.name if f.name.startswith("/") else "/" + f.name
            for f in self.fields
            if f.role == role and (text is None or f.text == text)
        )

    # forms -----------------------------------------------------------------

    def read_form(self, pairs: Sequence[tuple[str, str]]) -> FormRead:
        """Values of every declared field; unknown names refused, misspellings handled by role."""
        values: dict[str, list[str]] = {f.name: [] for f in self._exact.values()}
        controls: list[Control] = []
        secrets: list[str] = []
        templated = repeated = False
        for name, value in pairs:
            f = self._exact.get(name)
            exact = f is not None
            if f is None:
                near = self._by_base.get(field_base(check_name(name)), ())
                if len(near) != 1:
                    raise unknown_field(name)
                f = near[0]
                if f.role not in POLICED:
                    raise bad_request(
                        f"a {f.role} field is written in a form the vendor could read differently",
                        detail=Detail.FIELD.of(shown_name(f.name)),
                    )
            seen = values[f.name]
            repeated = repeated or bool(seen)
            seen.append(value)
            if f.role in POLICED:
                controls.extend(_controls(f, value, exact))
            elif f.role == "content":
                templated = templated or (f.template and bool(value))
                if not f.text and value:
                    secrets.append(value)
        for f in self._exact.values() if repeated else ():
            if len(values[f.name]) > 1 and not f.repeat:
                raise bad_request(
                    f"the {f.role} field appears more than once", detail=Detail.FIELD.of(f.name)
                )
        return FormRead(values, tuple(controls), tuple(secrets), templated)

    # JSON ------------------------------------------------------------------

    def read_json(self, doc: object) -> JsonRead:
        """Walk every object key the table reaches; unknown keys refused, policed ones recorded.

        Recursive: ``read_json`` in ``forms.py`` refuses documents nested deeper than 32 levels."""
        out = _JsonWalk()
        out.walk(doc, self._root, "")
        return JsonRead(tuple(out.controls), tuple(out.secrets), out.templated)

    # query -----------------------------------------------------------------

    def check_query(self, raw_query: str, consumed: frozenset[str] = frozenset()) -> tuple[Control, ...]:
        """A client's query: only parameters the vendor API defines there, each written exactly.

        ``consumed`` (case-folded) are credential parameters the gateway reads and removes.
        """
        controls: list[Control] = []
        if not raw_query:
            return ()
        for name in query_names(raw_query):
            base = field_base(check_name(name))
            if base in consumed:
                continue
            f = self._query.get(name)
            if f is None:
                if base in self.message_names:
                    raise bad_request(
                        "message fields belong in the body, not the query string",
                        detail=Detail.QUERY.of(base),
                    )
                raise unknown_field(name, "query")
            if f.role in POLICED:
                controls.append(Control(f.name, f.role, "", True))
        return tuple(controls)


class _JsonWalk:
    __slots__ = ("controls", "secrets", "templated")

    def __init__(self) -> None:
        self.controls: list[Control] = []
        self.secrets: list[str] = []
        self.templated = False

    def walk(self, value: object, node: _Node, path: str) -> None:
        if isinstance(value, list):
            if node.items is not None:
                for item in value:
                    self.walk(item, node.items, f"{path}/*")
            elif node.keys:  # an object was expected: a lenient vendor may read the list's members
                raise bad_request("the JSON body does not have the expected structure")
            return
        if not isinstance(value, dict):
            return
        if not node.keys:
            if node.items is not None:  # a list was expected
                raise bad_request("the JSON body does not have the expected structure")
            return
        for key, child_value in value.items():
            hit = node.keys.get(json_key_fold(key))
            if hit is None:
                raise unknown_field(f"{path}/{key}"[1:])
            exact_key, child = hit
            f = child.leaf
            if f is not None:
                self.leaf(f, child_value, key == exact_key)
            if child.keys or child.items is not None:
                self.walk(child_value, child, f"{path}/{exact_key}")

    def leaf(self, f: Field, value: object, exact: bool) -> None:
        if not exact and f.role not in POLICED:
            raise bad_request(
                f"a {f.role} field is written in a form the vendor could read differently",
                detail=Detail.FIELD.of(_display(f.name)[:_DETAIL_MAX]),
            )
        if value is None:
            return
        if f.role in POLICED:
            self.controls.extend(_controls(f, _json_text(value), exact))
        elif f.role == "content" and value != "":
            self.templated = self.templated or f.template
            if not f.text:
                self.secrets.extend(_content_texts(value))


def _json_text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _content_texts(value: object) -> list[str]:
    """Content values for the redactor: strings as they are (each element of a list of strings)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [check_text(v) for v in value if v]
    return [check_text(_json_text(value))]


def _controls(f: Field, value: str, exact: bool) -> list[Control]:
    if f.role == "control" and exact and value.strip().casefold() in f.safe:
        return []
    kind = CHANNEL if f.channel else f.role
    return [Control(_display(f.name), kind, value, exact)]


# --------------------------------------------------------------------------- route policy


@dataclass(frozen=True, slots=True)
class FieldPolicy:
    """What one route lets through among the policed fields; compiled from its config once.

    ``allow``: control and callback field names (as declared) the route allows. ``channels``:
    case-folded channel names. ``callback_prefix``: ``server.public_url`` without its trailing
    slash; ``callback_paths``: compiled paths of the config's webhook routes, the only places a
    callback URL may point at.
    """

    allow: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset({"sms"})
    callback_prefix: str = ""
    callback_paths: tuple[re.Pattern[str], ...] = ()

    def check(self, controls: Iterable[Control]) -> None:
        """Raise 403 ``field_not_allowed`` (or 400 when an allowed field is misspelled)."""
        for c in controls:
            if c.kind == CHANNEL:
                allowed = (c.exact and c.value in self.channels) or c.name in self.allow
            else:
                allowed = c.name in self.allow
            if not allowed:
                what = "channel" if c.kind == CHANNEL else "field"
                raise refuse(
                    Reason.FIELD_NOT_ALLOWED,
                    f"this route does not allow the {what} the request sets",
                    detail=f"{c.kind}:{c.name[:_DETAIL_MAX]}",
                )
            if not c.exact:
                raise bad_request(
                    "a field is written in a form the vendor could read differently",
                    detail=Detail.FIELD.of(c.name[:_DETAIL_MAX]),
                )
            if c.kind == "callback_url" and not self.own_callback(c.value):
                raise refuse(
                    Reason.FIELD_NOT_ALLOWED,
                    "a callback URL may only name this gateway's own callback route",
                    detail=Detail.CALLBACK_URL.of(c.name[:_DETAIL_MAX]),
                )

    def own_callback(self, url: str) -> bool:
        """True when ``url`` is ``public_url`` + the path of one of the config's webhook routes."""
        if not self.callback_prefix or not url.startswith(self.callback_prefix + "/"):
            return False
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        if parts.query or parts.fragment or "@" in parts.netloc or "\\" in url:
            return False
        path = url[len(self.callback_prefix) :]
        return any(p.match(path) for p in self.callback_paths)
