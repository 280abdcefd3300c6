"""`env:` and `file:` references, resolved once at load time.

Secrets never sit in a config file: a key whose name marks it as secret must hold a reference,
and every reference is resolved before validation so that the frozen config holds final values.
References anywhere else are refused: a value that reads differently on every host (or that
an environment variable can quietly override) is not a policy anyone can review.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gateway.config.files import open_to_others

ENV_PREFIX = "env:"
FILE_PREFIX = "file:"

#: Key names whose values are secrets wherever they appear (``upstream.credentials.value`` is
#: checked by its table, see ``SECRET_KEYS_IN``).
SECRET_KEYS = frozenset(
    {"password", "secret", "token", "hash_key", "signing_secret", "chain_key", "private_key"}
)
SECRET_KEYS_IN = {("upstream", "credentials"): frozenset({"value"})}
#: Keys that are not secret but may still come from the environment: the vendor account id is
#: an identity that differs per deployment and sits next to the secret it belongs to.
REFERENCE_KEYS_IN = {("upstream", "credentials"): frozenset({"username"})}

NOT_A_SECRET = "env:/file: references are only for secrets; write the value"  # noqa: S105 (a message)


class RefError(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def is_reference(value: str) -> bool:
    return value.startswith((ENV_PREFIX, FILE_PREFIX))


def resolve_reference(value: str, base_dir: Path, key: str, warnings: list[RefError] | None = None) -> str:
    """The value a reference names; a secret file open to other users adds to ``warnings``."""
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
    mode = open_to_others(path)
    if mode is not None and warnings is not None:
        warnings.append(
            RefError(key, f"file {path} is open to group or others (mode {mode:04o}); chmod 600 it")
        )
    return text


def _is_secret_key(parents: tuple[str, ...], name: str) -> bool:
    if name in SECRET_KEYS:
        return True
    return name in SECRET_KEYS_IN.get(parents[-2:], frozenset())


def _may_hold_reference(parents: tuple[str, ...]) -> bool:
    """``parents`` ends with the key the value is under (a list's items share its key)."""
    if not parents:
        return False
    *tables, name = parents
    return _is_secret_key(tuple(tables), name) or name in REFERENCE_KEYS_IN.get(
        tuple(tables[-2:]), frozenset()
    )


def resolve_tree(data: Any, base_dir: Path) -> tuple[Any, list[RefError], list[RefError]]:
    """Return a copy of a parsed TOML tree with references resolved, the errors and the warnings.

    Inline values under secret key names, and references under any other key, are refused here,
    before any model sees them; a refused reference is left as written, never read.
    """
    errors: list[RefError] = []
    warnings: list[RefError] = []

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
            if not _may_hold_reference(parents):
                errors.append(RefError(dotted, NOT_A_SECRET))
                return node
            try:
                return resolve_reference(node, base_dir, dotted, warnings)
            except RefError as exc:
                errors.append(exc)
                return node
        return node

    return walk(data, "", ()), errors, warnings
