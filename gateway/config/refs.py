"""`env:` and `file:` references, resolved once at load time.

Secrets never sit in a config file: a key whose name marks it as secret must hold a reference,
and every reference is resolved before validation so that the frozen config holds final values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ENV_PREFIX = "env:"
FILE_PREFIX = "file:"

#: Key names whose values are secrets wherever they appear (``upstream.credentials.value`` is
#: checked by its table, see ``SECRET_KEYS_IN``).
SECRET_KEYS = frozenset(
    {"password", "secret", "token", "hash_key", "signing_secret", "chain_key", "private_key"}
)
SECRET_KEYS_IN = {("upstream", "credentials"): frozenset({"value"})}


class RefError(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def is_reference(value: str) -> bool:
    return value.startswith((ENV_PREFIX, FILE_PREFIX))


def resolve_reference(value: str, base_dir: Path, key: str) -> str:
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        if not name:
            raise RefError(key, "'env:' needs a variable name, e.g. env:SMSGW_LOG_HASH_KEY")
        resolved = os.environ.get(name)
        if resolved is None:
            raise RefError(key, f"environment variable {name} is not set")
        if resolved == "":
            raise RefError(key, f"environment variable {name} is empty")
        return resolved
    path_text = value[len(FILE_PREFIX) :]
    if not path_text:
        raise RefError(key, "'file:' needs a path, e.g. file:/run/secrets/twilio_token")
    path = Path(path_text)
    if not path.is_absolute():
        path = base_dir / path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RefError(key, f"file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RefError(key, f"file {path} cannot be read ({type(exc).__name__})") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if text == "":
        raise RefError(key, f"file {path} is empty")
    return text


def _is_secret_key(parents: tuple[str, ...], name: str) -> bool:
    if name in SECRET_KEYS:
        return True
    return name in SECRET_KEYS_IN.get(parents[-2:], frozenset())


def resolve_tree(data: Any, base_dir: Path) -> tuple[Any, list[RefError]]:
    """Return a copy of a parsed TOML tree with references resolved, and the errors found.

    Inline values under secret key names are refused here, before any model sees them.
    """
    errors: list[RefError] = []

    def walk(node: Any, dotted: str, parents: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                child = f"{dotted}.{key}" if dotted else key
                if isinstance(value, str) and _is_secret_key(parents, key) and value != "":
                    if not is_reference(value):
                        errors.append(
                            RefError(
                                child,
                                "secrets must not be written inline; use "
                                f'"env:VARIABLE" or "file:/path/to/secret" for {key}',
                            )
                        )
                        out[key] = value
                        continue
                out[key] = walk(value, child, (*parents, key))
            return out
        if isinstance(node, list):
            return [walk(item, f"{dotted}[{i}]", parents) for i, item in enumerate(node)]
        if isinstance(node, str) and is_reference(node):
            try:
                return resolve_reference(node, base_dir, dotted)
            except RefError as exc:
                errors.append(exc)
                return node
        return node

    return walk(data, "", ()), errors
