"""One request on its way through the pipeline: what the stages learned, and what the logs show.

Stages fill the exchange in as they pass. Raw message parts (body bytes, recipients, the parsed
message) stay on the exchange for later stages and never reach a log; the ``log_*`` fields hold
only the redacted forms, and the records below are built from those alone.

The exchange is typed by core alone: the values it holds are in gateway/core/values.py, and the
route and policy it points at by the protocols below, which say what is read of them. The stage
contract and :class:`Chain` are here too, since a route holds its chain and every stage takes the
exchange; gateway/core/pipeline.py exports them with the loop's helpers and the factory contract.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import netaddr
from aiohttp import web

from gateway.core.errors import GatewayError
from gateway.core.values import NO_COUNTRY, Client, Destination, Event, Message, Principal, Verified

if TYPE_CHECKING:
    from gateway.core.redaction import Redactor

__all__ = ["Chain", "Exchange", "Policy", "ResponsePhase", "Route", "Stage", "StageTimer", "SyncStage"]


class Route(Protocol):
    """The route a request matched (the policy's ``CompiledRoute``): what stages, logs and the
    server read of it."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def chain(self) -> Chain: ...


class Policy(Protocol):
    """The policy a request runs under (gateway/server/policy.py builds it): what the stages and
    the server read of it while the request is in flight."""

    @property
    def front(self) -> Chain: ...

    @property
    def clients(self) -> Mapping[str, Client]: ...

    @property
    def redactor(self) -> Redactor: ...

    @property
    def security_headers(self) -> Mapping[str, str]: ...

    @property
    def debug(self) -> bool: ...


@dataclass(slots=True, eq=False)
class Exchange:
    request: web.Request
    policy: Policy
    request_id: str
    started: float  # perf_counter at arrival
    method: str
    path: str  # scrubbed path and query, for logs only

    # where it comes from (client address stage)
    peer: netaddr.IPAddress | None = None
    address: netaddr.IPAddress | None = None
    ip: str = ""

    # routing
    route: Route | None = None
    params: Mapping[str, str] = field(default_factory=dict)

    # identity
    principal: Principal | None = None
    client: Client | None = None

    # the message (raw; never logged)
    body: bytes | None = None
    message: Message | None = None
    destinations: tuple[Destination, ...] = ()
    callback: Event | None = None  # a verified vendor callback (webhook routes)
    #: "send" or "check" once the OTP caps found this request to be one (their stage sets it).
    otp_kind: str | None = None
    #: The pumping guard's view of an OTP send or check (country, HMAC ids, approved): audited.
    conversion: dict[str, Any] | None = None
    #: Called by the forward stage with the vendor's status and decoded answer, before the
    #: outcome record is written (the pumping guard reads a check's verdict there).
    answer_hook: Callable[[Exchange, int, bytes | None], None] | None = None
    signature: Verified | None = None  # what the vendor's signature covers (webhook routes)

    # what the logs show (redacted)
    log_recipients: list[str] | None = None
    log_sender: str | list[str] | None = None
    log_body: dict[str, Any] | list[dict[str, Any]] | None = None
    #: Codes and other secret-bearing fields (Message.secrets), redacted like bodies.
    log_secrets: list[dict[str, Any] | None] | None = None
    recipient_count: int | None = None

    # outcome
    status: int | None = None
    reason: str | None = None
    detail: str | None = None
    upstream_ms: float | None = None
    vendor_message_id: str | None = None
    vendor_status: str | None = None  # a callback's delivery status (webhook routes)
    audited: bool = False  # a request record (allow or deny) has been written
    decision: str | None = None  # that record's decision: "allow" or "deny"
    #: Set when the forward stage starts: from then on the vendor may have the request.
    upstream_attempted: bool = False

    #: The stage that refused the request (the stage loop sets it), for tracing.
    refused_by: str | None = None
    #: The request's OpenTelemetry span when ``[tracing]`` is on (gateway/tracing/otel.py).
    trace: Any = None

    #: Headers stages add to the answer (RateLimit-*, ...), whatever the answer is.
    response_headers: dict[str, str] = field(default_factory=dict)
    #: What a stage took in ``run`` and settles in ``after`` (an idempotency claim, OTP slots),
    #: by stage name.
    held: dict[str, Any] = field(default_factory=dict)

    @property
    def client_id(self) -> str | None:
        return self.client.id if self.client is not None else None

    @property
    def route_name(self) -> str | None:
        return self.route.name if self.route is not None else None

    def audit_fields(self) -> dict[str, Any]:
        """The request's part of an audit record; the audit log adds ts, event, decision and chain."""
        fields = {
            "request_id": self.request_id,
            "client": self.client_id,
            "auth": self.principal.method if self.principal is not None else None,
            "key_id": self.principal.key_id if self.principal is not None else None,
            "route": self.route_name,
            "ip": self.ip,
            "method": self.method,
            "path": self.path,
            "recipients": self.log_recipients,
            "recipient_count": self.recipient_count,
            "countries": sorted({d.region or NO_COUNTRY for d in self.destinations})
            if self.destinations
            else None,
            "sender": self.log_sender,
            "body": self.log_body,
            "secrets": self.log_secrets,
        }
        if self.conversion is not None:
            fields["conversion"] = self.conversion
        if self.callback is not None:  # a verified vendor callback: what it reports
            fields["vendor_message_id"] = self.vendor_message_id
            fields["vendor_status"] = self.vendor_status
            fields["verified_fields"] = self.callback.verified_fields  # body, query or none
        return fields


# --------------------------------------------------------------------------- the stage contract


class Stage(Protocol):
    name: str

    async def run(self, ex: Exchange) -> web.StreamResponse | None: ...


class SyncStage:
    """A stage that never waits (pure CPU, or a plain blocking write such as the audit record's):
    :meth:`Chain.run` calls :meth:`run_sync` plainly, without a coroutine; ``run`` still works for
    callers that await (``smsgw explain``). tests/test_pipeline.py holds every request-path stage
    whose ``run`` never awaits to this."""

    __slots__ = ()
    name: str

    def run_sync(self, ex: Exchange) -> web.StreamResponse | None:
        raise NotImplementedError

    async def run(self, ex: Exchange) -> web.StreamResponse | None:
        return self.run_sync(ex)


@runtime_checkable
class ResponsePhase(Protocol):
    """A stage that also acts once the answer is known."""

    async def after(self, ex: Exchange, response: web.StreamResponse) -> None: ...


class StageTimer:
    """Per-stage call counts and total seconds since the last :meth:`drain`: the metrics service
    drains it (gateway/server/metrics.py), profiles print a snapshot. Two dict updates per stage."""

    __slots__ = ("calls", "seconds")

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def observe(self, stage: str, seconds: float) -> None:
        self.calls[stage] = self.calls.get(stage, 0) + 1
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {
            name: {"calls": self.calls[name], "seconds": round(self.seconds[name], 6)} for name in self.calls
        }

    def drain(self) -> tuple[dict[str, int], dict[str, float]]:
        """What was observed since the last drain, and start again from zero."""
        calls, seconds = self.calls, self.seconds
        self.calls, self.seconds = {}, {}
        return calls, seconds


class Chain:
    """An ordered, immutable list of stages; ``after`` hooks are found once, here."""

    __slots__ = ("_steps", "names", "stages")

    def __init__(self, stages: Iterable[Stage]) -> None:
        self.stages: tuple[tuple[Stage, bool], ...] = tuple(
            (stage, isinstance(stage, ResponsePhase)) for stage in stages
        )
        self.names: tuple[str, ...] = tuple(stage.name for stage, _ in self.stages)
        # (stage, its name, its run_sync or None, whether it has a response phase), found once.
        self._steps = tuple(
            (stage, stage.name, stage.run_sync if isinstance(stage, SyncStage) else None, has_after)
            for stage, has_after in self.stages
        )

    def __len__(self) -> int:
        return len(self.stages)

    async def run(self, ex: Exchange, timer: StageTimer, ran_after: list[Stage]) -> web.StreamResponse | None:
        """Run every stage in order until one answers; raises the first refusal.

        A stage's time runs from the end of the one before it (one clock read per stage); the
        timer's dicts are read after each stage, since a drain may replace them while one waits.
        """
        perf = time.perf_counter
        t0 = perf()
        for stage, name, run_sync, has_after in self._steps:
            if has_after:
                ran_after.append(stage)
            try:
                response = run_sync(ex) if run_sync is not None else await stage.run(ex)
            except GatewayError:
                ex.refused_by = name
                raise
            finally:
                t1 = perf()
                calls, seconds = timer.calls, timer.seconds
                calls[name] = calls.get(name, 0) + 1
                seconds[name] = seconds.get(name, 0.0) + (t1 - t0)
                t0 = t1
            if response is not None:
                return response
        return None
