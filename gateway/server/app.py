"""The public application: an exchange per request, run through the policy's stage chains.

Which stages run, and in what order, is decided in ``gateway/server/policy.py`` (the front chain for
every request, then the matched route's chain); this module only runs them, turns a refusal into
the documented JSON error, adds the security headers every answer carries, and writes the access
record. None of that can change an answer the vendor already gave: a failing log write is
counted, not raised.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import netaddr
from aiohttp import web

from gateway.audit.log import AuditUnavailable, utc_now
from gateway.core.errors import GatewayError
from gateway.core.exchange import Exchange
from gateway.core.oplog import REQUEST_ID, new_request_id
from gateway.core.pipeline import Stage, describe_exception, internal_error, run_after
from gateway.identity.ip import parse_ip
from gateway.server.policy import Policy
from gateway.server.services import Services
from gateway.transport.connections import expect_handler

log = logging.getLogger("smsgw")

GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("smsgw.gateway")


def error_response(exc: GatewayError, request_id: str) -> web.Response:
    payload = {"error": {"code": exc.code, "message": exc.message, "request_id": request_id}}
    return web.json_response(payload, status=exc.status, headers=dict(exc.headers))


def peer_address(request: web.Request) -> netaddr.IPAddress | None:
    transport = request.transport
    peername = transport.get_extra_info("peername") if transport is not None else None
    if not isinstance(peername, tuple) or not peername:
        return None
    try:
        return parse_ip(peername[0])
    except (netaddr.AddrFormatError, ValueError):
        return None


class Gateway:
    """Holds the current policy (swapped whole on reload) and the services it uses."""

    def __init__(self, policy: Policy, services: Services) -> None:
        self.policy = policy
        self.services = services
        #: Set when a shutdown begins: answers then say ``Connection: close``, so no client sends
        #: another request on a connection the gateway is about to close.
        self.draining = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        policy = self.policy  # one policy for the whole request, even if a reload swaps it
        started = time.perf_counter()
        ex = Exchange(
            request, policy, new_request_id(), started, request.method, policy.redactor.path(request.raw_path)
        )
        REQUEST_ID.set(ex.request_id)  # this request's task only: the operational log reads it
        ex.peer = peer_address(request)
        if ex.peer is not None:
            ex.ip = str(ex.peer)
        ran_after: list[Stage] = []
        timer = self.services.timer
        try:
            response = await policy.front.run(ex, timer, ran_after)
            if response is None and ex.route is not None:
                response = await ex.route.chain.run(ex, timer, ran_after)
            if response is None:
                raise internal_error()
        except GatewayError as exc:
            response = self.refused(ex, exc)
        except Exception as exc:
            log.error("request %s failed: %s", ex.request_id, describe_exception(exc))
            response = self.refused(ex, internal_error())
        if ran_after:
            await run_after(ex, ran_after, response)
        self.finish(ex, response)
        return response

    def refused(self, ex: Exchange, exc: GatewayError) -> web.Response:
        ex.status, ex.reason, ex.detail = exc.status, exc.code, exc.detail
        if ex.route is not None and not ex.audited:
            try:
                self.services.audit.decision(ex, "deny")
            except AuditUnavailable:
                pass  # refused anyway; the sink has counted and reported the failure
        return error_response(exc, ex.request_id)

    def finish(self, ex: Exchange, response: web.StreamResponse) -> None:
        """Security headers on every answer, then the metrics and the access record."""
        headers = response.headers
        headers.update(ex.policy.security_headers)
        if ex.response_headers:
            headers.update(ex.response_headers)
        headers["X-Request-ID"] = ex.request_id
        if self.draining:
            response.force_close()
        if ex.status is None:
            ex.status = response.status
        elapsed = time.perf_counter() - ex.started
        self.services.metrics.request(ex, response.status, elapsed)
        self.services.access_log.write(self.access_record(ex, response, elapsed))

    @staticmethod
    def access_record(ex: Exchange, response: web.StreamResponse, elapsed: float) -> dict[str, Any]:
        request = ex.request
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        body = response.body if isinstance(response, web.Response) else None
        record: dict[str, Any] = {
            "ts": utc_now(),
            "request_id": ex.request_id,
            "ip": ex.ip,
            "method": ex.method,
            "path": ex.path,
            "route": ex.route_name,
            "client": ex.client_id,
            "status": response.status,
            "reason": ex.reason,
            "duration_ms": round(elapsed * 1000, 3),
            "upstream_ms": ex.upstream_ms,
            "bytes_in": request.content_length,
            "bytes_out": len(body) if isinstance(body, bytes) else None,
            "tls": ssl_object.version() if ssl_object is not None else None,
        }
        if ex.policy.debug:
            record["headers"] = ex.policy.redactor.headers(request.headers)
        return record


def build_public_app(gateway: Gateway, max_body: int) -> web.Application:
    app = web.Application(client_max_size=max_body)
    app[GATEWAY_KEY] = gateway
    # Unknown expectations are marked, not answered by aiohttp, so the chain refuses them (417).
    app.router.add_route("*", "/{tail:.*}", gateway.handle, expect_handler=expect_handler)
    return app
