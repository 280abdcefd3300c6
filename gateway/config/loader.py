"""Read ``config.toml`` and ``policies/*.toml`` into one frozen :class:`Config`, running the checks
it is handed.

This layer knows no feature and no vendor: :class:`Checks` carries what they check (the provider's
``[upstream.<provider>]`` table, key files, vendor fields, webhook schemes), and
``gateway.server.config.load_config`` hands over the whole list. :data:`CONFIG_ONLY` is the part
that needs only the config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from gateway.config.cross_checks import (
    credential_checks,
    cross_checks,
    destination_checks,
    limit_checks,
    not_yet_available,
    path_checks,
    route_overlaps,
)
from gateway.config.loaded import Config, Located
from gateway.config.problems import ConfigError, Problem, display, located, without_doubles
from gateway.config.reading import policy_dir, read_policies, read_toml, validate, with_defaults_for_errors
from gateway.config.refs import resolve_tree
from gateway.config.schema import Settings
from gateway.config.warning_checks import (
    identity_warnings_today,
    limit_warnings,
    settings_warnings,
    unlimited_clients,
)

__all__ = [
    "CONFIG_ONLY",
    "CONFIG_PROBLEMS",
    "CONFIG_WARNINGS",
    "Check",
    "Checks",
    "Config",
    "ConfigError",
    "Located",
    "Problem",
    "ProviderTables",
    "load_checked",
]

#: One check over a loaded config: ``(config, main file as shown)`` in, problems or warnings out.
Check = Callable[[Config, str], Iterable[Problem]]


class ProviderTables(Protocol):
    """The ``[upstream.<provider>]`` tables: their models belong to the providers."""

    def take(self, upstream: dict[str, Any]) -> dict[str, Any]:
        """Remove the provider tables from ``[upstream]`` (before the schema sees it), by name."""
        ...

    def options(
        self, provider: str, tables: dict[str, Any], file: str, problems: list[Problem]
    ) -> BaseModel | None:
        """The selected provider's options, validated; what is wrong is added to ``problems``."""
        ...


@dataclass(frozen=True, slots=True)
class Checks:
    """What the loader runs once the files have validated, in this order."""

    problems: tuple[Check, ...]
    warnings: tuple[Check, ...]
    providers: ProviderTables | None = None


#: The problem checks that need only the config, in the order the whole list runs them.
CONFIG_PROBLEMS: tuple[Check, ...] = (
    cross_checks,
    route_overlaps,
    not_yet_available,
    credential_checks,
    limit_checks,
    destination_checks,
    path_checks,
)
CONFIG_WARNINGS: tuple[Check, ...] = (
    limit_warnings,
    unlimited_clients,
    settings_warnings,
    identity_warnings_today,
)
#: Without a provider's table, an ``[upstream.<provider>]`` table is an unknown key here.
CONFIG_ONLY = Checks(CONFIG_PROBLEMS, CONFIG_WARNINGS)


def load_checked(path: str | Path, checks: Checks = CONFIG_ONLY) -> Config:
    """Load, resolve, validate and run ``checks``; raise :class:`ConfigError` listing every problem."""
    path = Path(path).absolute()
    file = display(path)
    raw, ref_errors, ref_warnings = resolve_tree(read_toml(path, file), path.parent)
    problems = located(file, ref_errors)
    warnings = located(file, ref_warnings)
    for misplaced in ("client", "route"):
        if misplaced in raw:
            problems.append(Problem(file, misplaced, f"[[{misplaced}]] tables belong in the policy files"))
            raw.pop(misplaced)
    upstream = raw.get("upstream")
    provider_tables = (
        checks.providers.take(upstream) if checks.providers and isinstance(upstream, dict) else {}
    )
    settings: Settings | None = validate(Settings, raw, file, problems)
    main_problems = list(problems)
    provider_options = None
    if settings and checks.providers:
        provider_options = checks.providers.options(
            settings.upstream.provider, provider_tables, file, problems
        )
    # Policy files are checked even when the main file has problems, so one run shows them all.
    policies = read_policies(policy_dir(raw, settings, path), file, problems, warnings)
    main_file_valid = settings is not None
    if settings is None:
        # The policies' own cross-checks still run, over the main file with its wrong keys left
        # at their defaults, so one run shows every problem; the main file's are shown once it
        # validates (checked against defaults, they could be wrong).
        settings = with_defaults_for_errors(raw)
        if settings is None:
            raise ConfigError(without_doubles(problems), warnings)
    config = Config(
        path,
        settings,
        tuple(policies.clients),
        tuple(policies.routes),
        tuple(policies.client_sources),
        tuple(policies.route_sources),
        provider_options,
    )
    problems += [problem for check in checks.problems for problem in check(config, file)]
    warnings += [warning for check in checks.warnings for warning in check(config, file)]
    if not main_file_valid:
        problems = [p for p in problems if p.file != file or p in main_problems]
        warnings = [w for w in warnings if w.file != file]
    if problems:
        raise ConfigError(without_doubles(problems), warnings)
    return dataclasses.replace(config, warnings=tuple(warnings))
