"""Generic adapter: read any vendor's send request from a few configured field paths.

``[upstream.generic]`` names where the recipients, senders and texts are: a top-level field name
(form or JSON) or an RFC 6901 JSON pointer in which ``*`` means every array element. Every value
a path reaches is checked and logged, so a request with several messages is checked whole; a
pointer that names one array element (``/messages/0/sender``) while the array holds more is
refused, since the vendor would send the others unchecked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from pydantic import field_validator, model_validator

from gateway.config.model import KeyProblem, Model
from gateway.core.errors import bad_request
from gateway.messages.base import (
    E164,
    AccountPath,
    Message,
    NumberRule,
    Provider,
    ProviderSettings,
    UpstreamTarget,
)
from gateway.messages.fields import Field, FieldTable
from gateway.messages.forms import (
    Role,
    body_kind,
    check_text,
    json_key_fold,
    load_json_answer,
    read_form,
    read_json,
)
from gateway.messages.slots import BASIC

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.core.routing import PathTemplate

__all__ = [
    "PROVIDER",
    "GenericAdapter",
    "GenericOptions",
    "JsonFieldsReader",
    "compile_spec_path",
    "json_strings",
    "message_id_at",
    "resolve",
    "split_recipients",
    "validate_spec_path",
]


# --------------------------------------------------------------------------- field paths


class _Star:
    __slots__ = ()

    def __repr__(self) -> str:
        return "*"


STAR: Final = _Star()


@dataclass(frozen=True, slots=True)
class _Key:
    """One pointer segment: an object key, which also addresses an array when it is an index."""

    key: str
    folded: str  # json_key_fold(key)
    index: int | None


Segment = _Key | _Star
_INDEX: Final = re.compile(r"0|[1-9][0-9]*")


def _unescape(segment: str, position: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "~":
            nxt = segment[i + 1 : i + 2]
            if nxt not in ("0", "1"):
                shown = "~" + nxt if nxt else "~ at the end"
                raise ValueError(
                    f"invalid escape {shown!r} in segment {position} of the JSON pointer "
                    "(write ~0 for '~' and ~1 for '/')"
                )
            out.append("~" if nxt == "0" else "/")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def compile_spec_path(spec: str) -> tuple[Segment, ...]:
    """Compile a field spec once: "/a/*/b" is an RFC 6901 pointer with "*" for every array element."""
    if not spec:
        raise ValueError("the field spec is empty (give a field name or a JSON pointer starting with '/')")
    if not spec.startswith("/"):
        return (_Key(spec, json_key_fold(spec), None),)
    segments: list[Segment] = []
    for position, raw in enumerate(spec[1:].split("/"), start=1):
        if raw == "*":
            segments.append(STAR)
            continue
        key = _unescape(raw, position)
        index = int(key) if _INDEX.fullmatch(key) else None
        segments.append(_Key(key, json_key_fold(key), index))
    return tuple(segments)


def validate_spec_path(spec: str) -> None:
    """Raise ValueError saying what is wrong with a field spec, for config checking."""
    compile_spec_path(spec)


def _form_name(segments: tuple[Segment, ...]) -> str | None:
    """The form field a spec names, or None when it needs JSON structure."""
    if len(segments) == 1 and isinstance(segments[0], _Key):
        return segments[0].key
    return None


def resolve(doc: object, segments: tuple[Segment, ...], strict: bool) -> tuple[list[object], int]:
    """Every value the path reaches, and how many `*` branches missed it.

    Strict mode refuses shapes the path does not fit, keys present only in another letter case
    (or with stray spaces or control characters), and an index into an array of more than one
    element: the others would reach the vendor unchecked.
    """
    found: list[object] = []
    missing = 0
    # Explicit stack, in reverse so values come out in document order.
    stack: list[tuple[object, int]] = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if depth == len(segments):
            found.append(node)
            continue
        seg = segments[depth]
        if isinstance(seg, _Star):
            if isinstance(node, list):
                stack.extend((item, depth + 1) for item in reversed(node))
            elif strict:
                raise bad_request("the JSON body does not have the expected structure")
            continue
        if isinstance(node, dict):
            if seg.key in node:
                stack.append((node[seg.key], depth + 1))
                continue
            if strict and any(json_key_fold(k) == seg.folded for k in node):
                raise bad_request("a configured JSON field is present under another letter case")
        elif isinstance(node, list):
            if strict and seg.index is not None and len(node) > 1:
                raise bad_request("the request holds more elements than the configured JSON pointer names")
            if seg.index is not None and seg.index < len(node):
                stack.append((node[seg.index], depth + 1))
                continue
            if strict and seg.index is None:
                raise bad_request("the JSON body does not have the expected structure")
        elif strict:
            raise bad_request("the JSON body does not have the expected structure")
        missing += 1
    return found, missing


def split_recipients(values: Iterable[str], separator: str | None) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        parts = value.split(separator) if separator is not None else [value]
        for part in parts:
            part = part.strip() if separator is not None else part
            if not part.strip():
                raise bad_request("a recipient is empty")
            out.append(part)
    if not out:
        raise bad_request("the request has no recipient")
    return tuple(out)


def json_recipients(doc: object, segments: tuple[Segment, ...], numbers_as_ints: bool = False) -> list[str]:
    """Every recipient text a path reaches (a list counts element by element); anything but a
    string (or, where the vendor takes them, a JSON integer) is refused."""
    found, missing = resolve(doc, segments, strict=True)
    if found and missing:
        raise bad_request("some recipient entries lack the recipient field")
    texts: list[str] = []
    for value in found:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                texts.append(check_text(item))
            elif numbers_as_ints and isinstance(item, int) and not isinstance(item, bool) and item > 0:
                texts.append(str(item))
            else:
                raise bad_request("a recipient is not a JSON string")
    return texts


def json_strings(
    doc: object, segments: tuple[Segment, ...] | None, role: Role
) -> tuple[tuple[str, ...], bool]:
    """Every string the path reaches, and whether some branch has none."""
    if segments is None:
        return (), True
    found, missing = resolve(doc, segments, strict=True)
    out: list[str] = []
    for value in found:
        if not isinstance(value, str):
            raise bad_request(f"the {role} is not a JSON string")
        out.append(check_text(value))
    return tuple(out), bool(missing) or not found


def json_texts(doc: object, segments: tuple[Segment, ...]) -> tuple[str, ...]:
    """Secret-bearing values of any JSON type, as text (objects in canonical JSON), for the redactor."""
    found, _ = resolve(doc, segments, strict=False)
    out: list[str] = []
    for value in found:
        if isinstance(value, str):
            out.append(check_text(value))
        elif value is not None:
            out.append(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    return tuple(out)


def message_id_at(segments: tuple[Segment, ...], status: int, body: bytes) -> str | None:
    """The first string (or number) a path reaches in a 2xx JSON answer; never raises."""
    doc = load_json_answer(status, body)
    if doc is None:
        return None
    found, _ = resolve(doc, segments, strict=False)  # lenient: never fails
    for value in found:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                return item
            if isinstance(item, int | float) and not isinstance(item, bool):
                return str(item)
    return None


class JsonFieldsReader:
    """A vendor's JSON send request read at fixed pointers: how the vendor adapters use this module.

    ``refused`` pointers name fields the gateway cannot check (a group or topic id whose members
    are not in the request): a request holding one is refused with the reason given. ``check``
    sees the parsed document for vendor rules the pointers cannot say.

    ``fields``: the vendor's whole request, declared (``gateway/messages/fields.py``). Any other
    key is refused; recipients, senders and texts default to the table's pointers of those roles,
    and every other content field is logged like a body.
    """

    __slots__ = (
        "_bodies",
        "_check",
        "_ints",
        "_recipients",
        "_refused",
        "_secrets",
        "_senders",
        "_separator",
        "fields",
        "numbers",
        "table",
    )

    def __init__(
        self,
        *,
        fields: FieldTable | None = None,
        recipients: Sequence[str] = (),
        senders: Sequence[str] = (),
        bodies: Sequence[str] = (),
        secrets: Sequence[str] = (),
        separator: str | None = None,
        numbers: NumberRule = E164,
        numbers_as_ints: bool = False,
        refused: Sequence[tuple[str, str]] = (),
        check: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        if fields is not None:
            recipients = recipients or fields.pointers("recipient")
            senders = senders or fields.pointers("sender")
            bodies = bodies or fields.pointers("content", text=True)
        if not recipients:
            raise ValueError("a JSON reader needs at least one recipient pointer")
        self.table = fields
        self._recipients = tuple(compile_spec_path(p) for p in recipients)
        self._senders = tuple(compile_spec_path(p) for p in senders)
        self._bodies = tuple(compile_spec_path(p) for p in bodies)
        self._secrets = tuple(compile_spec_path(p) for p in secrets)
        self._refused = tuple((compile_spec_path(p), why) for p, why in refused)
        self._separator = separator
        self._ints = numbers_as_ints
        self._check = check
        self.numbers = numbers
        self.fields = frozenset(
            seg.folded
            for spec in (*self._recipients, *self._senders, *self._bodies, *self._secrets)
            if isinstance(seg := spec[0], _Key)
        ) | (fields.message_names if fields is not None else frozenset())

    def parse(self, body: bytes, content_type: str) -> Message:
        body_kind(content_type, "json")
        doc = read_json(body)
        if not isinstance(doc, dict):
            raise bad_request("the JSON body must be an object")
        for segments, why in self._refused:
            if resolve(doc, segments, strict=False)[0]:
                raise bad_request(why)
        if self._check is not None:
            self._check(doc)
        read = self.table.read_json(doc) if self.table is not None else None
        texts = [t for spec in self._recipients for t in json_recipients(doc, spec, self._ints)]
        senders: list[str] = []
        default_sender = False
        for spec in self._senders:
            found, missing = json_strings(doc, spec, "sender")
            senders.extend(found)
            default_sender = default_sender or bool(found and missing)
        bodies = [t for spec in self._bodies for t in json_strings(doc, spec, "body")[0]]
        secrets = [t for spec in self._secrets for t in json_texts(doc, spec)]
        if read is not None:
            secrets.extend(read.secrets)
        return Message(
            recipients=split_recipients(texts, self._separator),
            senders=tuple(senders),
            bodies=tuple(bodies),
            default_sender=default_sender or not senders,
            secrets=tuple(secrets),
            controls=read.controls if read is not None else (),
            templated=read.templated if read is not None else False,
        )


# --------------------------------------------------------------------------- options

_FORMATS = ("auto", "json", "form")


class GenericOptions(Model):
    """``[upstream.generic]``: where a vendor's request keeps recipients, senders and texts, and
    its answer the message id. Checked when the config loads, so mistakes surface there."""

    format: Literal["auto", "json", "form"] = "auto"
    recipient: str
    sender: str | None = None
    body: str | None = None
    recipient_separator: str | None = None
    message_id: str | None = None
    #: Every other field the vendor's request may hold, by name or JSON pointer, with its role
    #: (closed by default: a field not named here or above is 400 unknown_field).
    fields: dict[str, Literal["content", "template", "callback_url", "control", "harmless"]] = {}
    #: Query parameters the vendor's API defines (let through as they are); any other is refused.
    query: tuple[str, ...] = ()

    @field_validator("recipient", "sender", "body", "message_id")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None:
            compile_spec_path(value)
        return value

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        for spec in value:
            compile_spec_path(spec)
        return value

    @field_validator("recipient_separator")
    @classmethod
    def _separator(cls, value: str | None) -> str | None:
        if value == "":
            raise ValueError("must not be empty (leave it out for one number per field)")
        return value

    @model_validator(mode="after")
    def _form_fields(self) -> GenericOptions:
        if self.format == "form":
            for name in ("recipient", "sender", "body"):
                spec = getattr(self, name)
                if spec is not None and _form_name(compile_spec_path(spec)) is None:
                    raise KeyProblem(name, f"a form body has only top-level fields, not {spec!r}")
        try:
            generic_table(self)
        except ValueError as exc:
            raise KeyProblem("fields", str(exc)) from None
        return self


def generic_table(options: GenericOptions) -> FieldTable:
    """The configured fields as a table: recipient, sender and body, plus ``fields``."""
    declared = [Field(options.recipient, "recipient", repeat=True)]
    if options.sender is not None:
        declared.append(Field(options.sender, "sender"))
    if options.body is not None:
        declared.append(Field(options.body, "content", text=True))
    for spec, role in options.fields.items():
        if role == "template":
            declared.append(Field(spec, "content", template=True))
        else:
            declared.append(Field(spec, role))
    return FieldTable(declared, query=[Field(name, "harmless") for name in options.query])


# --------------------------------------------------------------------------- adapter


class GenericReader:
    """Reads recipients, senders and texts from configured paths; refuses anything it cannot read exactly."""

    __slots__ = ("_body", "_format", "_recipient", "_sender", "_separator", "_specs", "fields", "table")

    numbers: NumberRule = E164

    def __init__(self, options: GenericOptions) -> None:
        self.table = generic_table(options)
        self._specs = (options.recipient, options.sender, options.body)
        self._format = options.format
        self._separator = options.recipient_separator
        self._recipient = compile_spec_path(options.recipient)
        self._sender = compile_spec_path(options.sender) if options.sender is not None else None
        self._body = compile_spec_path(options.body) if options.body is not None else None
        self.fields = frozenset(
            name.casefold()
            for segments in (self._recipient, self._sender, self._body)
            if segments is not None and (name := _form_name(segments)) is not None
        )

    def parse(self, body: bytes, content_type: str) -> Message:
        if body_kind(content_type, self._format) == "form":
            return self._parse_form(read_form(body, content_type))
        return self._parse_json(read_json(body))

    # JSON -----------------------------------------------------------------

    def _parse_json(self, doc: object) -> Message:
        read = self.table.read_json(doc)
        texts = json_recipients(doc, self._recipient)
        senders, no_sender = json_strings(doc, self._sender, "sender")
        bodies, _ = json_strings(doc, self._body, "body")
        return Message(
            recipients=split_recipients(texts, self._separator),
            senders=senders,
            bodies=bodies,
            default_sender=no_sender,
            secrets=read.secrets,
            controls=read.controls,
            templated=read.templated,
        )

    # form -----------------------------------------------------------------

    def _parse_form(self, pairs: list[tuple[str, str]]) -> Message:
        for segments in (self._recipient, self._sender, self._body):
            if segments is not None:
                self._form_field(segments)
        read = self.table.read_form(pairs)
        fields = read.values
        recipient, sender, text = self._specs
        senders = tuple(fields[sender]) if sender is not None else ()
        return Message(
            recipients=split_recipients(fields[recipient], self._separator),
            senders=senders,
            bodies=tuple(fields[text]) if text is not None else (),
            default_sender=not senders,
            secrets=read.secrets,
            controls=read.controls,
            templated=read.templated,
        )

    @staticmethod
    def _form_field(segments: tuple[Segment, ...]) -> str:
        name = _form_name(segments)
        if name is None:  # format "auto" with a nested pointer, and the client sent a form
            raise bad_request("this route's fields cannot be read from a form body")
        return name


class GenericAdapter:
    __slots__ = ("_accounts", "_message_id", "_reader", "options")

    name: str = "generic"
    slots = (BASIC,)

    def __init__(self, options: GenericOptions, account_id: str = "") -> None:
        self.options = options
        self._reader = GenericReader(options)
        self._message_id = compile_spec_path(options.message_id) if options.message_id is not None else None
        self._accounts = AccountPath(("account",), account_id)

    def reader(self, route: RouteConfig | None = None) -> GenericReader:
        return self._reader

    def parse(self, body: bytes, content_type: str) -> Message:
        return self._reader.parse(body, content_type)

    def target(self, template: PathTemplate, params: Mapping[str, str]) -> UpstreamTarget:
        return self._accounts.target(template, params)

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        if self._message_id is None:
            return None
        return message_id_at(self._message_id, status, body)


def _build(settings: ProviderSettings) -> GenericAdapter:
    assert isinstance(settings.options, GenericOptions)
    return GenericAdapter(settings.options, settings.account_id)


PROVIDER: Final = Provider("generic", _build, options=GenericOptions, options_required=True)
