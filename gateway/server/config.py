"""The gateway's whole config check: the config layer's loader, handed every check that needs a
feature or a vendor.

``gateway/config/`` parses, validates and runs the checks that need only the config; it imports no
feature. The checks that do are owned where their knowledge is: the provider registry's here
(gateway/server/vendor_checks.py), webhook schemes in gateway/callbacks/config.py, issuers' key
files in gateway/identity/config_checks.py, alerts in gateway/alerts/config_checks.py, vendor
fields in gateway/messages/config_checks.py. :data:`CHECKS` lists them all in the order they
report; ``smsgw check-config``, ``serve`` and ``reload`` all load through :func:`load_config`.
"""

from __future__ import annotations

from pathlib import Path

from gateway.alerts.config_checks import alert_checks
from gateway.callbacks.config import check_routes
from gateway.config import Config, ConfigError, Problem
from gateway.config import cross_checks as only_config
from gateway.config.loader import CONFIG_WARNINGS, Checks, load_checked
from gateway.identity.config_checks import issuer_key_files
from gateway.server.vendor_checks import PROVIDER_TABLES, provider_checks
from gateway.vendors import SCHEMES

__all__ = ["CHECKS", "Config", "ConfigError", "Problem", "load_config"]


def webhook_checks(config: Config, file: str) -> list[Problem]:
    """Webhook routes: each scheme's keys and secret, and where callbacks are forwarded."""
    return [Problem(*found) for found in check_routes(SCHEMES, config, file)]


CHECKS = Checks(
    problems=(
        only_config.cross_checks,
        provider_checks,
        only_config.route_overlaps,
        webhook_checks,
        only_config.not_yet_available,
        alert_checks,
        issuer_key_files,
        only_config.credential_checks,
        only_config.limit_checks,
        only_config.destination_checks,
        only_config.path_checks,
    ),
    warnings=CONFIG_WARNINGS,
    providers=PROVIDER_TABLES,
)


def load_config(path: str | Path) -> Config:
    """Load, resolve and validate; raise :class:`ConfigError` listing every problem."""
    return load_checked(path, CHECKS)
