"""Checks across keys and files that need only the config: doubled names, TLS files, listeners,
logs the gateway must be able to write, limits that could not hold, clients open to every country.

Checks that need a feature or a vendor (key files, provider names and options, vendor fields,
webhook schemes) belong to that feature or vendor; the loader is handed them
(``gateway/server/config.py`` composes the whole list).
"""

from __future__ import annotations

import importlib.util
import os
import ssl
from pathlib import Path

from gateway.config.loaded import Config, Located
from gateway.config.problems import Problem, display
from gateway.config.schema import ClientConfig, RouteConfig, parse_listen
from gateway.core.routing import overlap_example, route_shape
from gateway.core.seal import seal_key_problem

__all__ = [
    "SEND_KINDS",
    "credential_checks",
    "cross_checks",
    "destination_checks",
    "limit_checks",
    "not_yet_available",
    "path_checks",
    "route_overlaps",
    "same_socket",
    "send_routes",
    "tracing_checks",
]


def cross_checks(config: Config, file: str) -> list[Problem]:
    """Doubled client ids, usernames, route names and paths; TLS, CA and seal key files; listeners."""
    return [
        *_unique_clients(config),
        *_unique_routes(config),
        *_tls_checks(config, file),
        *_file_and_listen_checks(config, file),
    ]


def _unique_clients(config: Config) -> list[Problem]:
    problems: list[Problem] = []
    seen_ids: dict[str, Located] = {}
    seen_users: dict[str, Located] = {}
    for client, where in zip(config.clients, config.client_sources, strict=True):
        if client.id in seen_ids:
            first = seen_ids[client.id]
            problems.append(
                Problem(where.file, f"{where.key}.id", f"duplicate client id (first in {first.file})")
            )
        seen_ids.setdefault(client.id, where)
        for j, cred in enumerate(client.basic):
            if cred.username in seen_users:
                problems.append(
                    Problem(
                        where.file, f"{where.key}.basic[{j}].username", "username is used by another client"
                    )
                )
            seen_users.setdefault(cred.username, where)
    return problems


def _unique_routes(config: Config) -> list[Problem]:
    problems: list[Problem] = []
    seen_routes: set[str] = set()
    seen_shapes: set[tuple[str, str]] = set()
    for route, where in zip(config.routes, config.route_sources, strict=True):
        if route.name in seen_routes:
            problems.append(Problem(where.file, f"{where.key}.name", "duplicate route name"))
        seen_routes.add(route.name)
        for method in route.methods:
            shape = (route_shape(route.path), method)
            if shape in seen_shapes:
                problems.append(
                    Problem(
                        where.file,
                        f"{where.key}.path",
                        f"{method} {route.path} is already served by another route",
                    )
                )
            seen_shapes.add(shape)
    return problems


def _tls_checks(config: Config, file: str) -> list[Problem]:
    s = config.settings
    tls = s.server.tls
    if tls.mode != "terminate":
        if s.server.trusted_proxies:
            return []
        why = "offloaded TLS needs the load balancer's addresses here; no request can count as HTTPS"
        return [Problem(file, "server.trusted_proxies", why)]
    if not tls.cert_file or not tls.key_file:
        return [Problem(file, "server.tls.cert_file", "terminate mode needs cert_file and key_file")]
    missing = [
        (key, value)
        for key, value in (("server.tls.cert_file", tls.cert_file), ("server.tls.key_file", tls.key_file))
        if not config.resolve_path(value).is_file()
    ]
    if missing:
        return [Problem(file, key, f"{value} does not exist") for key, value in missing]
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(config.resolve_path(tls.cert_file), config.resolve_path(tls.key_file))
    except (ssl.SSLError, OSError) as exc:
        why = f"certificate and key do not load as a pair ({type(exc).__name__})"
        return [Problem(file, "server.tls.key_file", why)]
    return []


def _file_and_listen_checks(config: Config, file: str) -> list[Problem]:
    s = config.settings
    problems: list[Problem] = []
    for key, value in (
        ("server.tls.client_ca_file", s.server.tls.client_ca_file),
        ("upstream.ca_file", s.upstream.ca_file),
    ):
        if value and not config.resolve_path(value).is_file():
            problems.append(Problem(file, key, f"{value} does not exist"))
    if s.server.http.listen and same_socket(s.server.http.listen, s.server.listen):
        problems.append(Problem(file, "server.http.listen", "must differ from server.listen"))
    if same_socket(s.admin.listen, s.server.listen):
        problems.append(Problem(file, "admin.listen", "must differ from server.listen"))
    if s.logging.body == "seal" and s.logging.seal_public_key_file:
        seal_problem = seal_key_problem(config.resolve_path(s.logging.seal_public_key_file))
        if seal_problem:
            problems.append(Problem(file, "logging.seal_public_key_file", seal_problem))
    return problems


def same_socket(a: str, b: str) -> bool:
    """Port 0 asks the OS for a free port, so two such listeners never collide."""
    return a == b and parse_listen(a)[1] != 0


def route_overlaps(config: Config, file: str) -> list[Problem]:
    """Two routes that share a method and some path: the first one listed would silently win.

    Routes of the same shape are reported by the shape check in :func:`cross_checks`.
    """
    problems: list[Problem] = []
    entries = list(zip(config.routes, config.route_sources, strict=True))
    for j, (later, where) in enumerate(entries):
        for earlier, first in entries[:j]:
            methods = [m for m in later.methods if m in earlier.methods]
            if not methods or route_shape(later.path) == route_shape(earlier.path):
                continue
            example = overlap_example(earlier.path, later.path)
            if example is None:
                continue
            problems.append(
                Problem(
                    where.file,
                    f"{where.key}.path",
                    f"{'/'.join(methods)} {later.path} overlaps {earlier.path} of "
                    f"{first.file}: {first.key}.path (both match {example}); "
                    "the route listed first would win, so make the paths distinct",
                )
            )
    return problems


def not_yet_available(config: Config, file: str) -> list[Problem]:
    """Keys of the contract that this version cannot enforce yet.

    Refusing them is deliberate: a security gateway that silently ignores a configured limit or
    authentication method would look protected while it is not.
    """
    return []


def tracing_checks(config: Config, file: str) -> list[Problem]:
    """``[tracing]`` on needs the optional OpenTelemetry packages."""
    if not config.settings.tracing.enabled:
        return []
    if (
        importlib.util.find_spec("opentelemetry") is None
        or importlib.util.find_spec("opentelemetry.sdk") is None
    ):
        return [Problem(file, "tracing.enabled", "needs OpenTelemetry: pip install 'smsgw[otel]'")]
    return []


def credential_checks(config: Config, file: str) -> list[Problem]:
    """Client credentials that would name two clients at once, or that nothing could verify
    (gateway/identity); the issuers' key files are checked by the identity feature."""
    return [*_client_credentials(config), *_route_auth(config, file)]


def _client_credentials(config: Config) -> list[Problem]:
    tls = config.settings.server.tls
    issuers = {issuer.issuer for issuer in config.settings.auth.jwt.issuers}
    problems: list[Problem] = []
    key_ids: dict[str, Located] = {}
    subjects: dict[tuple[str, str], Located] = {}
    tls_subjects: dict[str, Located] = {}
    for client, where in zip(config.clients, config.client_sources, strict=True):
        for j, key in enumerate(client.hmac_keys):
            first = key_ids.setdefault(key.id, where)
            if first is not where:
                why = f"key id {key.id!r} is already used (first in {first.file}: {first.key})"
                problems.append(Problem(where.file, f"{where.key}.hmac_keys[{j}].id", why))
        if client.jwt_issuer and client.jwt_issuer not in issuers:
            problems.append(
                Problem(where.file, f"{where.key}.jwt_issuer", "names no issuer in [[auth.jwt.issuers]]")
            )
        if client.jwt_subject:
            for issuer in [client.jwt_issuer] if client.jwt_issuer else sorted(issuers) or [""]:
                first = subjects.setdefault((issuer, client.jwt_subject), where)
                if first is not where:
                    why = f"another client has this jwt_subject (first in {first.file}: {first.key})"
                    problems.append(Problem(where.file, f"{where.key}.jwt_subject", why))
                    break
        if client.tls_subject:
            if tls.mode != "terminate" or not tls.client_ca_file:
                why = "needs server.tls.client_ca_file (mutual TLS, terminate mode)"
                problems.append(Problem(where.file, f"{where.key}.tls_subject", why))
            first = tls_subjects.setdefault(client.tls_subject.lower(), where)
            if first is not where:
                why = f"another client has this tls_subject (first in {first.file}: {first.key})"
                problems.append(Problem(where.file, f"{where.key}.tls_subject", why))
    return problems


def _route_auth(config: Config, file: str) -> list[Problem]:
    tls = config.settings.server.tls
    issuers = config.settings.auth.jwt.issuers
    problems: list[Problem] = []
    for route, where in zip(config.routes, config.route_sources, strict=True):
        if "jwt" in route.auth and not issuers:
            problems.append(
                Problem(where.file, f"{where.key}.auth", f"'jwt' needs [[auth.jwt.issuers]] in {file}")
            )
        if "mtls" in route.auth and (tls.mode != "terminate" or not tls.client_ca_file):
            problems.append(
                Problem(
                    where.file,
                    f"{where.key}.auth",
                    "'mtls' needs server.tls.client_ca_file and tls.mode = 'terminate' "
                    "(behind offloaded TLS the gateway never sees the client certificate)",
                )
            )
    return problems


def limit_checks(config: Config, file: str) -> list[Problem]:
    """Limits that could not hold as written (gateway/limits/stage.py, gateway/limits/otp.py)."""
    s = config.settings
    problems: list[Problem] = []
    if s.server.workers > 1 and s.storage.url.startswith("memory://"):
        problems.append(
            Problem(
                file,
                "server.workers",
                "more than one worker needs Redis storage (storage.url): with memory:// each process "
                "would keep its own counters, so no limit, OTP cap or idempotency key would hold",
            )
        )
    no_key = not s.logging.hash_key_bytes
    why = "needs logging.hash_key: storage keys numbers by an HMAC, never in clear text"
    for route, where in zip(config.routes, config.route_sources, strict=True):
        if route.kind == "webhook":
            continue
        otp_capped = route.kind in ("otp", "otp-check") or route.otp is not None
        if no_key and route.recipient_limits:
            problems.append(Problem(where.file, f"{where.key}.recipient_limits", f"recipient_limits {why}"))
        if no_key and otp_capped:
            key = f"{where.key}.otp" if route.otp is not None else f"{where.key}.kind"
            problems.append(Problem(where.file, key, f"OTP caps {why}"))
        problems.extend(_otp_detect(route, where))
    return problems


def _otp_detect(route: RouteConfig, where: Located) -> list[Problem]:
    if route.otp is not None and route.kind == "sms" and not route.otp.detect:
        why = (
            "an sms route's [route.otp] needs detect (the regex that marks a message as an OTP); "
            "without it the caps would never apply"
        )
        return [Problem(where.file, f"{where.key}.otp.detect", why)]
    if route.otp is not None and route.kind != "sms" and route.otp.detect:
        why = f"detect applies to kind = 'sms' routes only; every {route.kind!r} request is capped"
        return [Problem(where.file, f"{where.key}.otp.detect", why)]
    return []


#: Route kinds whose requests carry recipients checked against the client's ``countries``.
SEND_KINDS = frozenset({"sms", "otp", "otp-check"})


def send_routes(config: Config, client: ClientConfig) -> list[RouteConfig]:
    """The send routes a client may use: its scopes cover the route's. Credentials and addresses
    are not weighed: a client that could be given one later is counted, so the checks fail closed."""
    scopes = set(client.scopes)
    return [r for r in config.routes if r.kind in SEND_KINDS and set(r.scopes) <= scopes]


def destination_checks(config: Config, file: str) -> list[Problem]:
    """A client that may send needs ``countries``: a gateway against SMS pumping must not ship open."""
    problems: list[Problem] = []
    for client, where in zip(config.clients, config.client_sources, strict=True):
        routes = send_routes(config, client)
        if client.countries or not routes:
            continue
        problems.append(
            Problem(
                where.file,
                f"{where.key}.countries",
                f"client {client.id!r} may send (route {routes[0].name!r}) but names no countries, so "
                'every destination would be refused: list them (countries = ["EE", "LV"]) or allow '
                'every country in as many words (countries = ["*"])',
            )
        )
    return problems


def path_checks(config: Config, file: str) -> list[Problem]:
    """Files the gateway writes at start: found here, named by their key, not at ``serve``."""
    s = config.settings
    wanted = [("logging.access_log", s.logging.access_log), ("logging.audit_log", s.logging.audit_log)]
    wanted.append(("server.pid_file", s.server.pid_file))
    problems = []
    for key, value in wanted:
        if not value or value == "-":
            continue
        why = _unwritable(config.resolve_path(value))
        if why:
            problems.append(Problem(file, key, why))
    return problems


def _unwritable(path: Path) -> str:
    """Why the gateway could not create or append to ``path``; "" when it can."""
    if path.is_dir():
        return f"{display(path)} is a directory"
    if path.exists():
        return "" if os.access(path, os.W_OK) else f"{display(path)} cannot be written"
    folder = path.parent
    while not folder.exists():
        if folder.parent == folder:
            return f"no folder of {display(path)} exists"
        folder = folder.parent
    if not folder.is_dir():
        return f"{display(folder)} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{display(folder)} cannot be written (the gateway creates {display(path)} there)"
    return ""
