"""The stage that reads the message the vendor will send, and records its redacted form."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from gateway.core.errors import bad_request
from gateway.core.exchange import Exchange, SyncStage
from gateway.core.pipeline import BuildContext
from gateway.core.redaction import Redactor
from gateway.messages.base import MessageReader, client_query_credentials
from gateway.messages.fields import Control, FieldPolicy
from gateway.messages.forms import check_name, field_base, query_names

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.config.schema import RouteConfig
    from gateway.messages.base import ProviderAdapter

__all__ = [
    "CheckFields",
    "MessagesBuild",
    "ReadMessage",
    "build_field_checks",
    "field_policy",
    "read_message",
]


class MessagesBuild(BuildContext, Protocol):
    """What the message stages need while a policy is compiled (server/policy.py's ``Build`` has
    it): the config (field policies) and the vendor adapter (its readers), and core's redactor."""

    @property
    def config(self) -> Config: ...

    @property
    def adapter(self) -> ProviderAdapter: ...


class ReadMessage(SyncStage):
    """Parse the body as the vendor will (400 ``bad_request`` when it could be read two ways).

    A message field in the query string is refused as well: some vendor stacks merge query and
    body parameters, and the gateway must check the value that is sent. A reader with a field
    table lets through only the query parameters its vendor API defines (400 ``unknown_field``);
    ``consumed`` are credential parameters the gateway itself reads and removes.
    """

    name = "message"
    __slots__ = ("_consumed", "_reader", "_redactor")

    def __init__(
        self, reader: MessageReader, redactor: Redactor, consumed: frozenset[str] = frozenset()
    ) -> None:
        self._reader = reader
        self._redactor = redactor
        self._consumed = consumed

    def run_sync(self, ex: Exchange) -> None:
        request = ex.request
        raw_query = request.raw_path.partition("?")[2]
        reader = self._reader
        assert ex.body is not None
        content_type = request.headers.get("Content-Type", "")
        parse_request = getattr(reader, "parse_request", None)
        query_controls: tuple[Control, ...] = ()
        if parse_request is not None:  # the vendor reads message fields from the query too
            message = parse_request(raw_query, ex.body, content_type)
        else:
            table = getattr(reader, "table", None)
            if table is not None:
                query_controls = table.check_query(raw_query, self._consumed)
            elif raw_query:
                fields = reader.fields
                for name in query_names(raw_query):
                    if field_base(check_name(name)) in fields:
                        raise bad_request("message fields belong in the body, not the query string")
            message = reader.parse(ex.body, content_type)
        if query_controls:
            message = replace(message, controls=(*message.controls, *query_controls))
        ex.message = message
        ex.recipient_count = len(message.recipients)
        redactor = self._redactor
        senders = list(dict.fromkeys(redactor.sender(s) for s in message.senders))
        ex.log_sender = senders[0] if len(senders) == 1 else (senders or None)
        bodies: list[Any] = [redactor.body(text) for text in message.bodies]
        ex.log_body = bodies[0] if len(bodies) == 1 else (bodies or None)
        if message.secrets:
            ex.log_secrets = [redactor.secret(text) for text in message.secrets]


class CheckFields(SyncStage):
    """403 ``field_not_allowed`` for a control field (channel, schedule, sender pool, price cap,
    group) or callback URL the route's policy does not allow; runs right after the message is read."""

    name = "fields"
    __slots__ = ("_policy",)

    def __init__(self, policy: FieldPolicy) -> None:
        self._policy = policy

    def run_sync(self, ex: Exchange) -> None:
        message = ex.message
        assert message is not None
        if message.controls:
            self._policy.check(message.controls)


def field_policy(route: RouteConfig, config: Config) -> FieldPolicy:
    """The route's ``allow_fields`` and ``channels``, and where a callback URL may point: the
    gateway's own webhook routes under ``server.public_url``."""
    from gateway.core.routing import PathTemplate

    hooks = tuple(PathTemplate.compile(r.path).pattern for r in config.routes if r.kind == "webhook")
    return FieldPolicy(
        allow=frozenset(name.lstrip("/") for name in route.allow_fields),
        channels=frozenset(route.channels),
        callback_prefix=config.settings.server.public_url.rstrip("/"),
        callback_paths=hooks,
    )


def build_field_checks(route: RouteConfig, b: MessagesBuild) -> CheckFields:
    return CheckFields(field_policy(route, b.config))


def read_message(route: RouteConfig, b: MessagesBuild) -> ReadMessage:
    return ReadMessage(b.adapter.reader(route), b.redactor, client_query_credentials(b.adapter))
