"""OpenTelemetry tracing (``[tracing]``, the optional ``otel`` extra): one span per request.

Off by default, and then free: the stage below is not in the chain and OpenTelemetry is never
imported. On, the first front stage starts a span (continuing the caller's W3C ``traceparent``
only when the TCP peer is in ``tracing.trust_traceparent_from``; anyone else starts a new trace,
so a client cannot attach its requests to another trace), the forward stage passes the span's
``traceparent`` to the vendor, and the response phase ends it with the outcome and one event per
stage that ran (``passed``, or ``refused`` with the reason code). Spans are exported over OTLP/HTTP
(protobuf) by the SDK's batch processor, on its own thread, off the request path.

A span holds what an access record holds and less: method, route name and path template, client
id, status, reason code, decision. Never a number, a body, a credential, a query or a raw path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.core.addresses import IpAllowlist
from gateway.core.exchange import Exchange, SyncStage

if TYPE_CHECKING:
    from gateway.config.schema import TracingConfig

__all__ = ["TraceRequest", "Tracing"]


class Tracing:
    """The tracer and its exporter: made at start when ``[tracing] enabled``, shut down at close
    (which sends what is still queued)."""

    def __init__(self, cfg: TracingConfig) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = TracerProvider(
            resource=Resource.create({"service.name": cfg.service_name}),
            sampler=ParentBased(TraceIdRatioBased(cfg.sample_ratio)),
        )
        exporter = OTLPSpanExporter(endpoint=cfg.endpoint, timeout=cfg.timeout_s)
        self._provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=int(cfg.export_interval_s * 1000))
        )
        self.tracer = self._provider.get_tracer("smsgw")
        self.propagator = TraceContextTextMapPropagator()
        self.trusted = IpAllowlist(cfg.trust_traceparent_from)

    def flush(self) -> None:
        self._provider.force_flush()

    async def close(self) -> None:
        self._provider.shutdown()


class TraceRequest(SyncStage):
    """Front stage, first: starts the request's span; its response phase ends it."""

    name = "trace"
    __slots__ = ("_tracing",)

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    def run_sync(self, ex: Exchange) -> None:
        tracing = self._tracing
        parent = None
        peer = ex.peer
        if peer is not None and tracing.trusted and tracing.trusted.allows(peer):  # empty: nobody
            carrier = {k: v for k in ("traceparent", "tracestate") if (v := ex.request.headers.get(k))}
            if carrier:
                parent = tracing.propagator.extract(carrier)
        span = tracing.tracer.start_span(
            f"{ex.method} smsgw",
            context=parent,
            kind=_server_kind(),
            attributes={"http.request.method": ex.method},
        )
        ex.trace = span

    async def after(self, ex: Exchange, response: web.StreamResponse) -> None:
        span = ex.trace
        if span is None:
            return
        route = ex.route
        attributes: dict[str, Any] = {
            "http.response.status_code": response.status,
            "smsgw.decision": "deny" if ex.reason else "allow",
        }
        if route is not None:
            attributes["smsgw.route"] = route.name
            attributes["smsgw.route.kind"] = route.kind
            attributes["http.route"] = route.template.text
            span.update_name(f"{ex.method} {route.template.text}")
        if ex.client is not None:
            attributes["smsgw.client"] = ex.client.id
        if ex.reason:
            attributes["smsgw.reason"] = ex.reason
        span.set_attributes(attributes)
        names = list(ex.policy.front.names) + (list(route.chain.names) if route is not None else [])
        for stage in names[1:]:
            if stage == ex.refused_by:
                span.add_event("stage", {"stage": stage, "verdict": "refused", "reason": ex.reason or ""})
                break
            if stage in ("audit", "forward") and ex.reason and ex.refused_by is None:
                break
            span.add_event("stage", {"stage": stage, "verdict": "passed"})
        if ex.reason:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, ex.reason))
        span.end()


def traceparent(ex: Exchange) -> dict[str, str]:
    """The headers that carry the request's span to the vendor (empty when not traced)."""
    span = ex.trace
    if span is None:
        return {}
    from opentelemetry.trace import set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=set_span_in_context(span))
    return carrier


def _server_kind() -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind.SERVER
