"""check-config for webhook routes, and the two values the config leaves implicit: the scheme
(``signature``, default: the one of ``upstream.provider``) and the secret (``signing_secret``,
default: the vendor credential that signs, when it is the same vendor). The schemes are handed in
(the server passes ``gateway.vendors.SCHEMES``): this framework names no vendor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import netaddr

from gateway.callbacks.scheme import Scheme, Schemes
from gateway.config.webhook_options import WebhookOptions

if TYPE_CHECKING:
    from gateway.config.loader import Config, Located
    from gateway.config.schema import RouteConfig, Settings

__all__ = [
    "check_routes",
    "forward_to_problem",
    "query_field_names",
    "route_options",
    "scheme_of",
    "secrets",
    "signing_secret",
]

#: Names that only resolve inside a private network: plain http to them stays inside it.
INTERNAL_SUFFIXES = (".internal", ".local", ".localhost", ".lan", ".home.arpa", ".svc", ".intranet", ".corp")
_WEBHOOK_ONLY = ("signature", "signing_secret", "forward_to", "webhook")
_ALWAYS = frozenset({"timeout_s", "ca_file"})


def scheme_of(schemes: Schemes, route: RouteConfig, provider: str) -> str:
    return route.signature or schemes.default_for(provider)


def signing_secret(route: RouteConfig, scheme: Scheme, settings: Settings) -> str:
    """The configured secret, or the vendor credential that signs this scheme's callbacks."""
    if route.signing_secret is not None and route.signing_secret.get_secret_value():
        return route.signing_secret.get_secret_value()
    upstream = settings.upstream
    creds = upstream.credentials
    if not scheme.credential_of or scheme.credential_of != upstream.provider:
        return ""
    if creds.type != "basic" or creds.password is None:
        return ""
    if scheme.api_key_prefix and creds.username.startswith(scheme.api_key_prefix):
        return ""  # an API key: the vendor signs callbacks with the account's token, not the key
    return creds.password.get_secret_value()


def _private_host(host: str) -> bool:
    try:
        address = netaddr.IPAddress(host.strip("[]"))
    except (netaddr.AddrFormatError, ValueError):
        name = host.lower().rstrip(".")
        return "." not in name or name == "localhost" or name.endswith(INTERNAL_SUFFIXES)
    if address.version == 6 and address.is_ipv4_mapped():
        address = address.ipv4()
    return (
        address.is_loopback()
        or address.is_link_local()
        or (address.version == 4 and address.is_ipv4_private_use())
        or (address.version == 6 and address.is_ipv6_unique_local())
    )


def route_options(route: RouteConfig) -> WebhookOptions:
    """The route's ``[route.webhook]`` table, or its defaults when it has none."""
    return route.webhook or WebhookOptions()


#: Why plain http is refused for callbacks, said after the rule.
CALLBACKS_CARRY: Final = "callbacks carry phone numbers and message texts; use https://"


def forward_to_problem(url: str, plain_http_why: str | None = CALLBACKS_CARRY) -> str | None:
    """Why ``url`` cannot be posted to (``forward_to``, the alert webhook), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http:// or https:// URL"
    try:
        parts.port  # noqa: B018 (raises for a bad port)
    except ValueError:
        return "has an invalid port"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if parts.fragment or url.endswith("#"):
        return "must not have a fragment"
    if parts.scheme == "http" and not _private_host(parts.hostname):
        rule = (
            "plain http is allowed only to loopback or private addresses and internal names "
            f"(a name without dots, or ending in {', '.join(INTERNAL_SUFFIXES)})"
        )
        return f"{rule}: {plain_http_why}" if plain_http_why else rule
    return None


Problems = list[tuple[str, str, str]]


def _not_a_webhook(route: RouteConfig) -> list[tuple[str, str]]:
    return [
        (key, "applies only to kind = 'webhook' routes")
        for key in _WEBHOOK_ONLY
        if key in route.model_fields_set
    ]


def _webhook_basics(route: RouteConfig, config: Config) -> list[tuple[str, str]]:
    """What any webhook route needs, whatever its scheme."""
    found: list[tuple[str, str]] = []
    if route.auth:
        found.append(("auth", "a webhook is authenticated by the vendor's signature: write auth = []"))
    if route.scopes:
        found.append(("scopes", "a webhook has no client to hold scopes: remove scopes"))
    if route.otp is not None:
        found.append(("otp", "applies only to sends"))
    forward = forward_to_problem(route.forward_to)
    if forward:
        found.append(("forward_to", forward))
    options = route_options(route)
    if options.ca_file:
        if urlsplit(route.forward_to).scheme != "https":
            found.append(("webhook.ca_file", "applies only to an https:// forward_to"))
        elif not config.resolve_path(options.ca_file).is_file():
            found.append(("webhook.ca_file", f"{options.ca_file} does not exist"))
    return found


def _scheme_problems(
    schemes: Schemes, route: RouteConfig, settings: Settings
) -> tuple[Scheme | None, list[tuple[str, str]]]:
    """The route's scheme (None when it has none), and what its options and secret lack."""
    provider = settings.upstream.provider
    name = scheme_of(schemes, route, provider)
    if not name:
        return None, [
            (
                "signature",
                f"upstream.provider = {provider!r} has no built-in callback signature; "
                f"set signature to one of {schemes.names()}",
            )
        ]
    scheme = schemes.get(name)
    if scheme is None:
        return None, [("signature", f"{name!r} is not one of {schemes.names()}")]
    options = route_options(route)
    found = [
        (f"webhook.{key}", f"applies only to signature = {schemes.reading(key)}")
        for key in sorted(options.model_fields_set - scheme.options - _ALWAYS)
    ]
    if scheme.check is not None:
        found.extend((f"webhook.{key}", message) for key, message in scheme.check(options))
    if not signing_secret(route, scheme, settings):
        found.append(
            (
                "signing_secret",
                f"signature = {name!r} needs signing_secret ({scheme.signed_with}), "
                'e.g. "env:VENDOR_WEBHOOK_SECRET"',
            )
        )
    return scheme, found


def _public_url_problem(file: str, scheme: Scheme, where: Located) -> tuple[str, str, str]:
    return (
        file,
        "server.public_url",
        f"{where.file}: {where.key} (signature = {scheme.name!r}) needs it: the vendor signs the "
        "URL it calls, and the gateway rebuilds that URL from public_url, never from Host",
    )


def check_routes(schemes: Schemes, config: Config, file: str) -> Problems:
    """Problems as ``(file, dotted key, message)``."""
    settings = config.settings
    problems: Problems = []
    for route, where in zip(config.routes, config.route_sources, strict=True):
        if route.kind != "webhook":
            found = _not_a_webhook(route)
            scheme = None
        else:
            scheme, found = _scheme_problems(schemes, route, settings)
            found = _webhook_basics(route, config) + found
        problems.extend((where.file, f"{where.key}.{key}", message) for key, message in found)
        if scheme is not None and scheme.signs_url and not settings.server.public_url:
            problems.append(_public_url_problem(file, scheme, where))
    return problems


def query_field_names(schemes: Schemes, config: Config) -> frozenset[str]:
    """Fields of the configured webhook routes that carry numbers or texts (scrubbed from URLs)."""
    provider = config.settings.upstream.provider
    names: set[str] = set()
    for route in config.routes:
        scheme = schemes.get(scheme_of(schemes, route, provider)) if route.kind == "webhook" else None
        if scheme is not None:
            names |= scheme.fields.names
    return frozenset(names)


def secrets(schemes: Schemes, config: Config) -> frozenset[str]:
    """Every webhook signing secret, so the log redactor scrubs them wherever they turn up."""
    provider = config.settings.upstream.provider
    found: set[str] = set()
    for route in config.routes:
        scheme = schemes.get(scheme_of(schemes, route, provider)) if route.kind == "webhook" else None
        if scheme is not None and (secret := signing_secret(route, scheme, config.settings)):
            found.add(secret)
    return frozenset(found)
