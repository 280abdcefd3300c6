"""TOML files in, validated models out: the main file, the policy files, and their problems.

A file that does not parse stops only itself: every policy file is read even when the main file
has problems, so one run shows them all.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.config.loaded import Located
from gateway.config.problems import ConfigError, Problem, display, located, problems_from
from gateway.config.refs import resolve_tree
from gateway.config.schema import ClientConfig, PolicyFile, RouteConfig, Settings

__all__ = ["Policies", "policy_dir", "read_policies", "read_toml", "validate", "with_defaults_for_errors"]


def read_toml(path: Path, file: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([Problem(file, "", "file does not exist")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(file, "", f"not valid TOML: {exc}")]) from None
    except OSError as exc:
        raise ConfigError([Problem(file, "", f"cannot be read ({exc.strerror})")]) from None
    # A NUL (TOML's "\u0000") is in no valid value, and as a path it made the file checks raise
    # ValueError instead of reporting a problem.
    nul = [Problem(file, key, "must not contain a NUL character") for key in _nul_keys(doc, "")]
    if nul:
        raise ConfigError(nul)
    return doc


def _nul_keys(node: Any, key: str) -> list[str]:
    """Dotted keys of the strings (and key names) that hold a NUL character."""
    if isinstance(node, str):
        return [key] if "\x00" in node else []
    if isinstance(node, list):
        return [k for i, item in enumerate(node) for k in _nul_keys(item, f"{key}[{i}]")]
    if isinstance(node, dict):
        out: list[str] = []
        for name, value in node.items():
            dotted = f"{key}.{name}" if key else name
            out += [dotted.replace("\x00", "\\0")] if "\x00" in name else _nul_keys(value, dotted)
        return out
    return []


def validate(model: type[BaseModel], data: Any, file: str, problems: list[Problem]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(problems_from(file, exc))
        return None


@dataclass(slots=True)
class Policies:
    """Every ``[[client]]`` and ``[[route]]`` of the policy files, in file order, with where each is."""

    clients: list[ClientConfig] = field(default_factory=list)
    routes: list[RouteConfig] = field(default_factory=list)
    client_sources: list[Located] = field(default_factory=list)
    route_sources: list[Located] = field(default_factory=list)


def policy_dir(raw: dict[str, Any], settings: Settings | None, path: Path) -> Path:
    """``policies.dir``, read from the raw table when the main file did not validate."""
    policies_table = raw.get("policies") if isinstance(raw.get("policies"), dict) else {}
    dir_value = settings.policies.dir if settings else policies_table.get("dir", "policies")
    folder = Path(dir_value if isinstance(dir_value, str) else "policies")
    return folder if folder.is_absolute() else path.parent / folder


def read_policies(folder: Path, file: str, problems: list[Problem], warnings: list[Problem]) -> Policies:
    """The policy files in ``folder``; their problems and warnings are added to the lists given."""
    policies = Policies()
    if not folder.is_dir():
        problems.append(Problem(file, "policies.dir", f"{display(folder)} is not a directory"))
        return policies
    for policy_path in sorted(folder.glob("*.toml")):
        pfile = display(policy_path)
        try:
            praw, perrors, pwarnings = resolve_tree(read_toml(policy_path, pfile), policy_path.parent)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        problems.extend(located(pfile, perrors))
        warnings.extend(located(pfile, pwarnings))
        policy = validate(PolicyFile, praw, pfile, problems)
        if policy is None:
            continue
        for i, client in enumerate(policy.client):
            policies.clients.append(client)
            policies.client_sources.append(Located(pfile, f"client[{i}]"))
        for i, route in enumerate(policy.route):
            policies.routes.append(route)
            policies.route_sources.append(Located(pfile, f"route[{i}]"))
    return policies


def with_defaults_for_errors(raw: dict[str, Any], tries: int = 8) -> Settings | None:
    """The main file with every key that fails validation removed (its default then applies);
    None when that does not make it valid."""
    doc = copy.deepcopy(raw)
    for _ in range(tries):
        try:
            return Settings.model_validate(doc)
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                _drop(doc, tuple(err["loc"]))
    return None


def _drop(doc: Any, loc: tuple[int | str, ...]) -> None:
    """Remove the key at ``loc`` (a whole list, when the error is inside one)."""
    names: list[str] = []
    for part in loc:
        if not isinstance(part, str):
            break
        names.append(part)
    node = doc
    for name in names[:-1]:
        node = node.get(name) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return
    if names and isinstance(node, dict):
        node.pop(names[-1], None)
