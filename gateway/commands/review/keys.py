"""Where the review commands get their keys and the chains a config expects: the gateway's config
(only ``[logging]`` and ``server.workers``), a file or an environment variable."""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config.refs import RefError, is_reference, resolve_reference
from gateway.core.jsonlog import worker_log_path
from gateway.core.redaction import key_id_for

AUDIT_LOG_DEFAULT = "logs/audit.jsonl"  # logging.audit_log when the config leaves it out
_HEX64 = re.compile(r"[0-9a-f]{64}")


class UsageError(Exception):
    """A command that cannot run as given (exit 2): a missing key, an unreadable file."""


@dataclass(frozen=True, slots=True)
class Keys:
    hash_key: bytes | None = None
    hash_key_id: str | None = None
    chain_key: bytes | None = None


def _read_secret_file(path: str, what: str) -> bytes:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{what}: {path} cannot be read ({exc.strerror})") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise UsageError(f"{what}: {path} is empty")
    return text.encode("utf-8")


def _read_env(name: str, what: str) -> bytes:
    value = os.environ.get(name)
    if not value:
        raise UsageError(f"{what}: environment variable {name} is not set")
    return value.encode("utf-8")


def _config_table(path: str, name: str) -> tuple[dict[str, Any], Path]:
    config = Path(path).absolute()
    try:
        with config.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    table = data.get(name, {})
    return (table if isinstance(table, dict) else {}), config.parent


def _config_logging(path: str) -> tuple[dict[str, Any], Path]:
    return _config_table(path, "logging")


def expected_files(args: argparse.Namespace) -> Expected | None:
    """With ``-c CONFIG``: the audit file of each worker (``server.workers``, ``logging.audit_log``),
    compared by name so a copy of the logs in another folder checks the same."""
    if not getattr(args, "config", None):
        return None
    logging_table, _ = _config_logging(args.config)
    server, _ = _config_table(args.config, "server")
    target = logging_table.get("audit_log", AUDIT_LOG_DEFAULT)
    if not isinstance(target, str) or target == "-":
        return None
    workers = server.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise UsageError(f"{args.config}: server.workers must be a whole number of at least 1")
    if workers == 1:
        return Expected((Path(target).name,), f"{args.config} writes the audit log there")
    names = tuple(Path(worker_log_path(target, w)).name for w in range(1, workers + 1))
    return Expected(names, f"{args.config} has server.workers = {workers}, each writing its own chain")


def _config_secret(table: dict[str, Any], name: str, base: Path) -> bytes | None:
    value = table.get(name)
    if not isinstance(value, str) or not value:
        return None
    if is_reference(value):
        try:
            value = resolve_reference(value, base, f"logging.{name}")
        except RefError as exc:
            raise UsageError(f"logging.{name}: {exc.message}") from None
    return value.encode("utf-8")


def load_keys(args: argparse.Namespace) -> Keys:
    """Keys from ``-c CONFIG`` (its ``[logging]`` table only), overridden by the explicit options."""
    hash_key = chain_key = None
    hash_key_id: str | None = None
    if getattr(args, "config", None):
        table, base = _config_logging(args.config)
        hash_key = _config_secret(table, "hash_key", base)
        chain_key = _config_secret(table, "chain_key", base)
        configured_id = table.get("hash_key_id")
        hash_key_id = configured_id if isinstance(configured_id, str) and configured_id else None
    if getattr(args, "hash_key_file", None):
        hash_key, hash_key_id = _read_secret_file(args.hash_key_file, "--hash-key-file"), None
    if getattr(args, "hash_key_env", None):
        hash_key, hash_key_id = _read_env(args.hash_key_env, "--hash-key-env"), None
    if getattr(args, "chain_key_file", None):
        chain_key = _read_secret_file(args.chain_key_file, "--chain-key-file")
    if getattr(args, "chain_key_env", None):
        chain_key = _read_env(args.chain_key_env, "--chain-key-env")
    if hash_key is not None and hash_key_id is None:
        hash_key_id = key_id_for(hash_key)
    return Keys(hash_key, hash_key_id, chain_key)


@dataclass(frozen=True, slots=True)
class Expected:
    """The chains a config says exist (``-c CONFIG``): one current audit file per worker."""

    names: tuple[str, ...]
    why: str
