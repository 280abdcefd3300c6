"""OpenTelemetry tracing (``[tracing]``, gateway/tracing/otel.py): one span per request, exported over
OTLP/HTTP to a real receiver on loopback and decoded with the OpenTelemetry protobuf package; the
caller's W3C ``traceparent`` is continued only from trusted addresses, the vendor gets the
gateway's span, no number or body is in any attribute or event, and when off there is no stage."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import Gateway, GatewayFactory, Recorder, basic

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
CALLER = f"00-{TRACE_ID}-{PARENT}-01"
NUMBER = "+37255519876"
BODY = "tracing-body-marker-7c1e"


class Collector:
    """An OTLP/HTTP receiver: every exported span, decoded."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.raw = b""

    def app(self) -> web.Application:
        async def traces(request: web.Request) -> web.Response:
            body = await request.read()
            self.raw += body
            message = ExportTraceServiceRequest()
            message.ParseFromString(body)
            for resource in message.resource_spans:
                for scope in resource.scope_spans:
                    self.spans.extend(scope.spans)
            return web.Response(status=200, content_type="application/x-protobuf", body=b"")

        app = web.Application()
        app.router.add_post("/v1/traces", traces)
        return app


@pytest.fixture
async def collector() -> Any:
    c = Collector()
    runner = web.AppRunner(c.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    c.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/traces"  # type: ignore[attr-defined]
    yield c
    await runner.cleanup()


def attrs(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = value.string_value or value.int_value
    return out


async def traced(
    make_gateway: GatewayFactory, vendor_url: str, collector: Any, trusted: list[str]
) -> Gateway:
    settings = {
        "tracing": {"enabled": True, "endpoint": collector.url, "trust_traceparent_from": trusted},
    }
    return await make_gateway(vendor_url, settings=settings)


async def flushed(gw: Gateway, collector: Any, count: int) -> list[Any]:
    tracing = gw.running.services.tracing
    assert tracing is not None
    await asyncio.to_thread(tracing.flush)
    for _ in range(50):
        if len(collector.spans) >= count:
            break
        await asyncio.sleep(0.05)
    return collector.spans


async def test_a_trusted_callers_trace_continues_to_the_vendor(
    make_gateway: GatewayFactory, vendors: Any, collector: Any
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    gw = await traced(make_gateway, vendor.base_url, collector, ["127.0.0.0/8"])
    response = await gw.send({"To": NUMBER, "From": "MyBank", "Body": BODY}, headers={"traceparent": CALLER})
    assert response.status == 201
    (span,) = await flushed(gw, collector, 1)
    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == PARENT
    a = attrs(span)
    assert (a["smsgw.route"], a["smsgw.client"], a["http.response.status_code"]) == (
        "twilio-send",
        "billing",
        201,
    )
    assert a["http.route"] == "/2010-04-01/Accounts/{account}/Messages.json"
    stages = [(e.name, {kv.key: kv.value.string_value for kv in e.attributes}) for e in span.events]
    assert [s["stage"] for _, s in stages][:3] == ["https", "client_address", "body_size"]
    assert stages[-1][1] == {"stage": "forward", "verdict": "passed"}
    # the vendor got the gateway's span, in the caller's trace
    sent = recorder.seen[0].headers["traceparent"]
    assert sent == f"00-{TRACE_ID}-{span.span_id.hex()}-01"
    for secret in (NUMBER, NUMBER[1:], BODY):
        assert secret.encode() not in collector.raw


async def test_an_untrusted_caller_starts_a_new_trace_and_refusals_name_their_stage(
    make_gateway: GatewayFactory, vendors: Any, collector: Any
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    gw = await traced(make_gateway, vendor.base_url, collector, [])
    assert (await gw.send(headers={"traceparent": CALLER})).status == 201
    wrong = await gw.send(auth=basic("nobody", "wrong"), headers={"traceparent": CALLER})
    assert wrong.status == 401
    ok, refused = await flushed(gw, collector, 2)
    assert ok.trace_id.hex() != TRACE_ID and not ok.parent_span_id
    assert recorder.seen[0].headers["traceparent"].split("-")[1] == ok.trace_id.hex()
    assert attrs(refused)["smsgw.reason"] == "unauthenticated"
    last = refused.events[-1]
    assert {kv.key: kv.value.string_value for kv in last.attributes} == {
        "stage": "authenticate",
        "verdict": "refused",
        "reason": "unauthenticated",
    }
    assert refused.status.message == "unauthenticated"


async def test_off_by_default_no_stage_and_the_callers_header_untouched(
    make_gateway: GatewayFactory, vendors: Any
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    gw = await make_gateway(vendor.base_url)
    assert gw.running.services.tracing is None
    assert "trace" not in gw.running.gateway.policy.front.names
    assert (await gw.send(headers={"traceparent": CALLER})).status == 201
    assert recorder.seen[0].headers["traceparent"] == CALLER  # passed on as any other header, as before
