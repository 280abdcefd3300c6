"""What the loader returns: one frozen :class:`Config`, and where each policy entry was written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from gateway.config.problems import Problem
from gateway.config.schema import ClientConfig, RouteConfig, Settings

__all__ = ["Config", "Located"]


@dataclass(frozen=True, slots=True)
class Located:
    """A policy entry and where it was written, so later errors can name file and key."""

    file: str
    key: str


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    settings: Settings
    clients: tuple[ClientConfig, ...]
    routes: tuple[RouteConfig, ...]
    client_sources: tuple[Located, ...]
    route_sources: tuple[Located, ...]
    #: The selected provider's ``[upstream.<provider>]`` table, validated by its model.
    provider_options: BaseModel | None = None
    warnings: tuple[Problem, ...] = ()

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve_path(self, value: str) -> Path:
        """Paths in the config are relative to the config file's directory."""
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path
