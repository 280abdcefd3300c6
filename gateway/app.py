"""The public application: the request path of DESIGN.md, top to bottom.

``gateway_middleware`` wraps every request (errors as JSON, security headers, access log).
``Gateway.handle`` is the filter chain; each step either passes or raises ``GatewayError`` with
the reason code of DESIGN.md, and the first refusal ends the request.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import netaddr
from aiohttp import web

from gateway.audit import AuditLog, utc_now
from gateway.config import Config
from gateway.config.schema import ClientConfig, RouteConfig
from gateway.context import RequestContext
from gateway.credentials import VendorCredentials
from gateway.errors import GatewayError, bad_request
from gateway.identity.basic import BasicAuthenticator
from gateway.identity.ip import ClientAddressResolver, IpAllowlist, parse_ip
from gateway.jsonlog import JsonLinesSink
from gateway.phone import DestinationPolicy, parse_recipient
from gateway.providers import GenericSpec, ProviderAdapter, build_adapter
from gateway.proxy import Upstream, upstream_headers
from gateway.redaction import Redactor
from gateway.routing import Match, Router
from gateway.transport import HttpsPolicy, security_headers

log = logging.getLogger("smsgw")

CONTEXT_KEY: web.RequestKey[RequestContext] = web.RequestKey("smsgw.context", RequestContext)
GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("smsgw.gateway")

AUTH_CHALLENGES = {"basic": 'Basic realm="smsgw", charset="UTF-8"'}


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    scopes: frozenset[str]
    auth: frozenset[str]
    ip_allow: IpAllowlist
    challenge: str


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    scopes: frozenset[str]
    ip_allow: IpAllowlist
    destinations: DestinationPolicy


def compile_route(cfg: RouteConfig) -> Route:
    challenge = ", ".join(AUTH_CHALLENGES[a] for a in cfg.auth if a in AUTH_CHALLENGES)
    return Route(cfg.name, frozenset(cfg.scopes), frozenset(cfg.auth), IpAllowlist(cfg.ip_allow), challenge)


def compile_client(cfg: ClientConfig) -> Client:
    return Client(
        cfg.id,
        frozenset(cfg.scopes),
        IpAllowlist(cfg.ip_allow),
        DestinationPolicy(countries=cfg.countries, senders=cfg.senders),
    )


def build_redactor(config: Config, credentials: VendorCredentials, adapter: ProviderAdapter) -> Redactor:
    logging_cfg = config.settings.logging
    key = logging_cfg.hash_key.get_secret_value().encode("utf-8") if logging_cfg.hash_key else None
    # Message fields sent in a query string (refused, or a GET on a list API) are personal data.
    query_names = ({config.settings.upstream.credentials.name} - {""}) | adapter.read_fields
    return Redactor(
        body_mode=logging_cfg.body,
        recipient_mode=logging_cfg.recipient,
        hash_key=key,
        key_id=logging_cfg.hash_key_id or None,
        secret_values=credentials.secrets,
        secret_query_names=frozenset(query_names),
    )


def build_adapter_for(config: Config) -> ProviderAdapter:
    upstream = config.settings.upstream
    spec = GenericSpec(**upstream.generic.model_dump()) if upstream.generic else None
    return build_adapter(upstream.provider, spec)


class Gateway:
    """Everything the request path needs, built once from the frozen config."""

    def __init__(
        self,
        config: Config,
        upstream: Upstream,
        credentials: VendorCredentials,
        access_log: JsonLinesSink,
        audit_log: AuditLog,
        https_port: int,
    ) -> None:
        s = config.settings
        self.config = config
        self.upstream = upstream
        self.credentials = credentials
        self.access_log = access_log
        self.audit = audit_log
        self.debug = s.logging.level == "debug"
        self.max_body = s.server.max_body_bytes
        self.headers = security_headers(s.hsts)
        self.bind_https_port(https_port)
        self.addresses = ClientAddressResolver(s.server.trusted_proxies)
        self.router: Router[Route] = Router((r.path, r.methods, compile_route(r)) for r in config.routes)
        self.clients = {c.id: compile_client(c) for c in config.clients}
        self.basic = BasicAuthenticator(
            (b.username, b.password_sha256, c.id) for c in config.clients for b in c.basic
        )
        self.adapter = build_adapter_for(config)
        self.redactor = build_redactor(config, credentials, self.adapter)
        self.account_id = s.upstream.account_id or credentials.username

    def bind_https_port(self, port: int) -> None:
        """Where plain-HTTP GET/HEAD requests are redirected when ``server.public_url`` is unset."""
        s = self.config.settings
        self.https = HttpsPolicy(
            offloaded=s.server.tls.mode == "offloaded",
            action=s.server.http.action,
            public_origin=s.server.public_url,
            https_port=port,
        )

    # -- the chain ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx: RequestContext = request[CONTEXT_KEY]
        peer = ctx.peer if ctx.peer is not None else self.peer_address(request)

        # 1. HTTPS only (403 tls_required, or 308 for GET/HEAD when configured)
        tls = request.transport is not None and request.transport.get_extra_info("ssl_object") is not None
        trusted_peer = self.addresses.is_trusted(peer)
        if not self.https.is_https(
            tls=tls, peer_trusted=trusted_peer, forwarded_proto=request.headers.get("X-Forwarded-Proto")
        ):
            raise self.https.refuse(request.method, request.host, request.raw_path)

        # 2. who is calling from where (right-most untrusted X-Forwarded-For hop)
        address = self.addresses.resolve(peer, request.headers.getall("X-Forwarded-For", ()))
        ctx.ip = str(address)

        # 3. body size, from the declared length before anything else is read (413)
        if request.content_length is not None and request.content_length > self.max_body:
            raise GatewayError(413, "body_too_large", "the request body is larger than allowed")

        # 4. deny by default: a route must match path and method (404 / 405)
        match = self.router.match(request.method, request.raw_path.split("?", 1)[0])
        route = match.target
        ctx.route = route.name

        # 5. the route's IP allowlist (403 ip_not_allowed)
        if not route.ip_allow.allows(address):
            raise GatewayError(403, "ip_not_allowed", "the client address is not allowed on this route")

        # 6. identity: a credential of a kind the route accepts (401 unauthenticated)
        client = self.authenticate(request, route)
        ctx.client = client.id

        # 7. the client's IP allowlist and scopes (403 ip_not_allowed / forbidden)
        if not client.ip_allow.allows(address):
            raise GatewayError(403, "ip_not_allowed", "the client address is not allowed for this client")
        if not route.scopes <= client.scopes:
            raise GatewayError(403, "forbidden", "the client lacks a scope this route needs")

        # 8. read and understand the message (413 / 400)
        if request.query_string and any(k.lower() in self.adapter.read_fields for k in request.query):
            raise bad_request("message fields belong in the body, not the query string")
        body = await self.read_body(request)
        message = self.adapter.parse(body, request.headers.get("Content-Type", ""))
        ctx.sender = message.sender
        ctx.body = self.redactor.body(message.body)
        ctx.recipient_count = len(message.recipients)

        # 9. recipients are valid numbers; destinations and sender are allowed (422 / 403)
        try:
            destinations = [parse_recipient(raw) for raw in message.recipients]
        except GatewayError:
            ctx.recipients = self.redactor.recipients([(raw, None) for raw in message.recipients])
            raise
        ctx.recipients = self.redactor.recipients([(d.raw, d.e164) for d in destinations])
        client.destinations.check(destinations, message.sender)

        # 10. the audit record is written before anything goes upstream
        self.audit.decision(ctx, "allow", None, None)

        # 11. forward with the vendor's credentials; the client's are stripped
        return await self.forward(request, match, body, ctx)

    # -- steps -------------------------------------------------------------------------------

    @staticmethod
    def peer_address(request: web.Request) -> netaddr.IPAddress:
        peername = request.transport.get_extra_info("peername") if request.transport else None
        host = peername[0] if isinstance(peername, tuple) and peername else "0.0.0.0"
        return parse_ip(host)

    def authenticate(self, request: web.Request, route: Route) -> Client:
        client_id = None
        if "basic" in route.auth:
            client_id = self.basic.authenticate(request.headers.get("Authorization"))
        client = self.clients.get(client_id) if client_id else None
        if client is None:
            raise GatewayError(
                401,
                "unauthenticated",
                "a valid credential is required",
                {"WWW-Authenticate": route.challenge} if route.challenge else {},
            )
        return client

    async def read_body(self, request: web.Request) -> bytes:
        # aiohttp decodes compressed bodies; the gateway forwards only what it checked, and a
        # compressed body could also hide its real size. Senders' SDKs do not compress.
        if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            raise bad_request("compressed request bodies are not accepted")
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise GatewayError(413, "body_too_large", "the request body is larger than allowed") from None

    async def forward(
        self, request: web.Request, match: Match[Route], body: bytes, ctx: RequestContext
    ) -> web.StreamResponse:
        params = dict(match.params)
        if "account" in params and self.account_id:
            params["account"] = self.account_id
        raw_query = request.raw_path.partition("?")[2]
        url = self.upstream.url(match.template.render(params), raw_query)
        headers = upstream_headers(request.headers, self.credentials)
        started = time.perf_counter()
        try:
            answer = await self.upstream.forward(request.method, url, headers, body)
        except GatewayError as exc:
            ctx.status, ctx.reason = exc.status, exc.code
            ctx.upstream_ms = round((time.perf_counter() - started) * 1000, 3)
            self.audit.outcome(ctx, started)
            raise
        ctx.status = answer.status
        ctx.upstream_ms = answer.elapsed_ms
        decoded = answer.decoded_body()
        if decoded is not None:
            ctx.vendor_message_id = self.adapter.vendor_message_id(
                answer.status, decoded, answer.headers.get("Content-Type", "")
            )
        self.audit.outcome(ctx, started)
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    # -- logs --------------------------------------------------------------------------------

    def access_record(
        self, request: web.Request, ctx: RequestContext, status: int, duration_ms: float, size: int | None
    ) -> dict[str, Any]:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        record: dict[str, Any] = {
            "ts": utc_now(),
            "request_id": ctx.request_id,
            "ip": ctx.ip,
            "method": ctx.method,
            "path": ctx.path,
            "route": ctx.route,
            "client": ctx.client,
            "status": status,
            "reason": ctx.reason,
            "duration_ms": duration_ms,
            "upstream_ms": ctx.upstream_ms,
            "bytes_in": request.content_length,
            "bytes_out": size,
            "tls": ssl_object.version() if ssl_object is not None else None,
        }
        if self.debug:
            record["headers"] = self.redactor.headers(request.headers)
        return record


def error_response(exc: GatewayError, request_id: str) -> web.Response:
    payload = {"error": {"code": exc.code, "message": exc.message, "request_id": request_id}}
    response = web.json_response(payload, status=exc.status, headers=dict(exc.headers))
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: every answer is JSON on error, carries the security headers, and is logged."""
    gateway = request.app[GATEWAY_KEY]
    started = time.perf_counter()
    ctx = RequestContext(
        request_id=uuid.uuid4().hex,
        method=request.method,
        path=gateway.redactor.path(request.raw_path),
    )
    try:
        ctx.peer = gateway.peer_address(request)
        ctx.ip = str(ctx.peer)
    except (netaddr.AddrFormatError, ValueError):
        ctx.ip = ""
    request[CONTEXT_KEY] = ctx
    try:
        response = await handler(request)
    except GatewayError as exc:
        response = _refused(gateway, ctx, exc)
    except web.HTTPException as exc:
        # aiohttp's own refusals (e.g. a body over client_max_size while reading)
        code = "body_too_large" if exc.status == 413 else "bad_request"
        response = _refused(gateway, ctx, GatewayError(exc.status, code, exc.reason or "refused"))
    except Exception as exc:
        log.error(
            "request %s failed with %s at %s",
            ctx.request_id,
            type(exc).__name__,
            "".join(traceback.format_tb(exc.__traceback__)[-3:]).strip().replace("\n", " | "),
        )
        response = _refused(gateway, ctx, GatewayError(500, "internal_error", "the gateway failed"))
    if ctx.status is None:
        ctx.status = response.status
    response.headers.update(gateway.headers)
    response.headers["X-Request-ID"] = ctx.request_id
    duration = round((time.perf_counter() - started) * 1000, 3)
    body = response.body if isinstance(response, web.Response) else None
    size = len(body) if isinstance(body, bytes) else None
    gateway.access_log.write(gateway.access_record(request, ctx, response.status, duration, size))
    return response


def _refused(gateway: Gateway, ctx: RequestContext, exc: GatewayError) -> web.Response:
    ctx.reason = exc.code
    ctx.status = exc.status
    if ctx.route is not None and not ctx.audited:
        gateway.audit.decision(ctx, "deny", exc.status, exc.code)
    return error_response(exc, ctx.request_id)


def build_public_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[gateway_middleware], client_max_size=gateway.max_body)
    app[GATEWAY_KEY] = gateway
    app.router.add_route("*", "/{tail:.*}", gateway.handle)
    return app
