"""Warnings: what an operator should fix that does not, on its own, open a hole (keys due for
rotation, an admin port open to the network, loose file modes, clients no rate limit counts).
A warning never stops a start.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from gateway.config.cross_checks import send_routes
from gateway.config.files import loose_log_modes, open_to_others
from gateway.config.loaded import Config
from gateway.config.problems import Problem
from gateway.config.schema import is_loopback_host, parse_listen

__all__ = [
    "KEY_EXPIRY_WARN",
    "KEY_MAX_AGE",
    "ONE_YEAR_S",
    "identity_warnings",
    "identity_warnings_today",
    "limit_warnings",
    "settings_warnings",
    "unlimited_clients",
]

ONE_YEAR_S = 31536000


def settings_warnings(config: Config, file: str) -> list[Problem]:
    s = config.settings
    warnings: list[Problem] = []
    if s.hsts.max_age_s < ONE_YEAR_S:
        warnings.append(
            Problem(
                file,
                "hsts.max_age_s",
                f"{s.hsts.max_age_s} is under one year ({ONE_YEAR_S}): browsers forget sooner "
                "that this host is HTTPS only",
            )
        )
    host, _ = parse_listen(s.admin.listen)
    if not is_loopback_host(host):
        warnings.append(
            Problem(
                file,
                "admin.listen",
                f"{s.admin.listen} is not a loopback address: health and readiness answer "
                "the network; use 127.0.0.1 unless a firewall keeps this port private",
            )
        )
    tls = s.server.tls
    if tls.mode == "terminate" and tls.key_file:
        key_path = config.resolve_path(tls.key_file)
        mode = open_to_others(key_path)
        if mode is not None:
            warnings.append(
                Problem(
                    file,
                    "server.tls.key_file",
                    f"file {key_path} is open to group or others (mode {mode:04o}); chmod 600 it",
                )
            )
    warnings.extend(
        Problem(file, loose.key, loose.warning()) for loose in loose_log_modes(s.logging, config.base_dir)
    )
    return warnings


def limit_warnings(config: Config, file: str) -> list[Problem]:
    s = config.settings
    no_key = not s.logging.hash_key_bytes
    if no_key and any(route.kind != "webhook" for route in config.routes):
        return [
            Problem(
                file,
                "logging.hash_key",
                "not set: requests with an Idempotency-Key are refused (400), because stored answers "
                "are sealed with a key derived from it",
            )
        ]
    return []


def unlimited_clients(config: Config, file: str) -> list[Problem]:
    """A client that can reach a send route through which no rate limit counts its requests."""
    warnings: list[Problem] = []
    for client, where in zip(config.clients, config.client_sources, strict=True):
        if client.rate_limits:
            continue
        open_routes = [
            r.name
            for r in send_routes(config, client)
            if not (r.rate_limits or r.recipient_limits or r.country_limits)
        ]
        if open_routes:
            warnings.append(
                Problem(
                    where.file,
                    f"{where.key}.rate_limits",
                    f"client {client.id!r} has no rate limit on route {open_routes[0]!r} (neither the "
                    "client's rate_limits nor the route's rate_limits, recipient_limits or "
                    'country_limits): set rate_limits = ["600/minute"] or similar',
                )
            )
    return warnings


#: ``check-config`` warns about an HMAC key older than this, or expiring within ``KEY_EXPIRY_WARN``.
KEY_MAX_AGE = timedelta(days=90)
KEY_EXPIRY_WARN = timedelta(days=14)


def identity_warnings(config: Config, file: str, today: date) -> list[Problem]:
    """Keys due for rotation, and JWT subjects any configured issuer could claim."""
    warnings: list[Problem] = []
    several_issuers = len(config.settings.auth.jwt.issuers) > 1
    for client, where in zip(config.clients, config.client_sources, strict=True):
        for j, key in enumerate(client.hmac_keys):
            at = f"{where.key}.hmac_keys[{j}]"
            if key.expires is not None and key.expires <= today:
                warnings.append(
                    Problem(where.file, f"{at}.expires", f"key {key.id!r} has expired (refused): remove it")
                )
            elif key.expires is not None and key.expires - today <= KEY_EXPIRY_WARN:
                warnings.append(
                    Problem(
                        where.file,
                        f"{at}.expires",
                        f"key {key.id!r} expires on {key.expires}: add its successor and hand it out",
                    )
                )
            if key.created is not None and today - key.created > KEY_MAX_AGE:
                warnings.append(
                    Problem(
                        where.file,
                        f"{at}.created",
                        f"key {key.id!r} is {(today - key.created).days} days old "
                        f"(over {KEY_MAX_AGE.days}): rotate it",
                    )
                )
            if key.created is None and key.expires is None:
                warnings.append(
                    Problem(
                        where.file,
                        at,
                        f"key {key.id!r} has neither created nor expires: its age cannot be checked "
                        "and it never expires",
                    )
                )
        if several_issuers and client.jwt_subject and not client.jwt_issuer:
            warnings.append(
                Problem(
                    where.file,
                    f"{where.key}.jwt_issuer",
                    "several issuers are configured: any of them can name this client; set jwt_issuer",
                )
            )
    return warnings


def identity_warnings_today(config: Config, file: str) -> list[Problem]:
    return identity_warnings(config, file, datetime.now(UTC).date())
