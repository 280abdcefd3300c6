"""The policy: everything the request path decides with, compiled once from the frozen config.

This is where each route's stage chain is chosen. The front chain runs for every request; the
chain of a route depends on its kind. The lists below only order stages: each line names a stage
and the factory its feature owns (``identity.authenticate``, ``build_limits``, ...), a function
of the route and the :class:`Build` that returns the stage, or None when the route does not need
it, so a route pays only for the stages it has. A factory asks of ``Build`` only what its feature
declares as a protocol (``gateway.limits.context.LimitsBuild``, ...), so features never import
this module. To add a stage, write it and its factory in its feature and add one line here
(docs/extending.md).

A reload builds a new :class:`Policy` from a new config and the same services, and swaps it in
whole: requests in flight finish under the policy they started with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.alerts.stages import build_anomalies, build_auth_watch, build_conversion
from gateway.audit.stages import audit_decision
from gateway.callbacks import stages as callbacks
from gateway.callbacks.config import query_field_names as webhook_fields
from gateway.callbacks.config import secrets as webhook_secrets
from gateway.callbacks.scheme import Schemes
from gateway.config import Config
from gateway.config.schema import ClientConfig, RouteConfig
from gateway.core.pipeline import Chain, NamedFactory, Stage, StageFactory, compile_stages
from gateway.core.redaction import Redactor
from gateway.core.routing import PathTemplate, Router, RouteRequest
from gateway.core.seal import load_seal_key
from gateway.core.values import Client
from gateway.idempotency.stage import build_idempotency
from gateway.identity import AUTHENTICATORS
from gateway.identity import stages as identity
from gateway.identity.auth import AuthContext, Authenticator
from gateway.identity.ip import ClientAddressResolver, IpAllowlist, ResolveClientAddress
from gateway.limits.stage import build_limits
from gateway.messages.base import client_query_credentials
from gateway.messages.stage import build_field_checks, read_message
from gateway.recipients.phone import DestinationPolicy, check_recipients
from gateway.server.services import Services
from gateway.tracing.otel import TraceRequest
from gateway.transport import stages as transport
from gateway.transport.body import CheckExpectation, DeclaredBodySize
from gateway.transport.proxy import AnswerScrubber
from gateway.transport.tls import HttpsPolicy, RequireHttps, security_headers
from gateway.vendors import SCHEMES, ProviderAdapter, ProviderSettings, build_adapter

__all__ = ["Client", "CompiledRoute", "Policy", "build_policy"]


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
    """What stage factories may use while a policy is compiled: it satisfies every feature's
    build protocol (and core's ``BuildContext``) structurally."""

    config: Config
    services: Services
    clients: Mapping[str, Client]
    authenticators: Mapping[str, Authenticator]
    adapter: ProviderAdapter
    redactor: Redactor
    scrubber: AnswerScrubber
    #: The vendors' callback signature schemes, handed to the callback framework.
    schemes: Schemes


def stage(name: str, factory: StageFactory[RouteConfig, Build]) -> NamedFactory[RouteConfig, Build]:
    """One line of a list: the stage's name (as metrics and traces show it) and its feature's factory."""
    return NamedFactory(name, factory)


#: Sends (kinds sms, otp, otp-check) (docs/request-path.md). Idempotency comes before the limits
#: so that a replayed or refused repeat counts against nothing; the limits (rate limits and OTP
#: caps, checked and counted together); the anomaly counters come after them, so a send a limit
#: refused is not counted as volume.
SEND: tuple[NamedFactory[RouteConfig, Build], ...] = (
    stage("route_ip_allow", identity.route_allowlist),
    stage("auth_failures", build_auth_watch),
    stage("read_body", transport.read_body_before_auth),
    stage("authenticate", identity.authenticate),
    stage("client_ip_allow", identity.client_allowlist),
    stage("scopes", identity.scopes),
    stage("read_body", transport.read_body_after_auth),
    stage("message", read_message),
    stage("fields", build_field_checks),
    stage("message_nul", transport.refuse_nul),
    stage("recipients", check_recipients),
    stage("hop_headers", transport.hop_headers),
    stage("idempotency", build_idempotency),
    stage("limits", build_limits),
    stage("anomalies", build_anomalies),
    stage("conversion", build_conversion),
    stage("audit", audit_decision),
    stage("forward", transport.forward),
)

#: Vendor callbacks (kind webhook): vendor -> gateway -> ``forward_to``. No client credential:
#: the vendor's signature is the authentication.
WEBHOOK: tuple[NamedFactory[RouteConfig, Build], ...] = (
    stage("route_ip_allow", identity.route_allowlist),
    stage("read_body", transport.read_body),
    stage("verify_signature", callbacks.verify_signature),
    stage("read_callback", callbacks.read_callback),
    stage("duplicates", callbacks.drop_duplicates),
    stage("audit", audit_decision),
    stage("forward", callbacks.forward_callback),
)

#: Route kinds -> their chain.
KINDS: Mapping[str, tuple[NamedFactory[RouteConfig, Build], ...]] = MappingProxyType(
    {"sms": SEND, "otp": SEND, "otp-check": SEND, "webhook": WEBHOOK}
)


def compile_route(route: RouteConfig, b: Build) -> CompiledRoute:
    factories = KINDS.get(route.kind)
    if factories is None:
        raise ValueError(f"route kind {route.kind!r} is not available in this version")
    return CompiledRoute(
        route.name, route.kind, PathTemplate.compile(route.path), compile_stages(factories, route, b)
    )


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
    key = logging_cfg.hash_key_bytes
    # Message fields sent in a query string (refused, or a GET on a list API) are personal data.
    query_names = (
        ({config.settings.upstream.credentials.name.lower()} - {""}) | message_fields | client_credentials
    )
    query_names |= webhook_fields(SCHEMES, config)  # GET callbacks carry numbers and texts in the query
    return Redactor(
        body_mode=logging_cfg.body,
        recipient_mode=logging_cfg.recipient,
        hash_key=key,
        key_id=logging_cfg.hash_key_id or None,
        secret_values=services.credentials.secrets | webhook_secrets(SCHEMES, config),
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
        SCHEMES,
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
        https_port=lambda: services.https_port,
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
