"""What a reload (SIGHUP, ``smsgw reload``) may change, and what needs a restart.

A reload re-reads the config file, every policy file and the TLS certificate, builds a new
policy and swaps it in whole (``server.Running.reload``). Some keys are bound to things made once
at start: the sockets, the worker processes, the storage connection, the log files and their
chain, the connection handler. A change to one of them is refused with the key named, and the
old config keeps serving until the operator restarts; nothing is half-applied.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.config import Config
from gateway.config.problems import Problem, display

__all__ = ["RESTART_KEYS", "restart_problems"]

#: Dotted keys of the main file that only a restart changes, and why.
RESTART_KEYS: Final[dict[str, str]] = {
    "server.listen": "the listening socket",
    "server.workers": "the worker processes",
    "server.pid_file": "the pid file",
    "server.max_body_bytes": "the HTTP handler's body limit",
    "server.shutdown_timeout_s": "the listeners' drain",
    "server.handshake_timeout_s": "the listeners",
    "server.header_timeout_s": "the listeners",
    "server.keepalive_timeout_s": "the listeners",
    "server.max_connections": "the listeners' connection caps",
    "server.max_connections_per_ip": "the listeners' connection caps",
    "server.tls.mode": "the listening socket",
    "server.tls.min_version": "open TLS handshakes keep the protocol range they started with",
    "server.tls.client_ca_file": "open TLS handshakes keep their certificate request",
    "server.http": "the plain-HTTP listener",
    "hsts": "the listeners' own answers (health checks, malformed requests)",
    "admin": "the admin listener",
    "storage.url": "the storage connection",
    "storage.key_prefix": "the storage connection",
    "storage.timeout_s": "the storage connection",
    "storage.password": "the storage connection",
    "logging.access_log": "the open log files",
    "logging.audit_log": "the open log files",
    "logging.format": "the operational log's handler",
    "logging.hash_key": "storage keys and sealed answers are derived from it",
    "logging.chain_key": "the audit chain",
    "logging.rotate_bytes": "the audit log",
    "logging.rotate_daily": "the audit log",
    "logging.retention_days": "the audit log",
    "upstream.provider": "the audit log names the provider in every record",
    "tracing": "the span exporter",
}


def _value(settings: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        settings = getattr(settings, part)
    return settings


def restart_problems(running: Config, new: Config) -> list[Problem]:
    """One problem per restart-only key the new config changes."""
    file = display(new.path)
    problems = []
    for key, why in RESTART_KEYS.items():
        if _value(running.settings, key) != _value(new.settings, key):
            problems.append(
                Problem(file, key, f"changed, but takes effect only after a restart ({why}); reload refused")
            )
    return problems
