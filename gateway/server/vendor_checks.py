"""check-config for the vendor: ``upstream.provider`` names one this version has, its
``[upstream.<provider>]`` table validates against the provider's model, every route is one the
provider's reader can read, and the credentials are of a type the provider can use.

These need the provider registry (gateway/vendors), which sits above the config layer: the
config loader is handed them (gateway/server/config.py).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.config import Config, Problem
from gateway.config.problems import problems_from
from gateway.messages.config_checks import allow_fields_problems
from gateway.vendors import REGISTRY, ProviderSettings

__all__ = ["PROVIDER_TABLES", "ProviderRegistryTables", "provider_checks"]


class ProviderRegistryTables:
    """The ``[upstream.<provider>]`` tables, read by the models of the provider registry."""

    def take(self, upstream: dict[str, Any]) -> dict[str, Any]:
        return {name: upstream.pop(name) for name in list(upstream) if name in REGISTRY}

    def options(
        self, provider: str, tables: dict[str, Any], file: str, problems: list[Problem]
    ) -> BaseModel | None:
        entry = REGISTRY.get(provider)
        if entry is None:
            why = f"{provider!r} is not one of {', '.join(sorted(REGISTRY))}"
            problems.append(Problem(file, "upstream.provider", why))
            return None
        for name in tables:
            if name != provider:
                why = f"applies only with provider = {name!r} (provider is {provider!r})"
                problems.append(Problem(file, f"upstream.{name}", why))
        table = tables.get(provider)
        if entry.options is None:
            if table is not None:
                problems.append(
                    Problem(file, f"upstream.{provider}", f"provider {provider!r} takes no options")
                )
            return None
        if table is None:
            if entry.options_required:
                why = f"provider = {provider!r} needs an [upstream.{provider}] table"
                problems.append(Problem(file, f"upstream.{provider}", why))
                return None
            table = {}
        try:
            return entry.options.model_validate(table)
        except ValidationError as exc:
            problems.extend(problems_from(file, exc, f"upstream.{provider}"))
            return None


PROVIDER_TABLES = ProviderRegistryTables()


def provider_checks(config: Config, file: str) -> list[Problem]:
    """Routes the provider cannot read, and credentials the provider cannot use."""
    s = config.settings
    entry = REGISTRY.get(s.upstream.provider)
    if entry is None or (
        entry.options is not None and config.provider_options is None and entry.options_required
    ):
        return []  # already reported
    problems: list[Problem] = []
    adapter = entry.build(ProviderSettings(config.provider_options, s.upstream.account_id))
    for route, where in zip(config.routes, config.route_sources, strict=True):
        if route.kind == "webhook":
            continue
        try:
            reader = adapter.reader(route)
        except ValueError as exc:
            problems.append(Problem(where.file, f"{where.key}.path", str(exc)))
            continue
        problems.extend(allow_fields_problems(config, route, reader.table, where))
    return problems + _credential_type(config, file)


def _credential_type(config: Config, file: str) -> list[Problem]:
    """The provider's own rule for the credential type (its ``credential_problem``), and botocore."""
    upstream = config.settings.upstream
    kind = upstream.credentials.type
    problems: list[Problem] = []
    provider = REGISTRY.get(upstream.provider)
    if provider is not None and provider.credential_problem is not None:
        why = provider.credential_problem(kind, tuple(route.path for route in config.routes))
        if why:
            problems.append(Problem(file, "upstream.credentials.type", why))
    if kind == "aws-sigv4" and importlib.util.find_spec("botocore") is None:
        problems.append(
            Problem(
                file,
                "upstream.credentials.type",
                "'aws-sigv4' needs botocore: install smsgw with the aws extra (pip install 'smsgw[aws]')",
            )
        )
    return problems
