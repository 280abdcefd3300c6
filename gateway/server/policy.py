"""The policy: everything the request path decides with, compiled once from the frozen config.

This is where each route's stage chain is chosen. :data:`FRONT` runs for every request; the
chain of a route depends on its kind. To add a stage, write it in its owner's module and add one
line to the list below; each line is a function of the route that returns the stage, or None
when the route does not need it, so a route pays only for the stages it has.

A reload builds a new :class:`Policy` from a new config and the same services, and swaps it in
whole: requests in flight finish under the policy they started with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.alerts.anomalies import build_anomalies, build_auth_watch
from gateway.alerts.conversion import build_conversion
from gateway.audit.log import AuditDecision
from gateway.callbacks import build as webhook
from gateway.callbacks.config import query_field_names as webhook_fields
from gateway.callbacks.config import secrets as webhook_secrets
from gateway.callbacks.forward import ForwardCallback
from gateway.callbacks.stage import DropDuplicates, ReadCallback, VerifySignature
from gateway.config import Config
from gateway.config.schema import ClientConfig, RouteConfig
from gateway.core.pipeline import Chain, Stage
from gateway.core.redaction import Redactor
from gateway.core.routing import PathTemplate, Router, RouteRequest
from gateway.core.seal import load_seal_key
from gateway.idempotency.stage import build_idempotency
from gateway.identity import AUTHENTICATORS
from gateway.identity.auth import AuthContext, Authenticate, Authenticator, CheckScopes
from gateway.identity.ip import (
    ClientAddressResolver,
    ClientAllowlist,
    IpAllowlist,
    ResolveClientAddress,
    RouteAllowlist,
)
from gateway.limits.stage import build_limits
from gateway.messages.stage import ReadMessage, build_field_checks
from gateway.recipients.phone import CheckRecipients, DestinationPolicy
from gateway.server.services import Services
from gateway.tracing.otel import TraceRequest
from gateway.transport.body import CheckExpectation, DeclaredBodySize, ReadBody, RefuseNul
from gateway.transport.proxy import AnswerScrubber, CheckHopHeaders, Forward, client_query_credentials
from gateway.transport.tls import HttpsPolicy, RequireHttps, security_headers
from gateway.vendors import ProviderAdapter, ProviderSettings, build_adapter

__all__ = ["Client", "CompiledRoute", "Policy", "build_policy"]


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    scopes: frozenset[str]
    ip_allow: IpAllowlist
    destinations: DestinationPolicy


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    name: str
    kind: str
    template: PathTemplate
    chain: Chain


@dataclass(frozen=True, slots=True)
class Policy:
    config: Config
    front: Chain
    router: Router[CompiledRoute]
    clients: Mapping[str, Client]
    adapter: ProviderAdapter
    redactor: Redactor
    security_headers: Mapping[str, str]
    debug: bool


@dataclass(frozen=True, slots=True)
class Build:
    """What stage factories may use while a policy is compiled."""

    config: Config
    services: Services
    clients: Mapping[str, Client]
    authenticators: Mapping[str, Authenticator]
    adapter: ProviderAdapter
    redactor: Redactor
    scrubber: AnswerScrubber


StageFactory = Callable[[RouteConfig, Build], Stage | None]


# --------------------------------------------------------------------------- stage factories


def _authenticate(route: RouteConfig, b: Build) -> Authenticate:
    return Authenticate([b.authenticators[kind] for kind in route.auth])


def _needs_body_first(route: RouteConfig, b: Build) -> bool:
    return any(b.authenticators[kind].needs_body for kind in route.auth)


def _read_body(route: RouteConfig, b: Build) -> ReadBody:
    return ReadBody(b.config.settings.server.body_timeout_s)


def _forward(route: RouteConfig, b: Build) -> Forward:
    s = b.services
    return Forward(
        s.upstream, s.credentials, b.adapter, PathTemplate.compile(route.path), s.audit, b.scrubber
    )


def _audit(route: RouteConfig, b: Build) -> AuditDecision:
    return AuditDecision(b.services.audit)


#: Sends (kinds sms, otp, otp-check) (docs/request-path.md). Idempotency comes before the limits
#: so that a replayed or refused repeat counts against nothing; the limits (rate limits and OTP
#: caps, checked and counted together); the anomaly counters come after them, so a send a limit
#: refused is not counted as volume.
SEND: tuple[StageFactory, ...] = (
    lambda r, b: RouteAllowlist(IpAllowlist(r.ip_allow)) if r.ip_allow else None,
    build_auth_watch,
    lambda r, b: _read_body(r, b) if _needs_body_first(r, b) else None,
    _authenticate,
    lambda r, b: ClientAllowlist(),
    lambda r, b: CheckScopes(frozenset(r.scopes)) if r.scopes else None,
    lambda r, b: None if _needs_body_first(r, b) else _read_body(r, b),
    lambda r, b: ReadMessage(b.adapter.reader(r), b.redactor, client_query_credentials(b.adapter)),
    build_field_checks,
    lambda r, b: RefuseNul(),
    lambda r, b: CheckRecipients(b.redactor, b.adapter.reader(r).numbers, r.number_types),
    lambda r, b: CheckHopHeaders(),
    build_idempotency,
    build_limits,
    build_anomalies,
    build_conversion,
    _audit,
    _forward,
)


def _verify_callback(route: RouteConfig, b: Build) -> VerifySignature:
    return VerifySignature(
        webhook.verifier(route, b.config), b.config.settings.server.public_url, b.services.storage, route.name
    )


def _drop_duplicates(route: RouteConfig, b: Build) -> DropDuplicates:
    return DropDuplicates(b.services.storage, b.services.audit, route.name, webhook.pending_ttl(route))


def _forward_callback(route: RouteConfig, b: Build) -> ForwardCallback:
    scheme = webhook.scheme(route, b.config).name
    target = webhook.target(route, b.config)
    return ForwardCallback(b.services.callbacks, target, b.services.audit, scheme, route.name)


#: Vendor callbacks (kind webhook): vendor -> gateway -> ``forward_to``. No client credential:
#: the vendor's signature is the authentication.
WEBHOOK: tuple[StageFactory, ...] = (
    lambda r, b: RouteAllowlist(IpAllowlist(r.ip_allow)) if r.ip_allow else None,
    _read_body,
    _verify_callback,
    lambda r, b: ReadCallback(webhook.fields(r, b.config), b.redactor),
    _drop_duplicates,
    _audit,
    _forward_callback,
)

#: Route kinds -> their chain.
KINDS: Mapping[str, tuple[StageFactory, ...]] = MappingProxyType(
    {"sms": SEND, "otp": SEND, "otp-check": SEND, "webhook": WEBHOOK}
)


def compile_route(route: RouteConfig, b: Build) -> CompiledRoute:
    factories = KINDS.get(route.kind)
    if factories is None:
        raise ValueError(f"route kind {route.kind!r} is not available in this version")
    stages = [stage for factory in factories if (stage := factory(route, b)) is not None]
    return CompiledRoute(route.name, route.kind, PathTemplate.compile(route.path), Chain(stages))


# --------------------------------------------------------------------------- the policy


def compile_client(cfg: ClientConfig) -> Client:
    return Client(
        cfg.id,
        frozenset(cfg.scopes),
        IpAllowlist(cfg.ip_allow),
        DestinationPolicy(countries=cfg.countries, senders=cfg.senders),
    )


def build_redactor(
    config: Config,
    services: Services,
    message_fields: frozenset[str],
    client_credentials: frozenset[str] = frozenset(),
) -> Redactor:
    logging_cfg = config.settings.logging
    key = logging_cfg.hash_key.get_secret_value().encode("utf-8") if logging_cfg.hash_key else None
    # Message fields sent in a query string (refused, or a GET on a list API) are personal data.
    query_names = (
        ({config.settings.upstream.credentials.name.lower()} - {""}) | message_fields | client_credentials
    )
    query_names |= webhook_fields(config)  # GET callbacks carry numbers and texts in the query
    return Redactor(
        body_mode=logging_cfg.body,
        recipient_mode=logging_cfg.recipient,
        hash_key=key,
        key_id=logging_cfg.hash_key_id or None,
        secret_values=services.credentials.secrets | webhook_secrets(config),
        secret_query_names=frozenset(query_names),
        seal_key=(
            load_seal_key(config.resolve_path(logging_cfg.seal_public_key_file))
            if logging_cfg.body == "seal"
            else None
        ),
    )


def build_policy(config: Config, services: Services) -> Policy:
    s = config.settings
    upstream = s.upstream
    adapter = build_adapter(
        upstream.provider,
        ProviderSettings(config.provider_options, upstream.account_id or services.credentials.username),
    )
    readers = [adapter.reader(route) for route in config.routes if route.kind != "webhook"]
    message_fields = frozenset(name for reader in readers for name in reader.fields)
    redactor = build_redactor(config, services, message_fields, client_query_credentials(adapter))
    clients = MappingProxyType({c.id: compile_client(c) for c in config.clients})
    auth_ctx = AuthContext(config, clients, services, adapter)
    used_kinds = {kind for route in config.routes for kind in route.auth}
    authenticators = {kind: AUTHENTICATORS[kind](auth_ctx) for kind in used_kinds}
    build = Build(
        config,
        services,
        clients,
        authenticators,
        adapter,
        redactor,
        AnswerScrubber(services.credentials.secrets),
    )
    routes = [compile_route(route, build) for route in config.routes]
    router: Router[CompiledRoute] = Router(
        (route.path, route.methods, compiled) for route, compiled in zip(config.routes, routes, strict=True)
    )
    resolver = ClientAddressResolver(s.server.trusted_proxies)
    https = HttpsPolicy(
        offloaded=s.server.tls.mode == "offloaded",
        action=s.server.http.action,
        public_origin=s.server.public_url,
        https_port=services.https_port,
        host_names=lambda: services.host_names,
    )
    trace: list[Stage] = [TraceRequest(services.tracing)] if services.tracing is not None else []
    front = Chain(
        [
            *trace,
            RequireHttps(https, resolver.is_trusted),
            ResolveClientAddress(resolver),
            DeclaredBodySize(s.server.max_body_bytes),
            RouteRequest(router),
            CheckExpectation(),
        ]
    )
    return Policy(
        config=config,
        front=front,
        router=router,
        clients=clients,
        adapter=adapter,
        redactor=redactor,
        security_headers=MappingProxyType(security_headers(s.hsts)),
        debug=s.logging.level == "debug",
    )
