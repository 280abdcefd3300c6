"""Generic adapter: read any vendor's send request from a few configured field paths.

``[upstream.generic]`` names where the recipients, senders and texts are: a top-level field name
(form or JSON) or an RFC 6901 JSON pointer in which ``*`` means every array element. Every value
a path reaches is checked and logged, so a request with several messages is checked whole; a
pointer that names one array element (``/messages/0/sender``) while the array holds more is
refused, since the vendor would send the others unchecked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    body_kind,
    read_form,
    read_json,
)
from gateway.messages.slots import BASIC
from gateway.vendors.generic.pointers import (
    Key,
    Segment,
    compile_spec_path,
    form_name,
    json_recipients,
    json_strings,
    json_texts,
    message_id_at,
    resolve,
    split_recipients,
    validate_spec_path,
)

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
            if isinstance(seg := spec[0], Key)
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
                if spec is not None and form_name(compile_spec_path(spec)) is None:
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
            if segments is not None and (name := form_name(segments)) is not None
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
        name = form_name(segments)
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
